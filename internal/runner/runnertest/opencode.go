// Package runnertest runs the turn machine without opencode: Opencode is
// an in-process stand-in that serves the part of opencode's HTTP API the
// runner uses and answers each prompt with an event stream recorded from
// the real opencode 1.18.33 (testdata/opencode-1.18.33), and Instances
// puts one behind each agent as the supervisor would. It complements the
// e2e suite against the real opencode, never replaces it: what opencode
// does that no capture shows is proven there.
package runnertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/taosagent/taosagent/internal/opencode"
)

// Gates: a script pauses at one until the action it names arrives.
const (
	gateReply   = "reply"   // a permission request is answered
	gateAbort   = "abort"   // the session is aborted
	gateRelease = "release" // the test calls Release
)

type step struct {
	frame []byte // an event, with the capture's session id as written
	gate  string // or a pause
}

// Script is what opencode streams for one prompt: a capture's events
// from the prompt on, with its pauses.
type Script struct {
	name    string
	session string // the capture's session id, replaced by the real one
	steps   []step
	// Model, when set, is the model opencode reports it runs, whatever
	// the prompt named (as after a switch made in opencode's TUI).
	Model string
	// IgnoreAbort makes opencode take an abort and go on as if none came.
	IgnoreAbort bool
	// Refuse makes opencode refuse the prompt (400), as it refuses one
	// naming a model it does not know.
	Refuse bool
}

// capturesDir is testdata/opencode-1.18.33 at the module's root.
func capturesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "opencode-1.18.33")
}

var sessionOf = regexp.MustCompile(`"sessionID":"(ses_[A-Za-z0-9]+)"`)

// Capture loads the recorded stream NAME.sse.txt (say "01-text-turn"). A
// permission request pauses it until the request is answered; an abort
// recorded in it (04-abort) pauses it before the abort's events.
func Capture(t testing.TB, name string) Script {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capturesDir(), name+".sse.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(b, []byte("\nCURL_EXIT ")); i >= 0 {
		b = b[:i+1]
	}
	s := Script{name: name}
	rd := opencode.NewSSEReader(bytes.NewReader(b), 0)
	for {
		fr, err := rd.Next()
		if err != nil {
			break
		}
		ev, err := opencode.DecodeEvent(fr.Data)
		if err != nil || ev.Type == "server.connected" || ev.Type == "session.created" {
			continue
		}
		if s.session == "" {
			if m := sessionOf.FindSubmatch(fr.Data); m != nil {
				s.session = string(m[1])
			}
		}
		if ev.Type == "session.error" && bytes.Contains(ev.Properties, []byte("MessageAbortedError")) {
			s.steps = append(s.steps, step{gate: gateAbort})
		}
		s.steps = append(s.steps, step{frame: bytes.Clone(fr.Data)})
		if ev.Type == "permission.asked" {
			s.steps = append(s.steps, step{gate: gateReply})
		}
	}
	if len(s.steps) == 0 || s.session == "" {
		t.Fatalf("capture %s: no events", name)
	}
	return s
}

// HoldBeforeEnd pauses s before opencode reports the session idle, until
// Release: a turn that runs for as long as a test needs.
func (s Script) HoldBeforeEnd() Script {
	out := s
	out.steps = nil
	held := false
	for _, st := range s.steps {
		if !held && st.frame != nil && bytes.Contains(st.frame, []byte(`"type":"session.status"`)) && bytes.Contains(st.frame, []byte(`"type":"idle"`)) {
			out.steps = append(out.steps, step{gate: gateRelease})
			held = true
		}
		out.steps = append(out.steps, st)
	}
	return out
}

// Prompt is a prompt opencode received.
type Prompt struct {
	Session string
	Text    string
	Model   string // provider/model, "" if the prompt named none
}

// Reply is an answer to a permission request opencode received.
type Reply struct {
	Request, Reply, Message string
}

// Opencode is one agent's opencode, in process. Its sessions outlive a
// crash, as opencode's do on disk; what runs in them does not.
type Opencode struct {
	srv *httptest.Server

	mu       sync.Mutex
	sessions map[string]bool
	plays    map[string]*play // session → the script it runs
	pending  map[string]string
	subs     map[chan []byte]bool
	scripts  []Script
	fallback Script
	prompts  []Prompt
	replies  []Reply
	aborts   int
	n        int
}

// play is a script running in a session.
type play struct {
	s     Script
	model string // provider/model opencode runs
	at    int    // the next step
	id    int    // this play's number: its message ids are its own
}

// NewOpencode starts an Opencode that answers prompts with fallback (and
// with the scripts of Next first).
func NewOpencode(t testing.TB, fallback Script) *Opencode {
	o := &Opencode{sessions: map[string]bool{}, plays: map[string]*play{}, pending: map[string]string{},
		subs: map[chan []byte]bool{}, fallback: fallback}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /global/event", o.events)
	mux.HandleFunc("POST /session", o.createSession)
	mux.HandleFunc("GET /session/status", o.status)
	mux.HandleFunc("GET /session/{id}", o.getSession)
	mux.HandleFunc("GET /session/{id}/message", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, []any{}) })
	mux.HandleFunc("POST /session/{id}/prompt_async", o.prompt)
	mux.HandleFunc("POST /session/{id}/abort", o.abort)
	mux.HandleFunc("GET /permission", o.permissions)
	mux.HandleFunc("POST /permission/{id}/reply", o.reply)
	o.srv = httptest.NewServer(mux)
	t.Cleanup(func() { o.Crash(); o.srv.Close() })
	return o
}

// Client is a client of this opencode, as the TUI or the runner has.
func (o *Opencode) Client() *opencode.Client {
	return &opencode.Client{BaseURL: o.srv.URL, Password: "runnertest", Directory: "/work"}
}

// Next queues scripts for the next prompts, in order.
func (o *Opencode) Next(s ...Script) {
	o.mu.Lock()
	o.scripts = append(o.scripts, s...)
	o.mu.Unlock()
}

// Prompts are the prompts received so far.
func (o *Opencode) Prompts() []Prompt {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Prompt(nil), o.prompts...)
}

// Replies are the answers to permission requests received so far.
func (o *Opencode) Replies() []Reply {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Reply(nil), o.replies...)
}

// Aborts counts the aborts received.
func (o *Opencode) Aborts() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.aborts
}

// Release lets session's script go on past its release pause.
func (o *Opencode) Release(session string) { o.act(session, gateRelease) }

// Crash ends every script and every event stream, as opencode's death
// does; sessions stay.
func (o *Opencode) Crash() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for c := range o.subs {
		close(c)
		delete(o.subs, c)
	}
	clear(o.plays)
	clear(o.pending)
}

func (o *Opencode) events(w http.ResponseWriter, r *http.Request) {
	c := make(chan []byte, 4096)
	o.mu.Lock()
	o.subs[c] = true
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		if o.subs[c] {
			delete(o.subs, c)
		}
		o.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "data: %s\n\n", `{"type":"server.connected","properties":{}}`)
	w.(http.Flusher).Flush()
	for {
		select {
		case f, ok := <-c:
			if !ok {
				return
			}
			fmt.Fprintf(w, "data: %s\n\n", f)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// send streams frame to every subscriber; under mu.
func (o *Opencode) send(frame []byte) {
	for c := range o.subs {
		select {
		case c <- frame:
		default: // a stuck reader is cut off; it reconnects
			close(c)
			delete(o.subs, c)
		}
	}
}

func (o *Opencode) createSession(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.n++
	id := fmt.Sprintf("ses_runnertest%04d", o.n)
	o.sessions[id] = true
	o.mu.Unlock()
	writeJSON(w, opencode.Session{ID: id, Title: "test", Directory: "/work"})
}

func (o *Opencode) getSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	o.mu.Lock()
	ok := o.sessions[id]
	o.mu.Unlock()
	if !ok {
		http.Error(w, `{"name":"NotFoundError","data":{"message":"no such session"}}`, http.StatusNotFound)
		return
	}
	writeJSON(w, opencode.Session{ID: id, Title: "test", Directory: "/work"})
}

func (o *Opencode) status(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	st := map[string]opencode.Status{}
	for s := range o.plays {
		st[s] = opencode.Status{Type: "busy"}
	}
	o.mu.Unlock()
	writeJSON(w, st)
}

func (o *Opencode) prompt(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		Parts []struct{ Text string } `json:"parts"`
		Model *struct{ ProviderID, ModelID string }
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Parts) == 0 {
		http.Error(w, "bad prompt", http.StatusBadRequest)
		return
	}
	p := Prompt{Session: id, Text: body.Parts[0].Text}
	if body.Model != nil {
		p.Model = body.Model.ProviderID + "/" + body.Model.ModelID
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.sessions[id] {
		http.Error(w, `{"name":"NotFoundError","data":{"message":"no such session"}}`, http.StatusNotFound)
		return
	}
	o.prompts = append(o.prompts, p)
	if o.plays[id] != nil {
		w.WriteHeader(http.StatusNoContent)
		return // joins the running loop, as opencode's prompt while busy does
	}
	s := o.fallback
	if len(o.scripts) > 0 {
		s, o.scripts = o.scripts[0], o.scripts[1:]
	}
	if s.Refuse {
		http.Error(w, `{"name":"BadRequestError","data":{"message":"the prompt was refused"}}`, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	model := p.Model
	if s.Model != "" {
		model = s.Model
	}
	o.n++
	pl := &play{s: s, model: model, id: o.n}
	o.plays[id] = pl
	o.run(id, pl)
}

// run plays pl from its next step up to a pause or its end; under mu.
func (o *Opencode) run(session string, pl *play) {
	for pl.at < len(pl.s.steps) {
		st := pl.s.steps[pl.at]
		if st.gate != "" {
			return
		}
		pl.at++
		f := o.rewrite(session, pl, st.frame)
		var ev struct {
			Type       string
			Properties opencode.PermissionRequest
		}
		if json.Unmarshal(f, &ev) == nil && ev.Type == "permission.asked" {
			o.pending[ev.Properties.ID] = string(f)
		}
		o.send(f)
	}
	delete(o.plays, session)
}

var ids = regexp.MustCompile(`"((?:msg|prt|per|call)_[A-Za-z0-9_]+)"`)

// rewrite makes a captured frame this play's: its session, its own
// message, part, request and call ids, and the model it runs.
func (o *Opencode) rewrite(session string, pl *play, frame []byte) []byte {
	f := bytes.ReplaceAll(frame, []byte(pl.s.session), []byte(session))
	f = ids.ReplaceAll(f, []byte(fmt.Sprintf(`"${1}p%d"`, pl.id)))
	if provider, model, ok := strings.Cut(pl.model, "/"); ok {
		f = bytes.ReplaceAll(f, []byte(`"providerID":"fake"`), []byte(`"providerID":"`+provider+`"`))
		f = bytes.ReplaceAll(f, []byte(`"modelID":"fake-model"`), []byte(`"modelID":"`+model+`"`))
		f = bytes.ReplaceAll(f, []byte(`"id":"fake-model"`), []byte(`"id":"`+model+`"`))
	}
	return f
}

// act lets session's script past a pause of kind gate; an abort at any
// other pause ends the script as opencode's abort does.
func (o *Opencode) act(session, gate string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	pl := o.plays[session]
	if pl == nil || pl.at >= len(pl.s.steps) {
		return
	}
	switch g := pl.s.steps[pl.at].gate; {
	case g == gate:
		pl.at++
	case gate == gateAbort:
		// opencode's abort, as 04-abort recorded it, from its error on.
		tail := aborted(pl.s.session)
		pl.s = tail
		pl.at = 0
	default:
		return
	}
	o.run(session, pl)
}

var abortTail struct {
	once sync.Once
	s    Script
}

// aborted is the end of an aborted turn, as recorded in 04-abort, for a
// script of capture session.
func aborted(session string) Script {
	abortTail.once.Do(func() {
		abortTail.s = Capture(quiet{}, "04-abort")
	})
	s := abortTail.s
	for i, st := range s.steps {
		if st.gate == gateAbort {
			s.steps = s.steps[i+1:]
			break
		}
	}
	out := Script{name: "abort", session: session}
	for _, st := range s.steps {
		out.steps = append(out.steps, step{frame: bytes.ReplaceAll(st.frame, []byte(s.session), []byte(session))})
	}
	return out
}

func (o *Opencode) abort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	o.mu.Lock()
	o.aborts++
	ignore := o.plays[id] != nil && o.plays[id].s.IgnoreAbort
	o.mu.Unlock()
	writeJSON(w, true)
	if !ignore {
		o.act(id, gateAbort)
	}
}

func (o *Opencode) permissions(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	out := []json.RawMessage{}
	for _, f := range o.pending {
		var ev struct{ Properties json.RawMessage }
		json.Unmarshal([]byte(f), &ev)
		out = append(out, ev.Properties)
	}
	o.mu.Unlock()
	writeJSON(w, out)
}

func (o *Opencode) reply(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct{ Reply, Message string }
	json.NewDecoder(r.Body).Decode(&body)
	o.mu.Lock()
	f, ok := o.pending[id]
	if ok {
		delete(o.pending, id)
		o.replies = append(o.replies, Reply{Request: id, Reply: body.Reply, Message: body.Message})
	}
	o.mu.Unlock()
	if !ok {
		http.Error(w, `{"name":"NotFoundError","data":{"message":"no such request"}}`, http.StatusNotFound)
		return
	}
	writeJSON(w, true)
	var ev struct{ Properties opencode.PermissionRequest }
	json.Unmarshal([]byte(f), &ev)
	o.act(ev.Properties.SessionID, gateReply)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// quiet is a testing.TB for loading a capture outside a test's scope: a
// missing capture is a broken checkout, reported by panicking.
type quiet struct{ testing.TB }

func (quiet) Helper()                   {}
func (quiet) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (quiet) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
