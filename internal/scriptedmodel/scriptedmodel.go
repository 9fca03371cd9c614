// Package scriptedmodel is a scripted OpenAI-compatible model server: the
// one stand-in for a real model in taosagent's tests and demo. It is not an
// AI. What it answers is chosen by plain words in the last user message, so
// a test (or a person trying the demo) can ask for each behaviour of a real
// provider: streamed text, reasoning, tool calls, several steps, failures,
// slow streams.
//
// Plans, by the last message:
//
//	no tools offered (a title request)    → "Scripted demo chat"
//	role "tool" (a tool's result)          → text quoting the output; for
//	                                         "two tools", a second call first
//	"fail401" / "fail429" / "fail500"      → that HTTP error, OpenAI-style
//	"recall"                               → "You said: " and every earlier
//	                                         user message, " | " between
//	"slow tool"                            → bash `sleep 30; echo done`
//	"slow"                                 → 40 text chunks, Delay apart
//	"endless"                              → text chunks, Delay apart, until
//	                                         the client goes (at most 10 min)
//	"write a file"                         → write tool: out.txt in the workdir
//	"use the read tool"                    → read tool: hello.txt in the workdir
//	"two tools"                            → bash `echo one`, then `echo two`
//	"use a tool"                           → a tool the agent was offered:
//	                                         bash `echo hi`, else taos_status
//	                                         (the host assistant's), else
//	                                         text naming the tools offered
//	"say: TEXT" (to the end of the message) → TEXT, verbatim
//	"run: CMD" (to the end of the message) → bash CMD
//	"call TOOL {json}"                     → tool TOOL with those arguments
//	a line "steps:", then one step a line  → a turn of several steps: step
//	                                         k (each "call TOOL {json}") after
//	                                         k tool results, then text quoting
//	                                         the last output; $WORKDIR in a
//	                                         step is the working directory
//	anything else                          → reasoning, then a short answer
package scriptedmodel

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Models are the model ids served; their names say what they are.
var Models = []struct{ ID, Name string }{
	{"scripted-demo", "Scripted demo model (test stand-in, not an AI)"},
	{"scripted-small", "Scripted demo model, small (test stand-in, not an AI)"},
}

// Answer is the text of the default plan.
const Answer = "Hello from the scripted demo model!"

// Server serves the scripted model. The zero value is ready: Delay defaults
// to 250 ms between chunks of the "slow" plans.
type Server struct {
	Delay time.Duration
	// Pace, when set, makes every stream paced like a real model's: its
	// first content chunk comes Pace after the request, and each further
	// chunk Pace/10 after the one before (benchmarks use it; by default a
	// stream is sent at once).
	Pace time.Duration

	mu       sync.Mutex
	requests []Request
	calls    int
	watch    *SlowWatch
}

// SlowWatch reports the next slow stream: Started is closed when its first
// chunk is sent, Ended gets "completed" or "disconnected" (the client, an
// aborted opencode, went away) when it is over.
type SlowWatch struct {
	Started chan struct{}
	Ended   chan string
}

// WatchSlow watches the next slow stream the server serves.
func (s *Server) WatchSlow() *SlowWatch {
	w := &SlowWatch{Started: make(chan struct{}), Ended: make(chan string, 1)}
	s.mu.Lock()
	s.watch = w
	s.mu.Unlock()
	return w
}

// Request is what the server recorded of one chat completion request.
type Request struct {
	Time          time.Time
	Model         string
	Plan          string
	Authorization string
	SessionID     string // opencode's X-Session-Id
	Messages      int
	Tools         []string
}

// Requests returns the chat completion requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

func (m message) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	json.Unmarshal(m.Content, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

type chatRequest struct {
	Model    string    `json:"model"`
	Stream   bool      `json:"stream"`
	Messages []message `json:"messages"`
	Tools    []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// ServeHTTP serves GET /v1/models and POST /v1/chat/completions (also
// without the /v1 prefix).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	switch {
	case r.Method == "GET" && path == "/models":
		var data []map[string]any
		for _, m := range Models {
			data = append(data, map[string]any{"id": m.ID, "object": "model", "owned_by": "taosagent-scripted", "name": m.Name})
		}
		writeJSON(w, 200, map[string]any{"object": "list", "data": data})
	case r.Method == "POST" && path == "/chat/completions":
		s.chat(w, r)
	default:
		writeJSON(w, 404, apiError(404, "no such route: "+r.Method+" "+r.URL.Path, "invalid_request_error"))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(code int, msg, typ string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "message": msg, "type": typ}}
}

var (
	workdirRE = regexp.MustCompile(`Working directory: (\S+)`)
	callRE    = regexp.MustCompile(`(?s)call ([A-Za-z0-9_.-]+) (\{.*\})\s*$`)
	stepsRE   = regexp.MustCompile(`(?s)(?:^|\n)steps:\n(.*)$`)
)

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	var req chatRequest
	if err != nil || json.Unmarshal(body, &req) != nil || len(req.Messages) == 0 {
		writeJSON(w, 400, apiError(400, "request body is not a chat completion request", "invalid_request_error"))
		return
	}
	p := s.plan(req)
	rec := Request{Time: time.Now(), Model: req.Model, Plan: p.name, Authorization: r.Header.Get("Authorization"),
		SessionID: r.Header.Get("X-Session-Id"), Messages: len(req.Messages)}
	for _, t := range req.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()

	if p.status != 0 {
		writeJSON(w, p.status, apiError(p.status, p.text, "scripted_error"))
		return
	}
	promptTokens := len(body) / 4
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": p.text}
		finish := "stop"
		if p.tool != "" {
			msg["tool_calls"] = []map[string]any{{"id": p.callID, "type": "function", "function": map[string]any{"name": p.tool, "arguments": p.args}}}
			finish = "tool_calls"
		}
		writeJSON(w, 200, map[string]any{"id": "chatcmpl-scripted", "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
			"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
			"usage":   map[string]int{"prompt_tokens": promptTokens, "completion_tokens": 20, "total_tokens": promptTokens + 20}})
		return
	}
	s.stream(w, r, req.Model, p, promptTokens)
}

type plan struct {
	name      string
	status    int // an HTTP error instead of an answer
	reasoning []string
	chunks    []string
	slow      bool
	tool      string // a tool call instead of text
	callID    string
	args      string
	text      string
}

// plan is long: one case per scripted behaviour, a table read top to bottom.
func (s *Server) plan(req chatRequest) plan {
	last := req.Messages[len(req.Messages)-1]
	var firstUser, workdir string
	for _, m := range req.Messages {
		if m.Role == "system" {
			if mm := workdirRE.FindStringSubmatch(m.text()); mm != nil {
				workdir = mm[1]
			}
		}
	}
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			firstUser = req.Messages[i].text()
			break
		}
	}
	s.mu.Lock()
	s.calls++
	callID := fmt.Sprintf("call_scripted_%d", s.calls)
	s.mu.Unlock()
	tool := func(name, tool string, args map[string]any) plan {
		b, _ := json.Marshal(args)
		return plan{name: name, tool: tool, callID: callID, args: string(b)}
	}
	words := func(text string) []string {
		var out []string
		for _, w := range strings.SplitAfter(text, " ") {
			if w != "" {
				out = append(out, w)
			}
		}
		return out
	}
	if len(req.Tools) > 0 {
		if m := stepsRE.FindStringSubmatch(firstUser); m != nil {
			var steps []string
			for _, l := range strings.Split(m[1], "\n") {
				// A fence around the steps (a task's text) is not a step.
				if l = strings.TrimSpace(l); l != "" && strings.Trim(l, "`") != "" {
					steps = append(steps, l)
				}
			}
			k := toolResultsSinceUser(req)
			if k < len(steps) {
				if c := callRE.FindStringSubmatch(steps[k]); c != nil {
					var args map[string]any
					if json.Unmarshal([]byte(strings.ReplaceAll(c[2], "$WORKDIR", strings.TrimRight(workdir, "/"))), &args) == nil {
						return tool(fmt.Sprintf("step-%d", k+1), c[1], args)
					}
				}
				return plan{name: "bad-step", chunks: words(fmt.Sprintf("Step %d is not \"call TOOL {json}\": %q", k+1, steps[k]))}
			}
			out := ""
			if last.Role == "tool" {
				out = last.text()
			}
			return plan{name: "steps-done", chunks: words(fmt.Sprintf("All %d steps done. The last output was: %q", len(steps), out))}
		}
	}
	switch {
	case len(req.Tools) == 0:
		return plan{name: "title", chunks: []string{"Scripted demo chat"}}
	case last.Role == "tool":
		out := last.text()
		if strings.Contains(firstUser, "two tools") && strings.Count(outputsSoFar(req), "\x00") < 2 {
			return tool("two-tools-second", "bash", map[string]any{"command": "echo two", "description": "say two"})
		}
		return plan{name: "after-tool", chunks: words(fmt.Sprintf("The tool finished. Output was: %q. Done.", out))}
	}
	if i := strings.Index(last.text(), "say: "); i >= 0 {
		// Verbatim, escape sequences and all, as a model fed a hostile
		// page might answer; two characters a chunk.
		var c []string
		r := []rune(last.text()[i+len("say: "):])
		for j := 0; j < len(r); j += 2 {
			c = append(c, string(r[j:min(j+2, len(r))]))
		}
		return plan{name: "say", chunks: c}
	}
	if i := strings.Index(last.text(), "run: "); i >= 0 {
		return tool("run", "bash", map[string]any{"command": last.text()[i+len("run: "):], "description": "run a command"})
	}
	if m := callRE.FindStringSubmatch(last.text()); m != nil {
		var args map[string]any
		if json.Unmarshal([]byte(m[2]), &args) == nil {
			return tool("call", m[1], args)
		}
	}
	u := strings.ToLower(last.text())
	switch {
	case strings.Contains(u, "fail401"):
		return plan{name: "fail401", status: 401, text: "Incorrect API key provided (scripted)"}
	case strings.Contains(u, "fail429"):
		return plan{name: "fail429", status: 429, text: "Rate limit reached (scripted)"}
	case strings.Contains(u, "fail500"):
		return plan{name: "fail500", status: 500, text: "The server had an error (scripted)"}
	case strings.Contains(u, "which rules"):
		// The lines of the system prompt that begin with "RULE ": what
		// opencode added to it (its instructions) for this turn.
		var rules []string
		for _, m := range req.Messages {
			if m.Role == "system" {
				for _, line := range strings.Split(m.text(), "\n") {
					if strings.HasPrefix(strings.TrimSpace(line), "RULE ") {
						rules = append(rules, strings.TrimSpace(line))
					}
				}
			}
		}
		return plan{name: "rules", chunks: words("Rules: " + strings.Join(rules, " | ") + ".")}
	case strings.Contains(u, "recall"):
		// What the conversation holds: every earlier user message of the
		// request, in order (the history opencode sent).
		var said []string
		for _, m := range req.Messages[:len(req.Messages)-1] {
			if m.Role == "user" {
				said = append(said, strings.TrimSpace(m.text()))
			}
		}
		return plan{name: "recall", chunks: words("You said: " + strings.Join(said, " | ") + ".")}
	case strings.Contains(u, "slow tool"):
		return tool("slow-tool", "bash", map[string]any{"command": "sleep 30; echo done", "description": "sleep a while"})
	case strings.Contains(u, "endless"):
		// A turn that is still streaming whenever a test acts on it (a
		// kill, say), however slowly the machine runs.
		var c []string
		for i := 0; i < 2400; i++ {
			c = append(c, fmt.Sprintf("word%d ", i))
		}
		return plan{name: "endless", chunks: c, slow: true}
	case strings.Contains(u, "slow"):
		var c []string
		for i := 0; i < 40; i++ {
			c = append(c, fmt.Sprintf("word%d ", i))
		}
		return plan{name: "slow", chunks: c, slow: true}
	case strings.Contains(u, "write a file"):
		return tool("write", "write", map[string]any{"filePath": joinDir(workdir, "out.txt"), "content": "written by the scripted model\n"})
	case strings.Contains(u, "use the read tool"):
		return tool("read", "read", map[string]any{"filePath": joinDir(workdir, "hello.txt")})
	case strings.Contains(u, "two tools"):
		return tool("two-tools-first", "bash", map[string]any{"command": "echo one", "description": "say one"})
	case strings.Contains(u, "use a tool"):
		offered := map[string]bool{}
		var names []string
		for _, t := range req.Tools {
			offered[t.Function.Name] = true
			names = append(names, t.Function.Name)
		}
		switch {
		case offered["bash"]:
			return tool("tool", "bash", map[string]any{"command": "echo hi", "description": "say hi"})
		case offered["taos_status"]:
			return tool("tool", "taos_status", map[string]any{})
		}
		return plan{name: "no-known-tool", chunks: words("None of the tools offered is one I can use: " + strings.Join(names, ", ") + ".")}
	}
	return plan{name: "text", reasoning: words("Thinking about a short answer."), chunks: words(Answer)}
}

// toolResultsSinceUser counts the tool results after the last user message:
// the steps of this turn already taken.
func toolResultsSinceUser(req chatRequest) int {
	n := 0
	for i := len(req.Messages) - 1; i >= 0 && req.Messages[i].Role != "user"; i-- {
		if req.Messages[i].Role == "tool" {
			n++
		}
	}
	return n
}

// outputsSoFar marks each tool result in the request with a NUL, to count
// the steps taken.
func outputsSoFar(req chatRequest) string {
	var b strings.Builder
	for _, m := range req.Messages {
		if m.Role == "tool" {
			b.WriteByte(0)
		}
	}
	return b.String()
}

func joinDir(dir, name string) string {
	if dir == "" {
		return name
	}
	return strings.TrimRight(dir, "/") + "/" + name
}

// stream is long: the chunks of one streamed answer in the order OpenAI's
// protocol sends them.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, model string, p plan, promptTokens int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	created := time.Now().Unix()
	var watch *SlowWatch
	if p.slow {
		s.mu.Lock()
		watch, s.watch = s.watch, nil
		s.mu.Unlock()
	}
	ended := "disconnected"
	if watch != nil {
		defer func() { watch.Ended <- ended }()
	}
	send := func(delta map[string]any, finish any) bool {
		chunk := map[string]any{"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}}}
		b, _ := json.Marshal(chunk)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	delay := s.Delay
	if delay <= 0 {
		delay = 250 * time.Millisecond
	}
	if !send(map[string]any{"role": "assistant", "content": ""}, nil) {
		return
	}
	for _, c := range p.reasoning {
		if !send(map[string]any{"reasoning_content": c}, nil) {
			return
		}
	}
	finish := "stop"
	if p.tool != "" {
		finish = "tool_calls"
		if !send(map[string]any{"tool_calls": []map[string]any{{"index": 0, "id": p.callID, "type": "function",
			"function": map[string]any{"name": p.tool, "arguments": ""}}}}, nil) {
			return
		}
		// Arguments arrive in fragments, as real providers send them.
		for i := 0; i < len(p.args); i += 12 {
			frag := p.args[i:min(i+12, len(p.args))]
			if !send(map[string]any{"tool_calls": []map[string]any{{"index": 0, "function": map[string]any{"arguments": frag}}}}, nil) {
				return
			}
		}
	}
	for i, c := range p.chunks {
		if s.Pace > 0 && !p.slow {
			wait := s.Pace / 10
			if i == 0 {
				wait = s.Pace
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(wait):
			}
		}
		if p.slow {
			if watch != nil && i == 1 {
				close(watch.Started) // the first chunk is out
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(delay):
			}
		}
		if !send(map[string]any{"content": c}, nil) {
			return
		}
	}
	if !send(map[string]any{}, finish) {
		return
	}
	usage := map[string]any{"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created, "model": model,
		"choices": []any{}, "usage": map[string]int{"prompt_tokens": promptTokens, "completion_tokens": 20, "total_tokens": promptTokens + 20}}
	b, _ := json.Marshal(usage)
	fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", b)
	rc.Flush()
	ended = "completed"
}
