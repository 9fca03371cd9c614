package runner

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/supervisor"
	"github.com/taosagent/taosagent/internal/testenv"
)

// driverAgent is a running Driver with the events it has emitted.
type driverAgent struct {
	t     *testing.T
	d     *Driver
	model *scriptedmodel.Server
	ch    chan event.Event
	mu    sync.Mutex
	all   []event.Event
}

func startAgent(t *testing.T, permission string) *driverAgent {
	t.Helper()
	bin := testenv.Opencode(t)
	sup, err := supervisor.New(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sup.MinBackoff = 50 * time.Millisecond
	sup.Sandbox = sandbox.New() // as serve runs them
	model, modelURL := testenv.Model(t)
	a := &driverAgent{t: t, ch: make(chan event.Event, 1024), model: model}
	spec := supervisor.Spec{Name: "a", Dir: t.TempDir(), Config: testenv.Config(modelURL, permission)}
	a.d = NewDriver(Supervised(sup), spec, func(e event.Event) {
		a.mu.Lock()
		a.all = append(a.all, e)
		a.mu.Unlock()
		a.ch <- e
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; sup.Close() })
	return a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// turn sends text in a new session and returns the session id.
func (a *driverAgent) prompt(session, text string) string {
	a.t.Helper()
	ctx := ctxT(a.t)
	if session == "" {
		var err error
		if session, err = a.d.CreateSession(ctx, "test"); err != nil {
			a.t.Fatal(err)
		}
	}
	if err := a.d.Prompt(ctx, session, opencode.Prompt{Text: text}); err != nil {
		a.t.Fatal(err)
	}
	return session
}

// until collects the session's events up to and including one that stop
// accepts; on each event, on is called first (nil: nothing).
func (a *driverAgent) until(session string, stop func(event.Event) bool, on func(event.Event)) []event.Event {
	a.t.Helper()
	var got []event.Event
	deadline := time.After(150 * time.Second)
	for {
		select {
		case e := <-a.ch:
			if e.Session != session && e.Kind != event.Instance {
				continue
			}
			got = append(got, e)
			if on != nil {
				on(e)
			}
			if stop(e) {
				return got
			}
		case <-deadline:
			a.t.Fatalf("turn did not end; got %s", kindsOf(got))
		}
	}
}

func terminal(e event.Event) bool { return e.Kind.Terminal() }

func kindsOf(evs []event.Event) string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, " ")
}

func data[T any](t *testing.T, e event.Event) T {
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func last(evs []event.Event) event.Event { return evs[len(evs)-1] }

func count(evs []event.Event, k event.Kind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// settleNoMore checks that no further terminal event arrives for session.
func (a *driverAgent) settleNoMore(session string, d time.Duration) {
	a.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-a.ch:
			if e.Session == session && e.Kind.Terminal() {
				a.t.Fatalf("a second terminal event: %s %s", e.Kind, e.Data)
			}
		case <-timeout:
			return
		}
	}
}

// TestPlainTurns runs, one after the other on one agent (an opencode
// start is ~9.5 s of CPU), the turns that need nothing of their own: each
// in its own session.
func TestPlainTurns(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "")
	for _, st := range []struct {
		name string
		run  func(*testing.T, *driverAgent)
	}{
		{"text", textTurn},
		{"tool", toolTurn},
		{"unknown model", unknownModel},
		{"provider auth error", providerError("please fail401", event.CodeProviderAuth, 401, false)},
		{"provider error", providerError("please fail500", event.CodeProvider, 500, true)}, // opencode retries for ~64 s first
	} {
		t.Run(st.name, func(t *testing.T) {
			a.t = t
			defer func() { a.t = nil }()
			st.run(t, a)
		})
	}
}

func textTurn(t *testing.T, a *driverAgent) {
	s := a.prompt("", "Say hello please")
	evs := a.until(s, terminal, nil)
	f := last(evs)
	if f.Kind != event.Final {
		t.Fatalf("ended with %s %s", f.Kind, f.Data)
	}
	fd := data[event.FinalData](t, f)
	if fd.Text != scriptedmodel.Answer || fd.Usage.Input == 0 {
		t.Errorf("final = %+v", fd)
	}
	var deltas, reasoning string
	for _, e := range evs {
		switch e.Kind {
		case event.Delta:
			deltas += data[event.DeltaData](t, e).Text
		case event.Reasoning:
			reasoning += data[event.DeltaData](t, e).Text
		}
	}
	if deltas != scriptedmodel.Answer || reasoning != "Thinking about a short answer." {
		t.Errorf("deltas %q reasoning %q", deltas, reasoning)
	}
	if strings.Contains(fd.Text, "Thinking") || strings.Contains(deltas, "Say hello") {
		t.Error("reasoning or prompt leaked into the answer")
	}
	// A second turn in the same session works too.
	a.prompt(s, "Say hello again")
	if e := last(a.until(s, terminal, nil)); e.Kind != event.Final {
		t.Fatalf("second turn ended with %s", e.Kind)
	}
}

func toolTurn(t *testing.T, a *driverAgent) {
	s := a.prompt("", "Please use a tool to say hi")
	evs := a.until(s, terminal, nil)
	if got := count(evs, event.ToolCall); got != 1 {
		t.Fatalf("tool_calls = %d in %s", got, kindsOf(evs))
	}
	for _, e := range evs {
		switch e.Kind {
		case event.ToolCall:
			if d := data[event.ToolCallData](t, e); d.Tool != "bash" || !strings.Contains(string(d.Input), "echo hi") {
				t.Errorf("tool_call %+v", d)
			}
		case event.ToolResult:
			if d := data[event.ToolResultData](t, e); d.Output != "hi\n" || d.Error != "" {
				t.Errorf("tool_result %+v", d)
			}
		}
	}
	if fd := data[event.FinalData](t, last(evs)); !strings.Contains(fd.Text, `"hi\n"`) {
		t.Errorf("final %+v", fd)
	}
}

const askBash = `{"bash":"ask","read":"allow","edit":"ask"}`

func TestPermissionReplies(t *testing.T) {
	tests := []struct {
		reply, message string
		wantFinal      string // substring of final text
		wantToolErr    bool
	}{
		{"once", "", `"hi\n"`, false},
		{"reject", "", "", true},
		{"reject", "Do not run shell commands, just answer.", "just answer", true},
	}
	t.Parallel()
	a := startAgent(t, askBash) // one agent: the replies, one after the other
	for _, tt := range tests {
		t.Run(tt.reply+map[bool]string{true: "-with-message"}[tt.message != ""], func(t *testing.T) {
			a.t = t
			defer func() { a.t = nil }()
			s := a.prompt("", "Please use a tool to say hi")
			asked := 0
			evs := a.until(s, terminal, func(e event.Event) {
				if e.Kind == event.PermissionAsked {
					asked++
					d := data[event.PermissionAskedData](t, e)
					if d.Tool != "bash" || d.CallID == "" || d.Approval == "" {
						t.Errorf("permission.asked %+v", d)
					}
					if err := a.d.ReplyPermission(ctxT(t), d.Approval, tt.reply, tt.message); err != nil {
						t.Error(err)
					}
				}
			})
			if asked != 1 || count(evs, event.PermissionResolved) != 1 {
				t.Fatalf("asked %d resolved %d: %s", asked, count(evs, event.PermissionResolved), kindsOf(evs))
			}
			if last(evs).Kind != event.Final {
				t.Fatalf("ended with %s %s", last(evs).Kind, last(evs).Data)
			}
			fd := data[event.FinalData](t, last(evs))
			if !strings.Contains(fd.Text, tt.wantFinal) {
				t.Errorf("final %q lacks %q", fd.Text, tt.wantFinal)
			}
			for _, e := range evs {
				if e.Kind == event.ToolResult {
					if d := data[event.ToolResultData](t, e); (d.Error != "") != tt.wantToolErr {
						t.Errorf("tool_result %+v", d)
					}
				}
			}
		})
	}
}

func TestPermissionAlways(t *testing.T) {
	t.Parallel()
	a := startAgent(t, askBash)
	s := a.prompt("", "Please use a tool to say hi")
	a.until(s, terminal, func(e event.Event) {
		if e.Kind == event.PermissionAsked {
			a.d.ReplyPermission(ctxT(t), data[event.PermissionAskedData](t, e).Approval, "always", "")
		}
	})
	// The same command again: no ask this time.
	a.prompt(s, "Please use a tool to say hi")
	evs := a.until(s, terminal, nil)
	if count(evs, event.PermissionAsked) != 0 || count(evs, event.ToolResult) != 1 || last(evs).Kind != event.Final {
		t.Fatalf("after always: %s", kindsOf(evs))
	}
}

func TestAbortWhileStreaming(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "")
	watch := a.model.WatchSlow()
	s := a.prompt("", "Write slow output please")
	// The abort goes out while the model is known to be streaming (told
	// by the model itself: under load, opencode's events reach the driver
	// late, and an abort timed on them could come after the stream ended).
	select {
	case <-watch.Started:
	case <-time.After(2 * time.Minute):
		t.Fatal("the model never started streaming")
	}
	if err := a.d.Abort(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	evs := a.until(s, terminal, nil)
	if e := last(evs); e.Kind != event.Error || data[event.ErrorData](t, e).Code != event.CodeAborted {
		t.Fatalf("ended with %s %s", e.Kind, e.Data)
	}
	if how := <-watch.Ended; how != "disconnected" {
		t.Errorf("the model's stream %s: the abort did not reach it", how)
	}
	a.settleNoMore(s, time.Second)
}

func TestAbortWhileToolRuns(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "")
	s := a.prompt("", "Run a slow tool please")
	aborted := false
	evs := a.until(s, terminal, func(e event.Event) {
		if e.Kind == event.ToolCall && !aborted {
			aborted = true
			time.Sleep(300 * time.Millisecond)
			a.d.Abort(ctxT(t), s)
		}
	})
	if e := last(evs); e.Kind != event.Error || data[event.ErrorData](t, e).Code != event.CodeAborted {
		t.Fatalf("ended with %s %s", e.Kind, e.Data)
	}
	if count(evs, event.ToolResult) != 1 {
		t.Errorf("want the aborted tool's result: %s", kindsOf(evs))
	}
}

func providerError(prompt, code string, status int, retries bool) func(*testing.T, *driverAgent) {
	return func(t *testing.T, a *driverAgent) {
		s := a.prompt("", prompt)
		evs := a.until(s, terminal, nil)
		e := last(evs)
		d := data[event.ErrorData](t, e)
		if e.Kind != event.Error || d.Code != code || d.Status != status {
			t.Fatalf("ended with %s %+v", e.Kind, d)
		}
		if strings.Contains(d.Message, "sk-scripted-test-key") || strings.Contains(d.Message, "\n") {
			t.Errorf("unclean message %q", d.Message)
		}
		n := 0
		for _, e := range evs {
			if e.Kind == event.Status && data[event.StatusData](t, e).State == "retry" {
				n++
			}
		}
		if retries && n == 0 || !retries && n != 0 {
			t.Errorf("%d retry statuses", n)
		}
		a.settleNoMore(s, time.Second)
	}
}

func unknownModel(t *testing.T, a *driverAgent) {
	ctx := ctxT(t)
	s, err := a.d.CreateSession(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.d.Prompt(ctx, s, opencode.Prompt{Text: "hi", ProviderID: "scripted", ModelID: "not-a-model"}); err != nil {
		t.Fatal(err)
	}
	evs := a.until(s, terminal, nil)
	d := data[event.ErrorData](t, last(evs))
	if d.Code != event.CodeModelNotFound || strings.Contains(d.Message, " at ") {
		t.Fatalf("error %+v", d)
	}
	// opencode reports it twice; we say it once.
	a.settleNoMore(s, 2*time.Second)
}

func TestOpencodeKilledMidTurn(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "")
	s := a.prompt("", "Write slow output please")
	killed := 0
	evs := a.until(s, terminal, func(e event.Event) {
		if e.Kind == event.Delta && killed == 0 {
			killed = a.d.PID()
			syscall.Kill(killed, syscall.SIGKILL)
		}
	})
	d := data[event.ErrorData](t, last(evs))
	if last(evs).Kind != event.Error || d.Code != event.CodeInterrupted {
		t.Fatalf("ended with %s %+v", last(evs).Kind, d)
	}
	a.settleNoMore(s, time.Second)
	// The instance is back and the session (kept in opencode's store) works.
	a.prompt(s, "Say hello please")
	evs = a.until(s, terminal, nil)
	if last(evs).Kind != event.Final || a.d.PID() == killed {
		t.Fatalf("after restart: %s, pid %d (killed %d)", kindsOf(evs), a.d.PID(), killed)
	}
}

func TestTwoAgentsAtOnce(t *testing.T) {
	t.Parallel()
	a, b := startAgent(t, ""), startAgent(t, "")
	// Both turns run at once; their events buffer while the other is read.
	sa := a.prompt("", "Write slow output please")
	sb := b.prompt("", "Write slow output please")
	for _, x := range []struct {
		ag *driverAgent
		s  string
	}{{a, sa}, {b, sb}} {
		evs := x.ag.until(x.s, terminal, nil)
		if e := last(evs); e.Kind != event.Final || !strings.Contains(data[event.FinalData](t, e).Text, "word39") {
			t.Errorf("ended with %s %s", e.Kind, e.Data)
		}
	}
	if a.d.PID() == b.d.PID() {
		t.Error("two agents share an instance")
	}
}

// When the event stream loses part of a turn, reconciliation after the
// reconnect recovers it from opencode's messages: the answer arrives
// whole, once, and what was recovered is marked synthetic.
func TestStreamLostMidAnswerIsReconciled(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "")
	var deltas atomic.Int32
	a.d.lose = func(ev opencode.Event) bool {
		// Let the first two deltas through, then lose every later delta
		// and message update until opencode reports the session idle.
		switch ev.Type {
		case "message.part.delta":
			return deltas.Add(1) > 2
		case "message.part.updated", "message.updated":
			return deltas.Load() > 2
		}
		return false
	}
	s := a.prompt("", "Say hello please")
	evs := a.until(s, terminal, nil)
	f := last(evs)
	if f.Kind != event.Final {
		t.Fatalf("ended with %s %s", f.Kind, f.Data)
	}
	if deltas.Load() <= 3 {
		t.Fatalf("only %d deltas streamed: nothing was lost", deltas.Load())
	}
	var text string
	synthetic := 0
	for _, e := range evs {
		if e.Kind == event.Delta {
			text += data[event.DeltaData](t, e).Text
			if e.Synthetic {
				synthetic++
			}
		}
	}
	if text != scriptedmodel.Answer || data[event.FinalData](t, f).Text != scriptedmodel.Answer {
		t.Errorf("deltas %q, final %q; want %q", text, data[event.FinalData](t, f).Text, scriptedmodel.Answer)
	}
	if synthetic == 0 {
		t.Error("the recovered text is not marked synthetic")
	}
}
