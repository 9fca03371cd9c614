package scriptedmodel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// capturedBodies returns what the real opencode sent its model in a capture.
func capturedBodies(t *testing.T, name string) []json.RawMessage {
	t.Helper()
	f, err := os.Open("../../testdata/opencode-1.18.33/" + name + ".llm-requests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []json.RawMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var rec struct {
			Body json.RawMessage `json:"body"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec.Body)
		}
	}
	return out
}

// streamed collects the content, reasoning and tool calls of a stream.
func streamed(t *testing.T, body []byte) (content, reasoning, tool, args, finish string) {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					Reasoning string `json:"reasoning_content"`
					ToolCalls []struct {
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				} `json:"delta"`
				Finish *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("bad chunk %q: %v", data, err)
		}
		for _, ch := range c.Choices {
			content += ch.Delta.Content
			reasoning += ch.Delta.Reasoning
			for _, tc := range ch.Delta.ToolCalls {
				tool += tc.Function.Name
				args += tc.Function.Arguments
			}
			if ch.Finish != nil {
				finish = *ch.Finish
			}
		}
	}
	return
}

func post(t *testing.T, s *Server, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, req)
	return rr
}

func TestPlansOnCapturedRequests(t *testing.T) {
	s := &Server{}
	bodies := capturedBodies(t, "02-tool-turn") // title, tool step, after-tool step
	if len(bodies) < 3 {
		t.Fatalf("capture has %d requests", len(bodies))
	}
	// The title request (no tools).
	content, _, _, _, _ := streamed(t, post(t, s, bodies[0]).Body.Bytes())
	if content != "Scripted demo chat" {
		t.Errorf("title = %q", content)
	}
	// "Please use a tool to say hi" → a bash call, arguments in fragments.
	_, reasoning, tool, args, finish := streamed(t, post(t, s, bodies[1]).Body.Bytes())
	if tool != "bash" || finish != "tool_calls" || reasoning != "" {
		t.Errorf("tool step: tool %q finish %q", tool, finish)
	}
	var a map[string]string
	if err := json.Unmarshal([]byte(args), &a); err != nil || a["command"] != "echo hi" {
		t.Errorf("arguments %q: %v", args, err)
	}
	// The tool's output comes back → an answer quoting it.
	content, _, _, _, finish = streamed(t, post(t, s, bodies[2]).Body.Bytes())
	if content != `The tool finished. Output was: "hi\n". Done.` || finish != "stop" {
		t.Errorf("after tool: %q %q", content, finish)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[1].Plan != "tool" || reqs[1].Authorization != "Bearer k" || len(reqs[1].Tools) != 11 {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestTextPlanReasonsThenAnswers(t *testing.T) {
	bodies := capturedBodies(t, "01-text-turn")
	var main json.RawMessage
	for _, b := range bodies {
		if bytes.Contains(b, []byte(`"tools"`)) {
			main = b
		}
	}
	content, reasoning, _, _, _ := streamed(t, post(t, &Server{}, main).Body.Bytes())
	if content != Answer || reasoning != "Thinking about a short answer." {
		t.Errorf("content %q reasoning %q", content, reasoning)
	}
}

func TestFailurePlans(t *testing.T) {
	for word, status := range map[string]int{"fail401": 401, "fail429": 429, "fail500": 500} {
		body := `{"model":"scripted-demo","stream":true,"tools":[{"function":{"name":"bash"}}],"messages":[{"role":"user","content":"please ` + word + `"}]}`
		rr := post(t, &Server{}, []byte(body))
		if rr.Code != status || !strings.Contains(rr.Body.String(), `"message"`) {
			t.Errorf("%s: %d %s", word, rr.Code, rr.Body)
		}
	}
}

func TestBadRequestAndModels(t *testing.T) {
	if rr := post(t, &Server{}, []byte(`{`)); rr.Code != 400 {
		t.Errorf("malformed body: %d", rr.Code)
	}
	rr := httptest.NewRecorder()
	(&Server{}).ServeHTTP(rr, httptest.NewRequest("GET", "/v1/models", nil))
	if rr.Code != http.StatusOK || !strings.Contains(rr.Body.String(), "not an AI") {
		t.Errorf("models: %d %s", rr.Code, rr.Body)
	}
}

// "run: CMD" and "call TOOL {json}" script any command or tool call.
func TestRunAndCallPlans(t *testing.T) {
	for _, c := range []struct{ text, tool, args string }{
		{"run: cat /etc/shadow; echo 'x y'", "bash", `{"command":"cat /etc/shadow; echo 'x y'","description":"run a command"}`},
		{`call taos_status {"verbose":true}`, "taos_status", `{"verbose":true}`},
		{"please call read {\"filePath\":\"/tmp/a\"}\n", "read", `{"filePath":"/tmp/a"}`},
	} {
		body, _ := json.Marshal(map[string]any{"model": "m", "stream": true,
			"messages": []map[string]any{{"role": "user", "content": c.text}},
			"tools":    []map[string]any{{"type": "function", "function": map[string]any{"name": "bash"}}}})
		_, _, tool, args, finish := streamed(t, post(t, &Server{}, body).Body.Bytes())
		if tool != c.tool || args != c.args || finish != "tool_calls" {
			t.Errorf("%q: tool %q args %s finish %q", c.text, tool, args, finish)
		}
	}
}

// "use a tool" calls a tool the agent was offered: bash where it has it,
// the host assistant's taos_status where it has that instead (the host has
// no bash), never a tool it lacks.
func TestUseAToolPicksAnOfferedTool(t *testing.T) {
	for _, c := range []struct {
		offered    []string
		tool, args string
	}{
		{[]string{"read", "bash", "taos_status"}, "bash", `{"command":"echo hi","description":"say hi"}`},
		{[]string{"taos_audit", "taos_status", "todowrite"}, "taos_status", `{}`},
		{[]string{"read", "glob"}, "", ""},
	} {
		var tools []map[string]any
		for _, n := range c.offered {
			tools = append(tools, map[string]any{"type": "function", "function": map[string]any{"name": n}})
		}
		body, _ := json.Marshal(map[string]any{"model": "m", "stream": true,
			"messages": []map[string]any{{"role": "user", "content": "Please use a tool."}}, "tools": tools})
		content, _, tool, args, _ := streamed(t, post(t, &Server{}, body).Body.Bytes())
		if tool != c.tool || args != c.args {
			t.Errorf("offered %v: called %q %s, want %q %s", c.offered, tool, args, c.tool, c.args)
		}
		if c.tool == "" && !strings.Contains(content, "read, glob") {
			t.Errorf("offered %v: answer %q does not name them", c.offered, content)
		}
	}
}

// A "steps:" script takes its k-th step after k tool results of the turn
// (earlier turns' results do not count), fills in the working directory,
// and ends with text quoting the last output.
func TestStepsPlan(t *testing.T) {
	script := "Build it.\nsteps:\ncall write {\"filePath\":\"$WORKDIR/a.txt\",\"content\":\"x\"}\ncall taos_app_validate {\"dir\":\"a\"}\n"
	system := map[string]any{"role": "system", "content": "You are a tool.\nWorking directory: /srv/work\n"}
	tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "write"}}}
	earlier := []map[string]any{{"role": "user", "content": "before"}, {"role": "assistant", "content": ""}, {"role": "tool", "content": "old"}}
	ask := func(msgs ...map[string]any) (content, tool, args string) {
		all := append([]map[string]any{system}, earlier...)
		body, _ := json.Marshal(map[string]any{"model": "m", "stream": true, "tools": tools, "messages": append(all, msgs...)})
		content, _, tool, args, _ = streamed(t, post(t, &Server{}, body).Body.Bytes())
		return
	}
	user := map[string]any{"role": "user", "content": script}
	call := map[string]any{"role": "assistant", "content": ""}
	if _, tool, args := ask(user); tool != "write" || args != `{"content":"x","filePath":"/srv/work/a.txt"}` {
		t.Fatalf("step 1: %q %s", tool, args)
	}
	if _, tool, args := ask(user, call, map[string]any{"role": "tool", "content": "Wrote file"}); tool != "taos_app_validate" || args != `{"dir":"a"}` {
		t.Fatalf("step 2: %q %s", tool, args)
	}
	content, tool, _ := ask(user, call, map[string]any{"role": "tool", "content": "Wrote file"}, call, map[string]any{"role": "tool", "content": `{"ok":true}`})
	if tool != "" || !strings.Contains(content, `All 2 steps done`) || !strings.Contains(content, `{\"ok\":true}`) {
		t.Fatalf("the end: %q %q", tool, content)
	}
	// A call whose arguments hold "steps:" is not a script.
	if _, tool, args := ask(map[string]any{"role": "user", "content": `call taos_app_build {"request":"steps:\ncall x {}"}`}); tool != "taos_app_build" || !strings.Contains(args, `steps:\n`) {
		t.Fatalf("a call carrying a script: %q %s", tool, args)
	}
}
