package reply

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func ev(typ, props string) opencode.Event {
	return opencode.Event{Type: typ, Properties: json.RawMessage(props)}
}

func status(s string) opencode.Event {
	return ev("session.status", `{"sessionID":"S","status":{"type":"`+s+`"}}`)
}

func msg(id, role string, completed bool) opencode.Event {
	c := ""
	if completed {
		c = `,"completed":2`
	}
	return ev("message.updated", fmt.Sprintf(`{"sessionID":"S","info":{"id":%q,"sessionID":"S","role":%q,"time":{"created":1%s}}}`, id, role, c))
}

func textPart(id, msgID, typ, text string) opencode.Event {
	return ev("message.part.updated", fmt.Sprintf(`{"sessionID":"S","part":{"id":%q,"messageID":%q,"sessionID":"S","type":%q,"text":%q}}`, id, msgID, typ, text))
}

func delta(msgID, partID, text string) opencode.Event {
	return ev("message.part.delta", fmt.Sprintf(`{"sessionID":"S","messageID":%q,"partID":%q,"field":"text","delta":%q}`, msgID, partID, text))
}

// run feeds events 1 ms apart and settles at the end.
func run(c *Codec, evs ...opencode.Event) []event.Event {
	var out []event.Event
	now := t0
	for _, e := range evs {
		now = now.Add(time.Millisecond)
		out = append(out, c.Feed(e, now)...)
	}
	return append(out, c.Tick(now.Add(time.Hour))...)
}

func kinds(evs []event.Event) string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, " ")
}

func final(t *testing.T, evs []event.Event) event.FinalData {
	t.Helper()
	for _, e := range evs {
		if e.Kind == event.Final {
			var d event.FinalData
			json.Unmarshal(e.Data, &d)
			return d
		}
	}
	t.Fatalf("no final in %s", kinds(evs))
	return event.FinalData{}
}

func TestNonStreamingTextIsEmittedOnce(t *testing.T) {
	// A provider that does not stream: the whole text arrives in one update.
	evs := run(New(), status("busy"), msg("m1", "assistant", false),
		textPart("p1", "m1", "text", ""), textPart("p1", "m1", "text", "Hello"),
		textPart("p1", "m1", "text", "Hello world"), msg("m1", "assistant", true), status("idle"))
	if got := kinds(evs); got != "status delta delta final" {
		t.Fatalf("kinds = %s", got)
	}
	if f := final(t, evs); f.Text != "Hello world" {
		t.Errorf("final = %q", f.Text)
	}
}

func TestDeltaBeforeRoleIsRecoveredNotMisfiled(t *testing.T) {
	// The part and its deltas come before the message's role is known.
	evs := run(New(), status("busy"),
		textPart("r1", "m1", "reasoning", ""), delta("m1", "r1", "secret thoughts"),
		msg("m1", "assistant", false), textPart("r1", "m1", "reasoning", "secret thoughts"),
		textPart("p1", "m1", "text", ""), delta("m1", "p1", "Answer"),
		msg("m1", "assistant", true), status("idle"))
	for _, e := range evs {
		if e.Kind == event.Delta && strings.Contains(string(e.Data), "secret") {
			t.Fatalf("reasoning leaked into delta: %s", e.Data)
		}
	}
	if f := final(t, evs); f.Text != "Answer" {
		t.Errorf("final = %q", f.Text)
	}
	if got := kinds(evs); got != "status reasoning delta final" {
		t.Errorf("kinds = %s", got)
	}
}

func TestUserPromptNeverEchoed(t *testing.T) {
	// The user's part arrives before its message.updated.
	evs := run(New(), textPart("u1", "mu", "text", "my prompt"), msg("mu", "user", false),
		status("busy"), msg("m1", "assistant", false), textPart("p1", "m1", "text", "reply"),
		msg("m1", "assistant", true), status("idle"))
	if got := kinds(evs); got != "status delta final" {
		t.Fatalf("kinds = %s", got)
	}
	if f := final(t, evs); f.Text != "reply" {
		t.Errorf("final = %q", f.Text)
	}
}

func TestSeveralTextPartsJoin(t *testing.T) {
	evs := run(New(), status("busy"), msg("m1", "assistant", false), textPart("a", "m1", "text", "Let me look."),
		msg("m1", "assistant", true), msg("m2", "assistant", false), textPart("b", "m2", "text", "Found it."),
		msg("m2", "assistant", true), status("idle"))
	if f := final(t, evs); f.Text != "Let me look.\n\nFound it." {
		t.Errorf("final = %q", f.Text)
	}
}

func TestTurnWaitsForLateUpdatesAfterIdle(t *testing.T) {
	c := New()
	var out []event.Event
	out = append(out, c.Feed(status("busy"), t0)...)
	out = append(out, c.Feed(msg("m1", "assistant", false), t0)...)
	out = append(out, c.Feed(textPart("p1", "m1", "text", "partial"), t0)...)
	out = append(out, c.Feed(status("idle"), t0.Add(time.Second))...)
	// 500 ms later: still waiting, the message is not complete.
	if evs := c.Tick(t0.Add(1500 * time.Millisecond)); len(evs) != 0 {
		t.Fatalf("ended before the late update: %s", kinds(evs))
	}
	out = append(out, c.Feed(textPart("p1", "m1", "text", "partial and more"), t0.Add(1600*time.Millisecond))...)
	out = append(out, c.Feed(msg("m1", "assistant", true), t0.Add(1601*time.Millisecond))...)
	d, ok := c.Deadline()
	if !ok || d != t0.Add(1601*time.Millisecond+DefaultGrace) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	out = append(out, c.Tick(d)...)
	if f := final(t, out); f.Text != "partial and more" {
		t.Errorf("final = %q", f.Text)
	}
	if _, ok := c.Deadline(); ok || c.Open("S") {
		t.Error("turn still open after its final")
	}
}

func TestIncompleteTurnEndsAtMaxWait(t *testing.T) {
	c := New()
	c.Feed(status("busy"), t0)
	c.Feed(msg("m1", "assistant", false), t0)
	c.Feed(status("idle"), t0)
	d, ok := c.Deadline()
	if !ok || d != t0.Add(DefaultMaxWait) {
		t.Fatalf("deadline = %v, %v; want idle + MaxWait", d, ok)
	}
	if got := kinds(c.Tick(d)); got != "final" {
		t.Errorf("kinds = %s", got)
	}
}

func TestBusyAfterIdleStartsNewTurn(t *testing.T) {
	evs := run(New(), status("busy"), msg("m1", "assistant", true), status("idle"),
		status("busy"), msg("m2", "assistant", false), textPart("p", "m2", "text", "two"), msg("m2", "assistant", true), status("idle"))
	if got := kinds(evs); got != "status final status delta final" {
		t.Fatalf("kinds = %s", got)
	}
}

func TestInterruptEndsOpenTurnOnce(t *testing.T) {
	c := New()
	run := func(e opencode.Event) { c.Feed(e, t0) }
	run(status("busy"))
	run(msg("m1", "assistant", false))
	run(ev("message.part.updated", `{"sessionID":"S","part":{"id":"t1","messageID":"m1","sessionID":"S","type":"tool","tool":"bash","callID":"c1","state":{"status":"running","input":{"command":"sleep 9"}}}}`))
	evs := c.Interrupt("", event.CodeInterrupted, "opencode exited", t0)
	if got := kinds(evs); got != "tool_result error" {
		t.Fatalf("kinds = %s", got)
	}
	if again := c.Interrupt("", event.CodeInterrupted, "x", t0); len(again) != 0 {
		t.Errorf("second interrupt emitted %s", kinds(again))
	}
	// A late error from opencode belongs to no turn.
	if late := c.Feed(ev("session.error", `{"sessionID":"S","error":{"name":"MessageAbortedError","data":{"message":"Aborted"}}}`), t0); len(late) != 0 {
		t.Errorf("late error emitted %s", kinds(late))
	}
}

func TestBeginAttributesErrorWithoutBusy(t *testing.T) {
	c := New()
	c.Begin("S", t0)
	out := c.Feed(ev("session.error", `{"sessionID":"S","error":{"name":"UnknownError","data":{"message":"prompt failed"}}}`), t0)
	out = append(out, c.Feed(status("idle"), t0)...)
	out = append(out, c.Tick(t0.Add(time.Second))...)
	if got := kinds(out); got != "error" {
		t.Fatalf("kinds = %s", got)
	}
}

func TestErrorMessagesAreRedacted(t *testing.T) {
	c := New()
	c.Redact = []string{"sk-live-abcdef123456"}
	out := run(c, status("busy"), ev("session.error", `{"sessionID":"S","error":{"name":"APIError","data":{"message":"Incorrect API key provided: sk-live-abcdef123456\n    at x (y.js:1:1)","statusCode":401}}}`), status("idle"))
	var d event.ErrorData
	for _, e := range out {
		if e.Kind == event.Error {
			json.Unmarshal(e.Data, &d)
		}
	}
	if d.Code != event.CodeProviderAuth || d.Status != 401 || d.Message != "Incorrect API key provided: [redacted]" {
		t.Errorf("error = %+v", d)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		status int
		msg    string
		want   string
	}{
		{"MessageAbortedError", 0, "Aborted", event.CodeAborted},
		{"APIError", 401, "bad key", event.CodeProviderAuth},
		{"APIError", 429, "slow down", event.CodeRateLimited},
		{"APIError", 500, "boom", event.CodeProvider},
		{"UnknownError", 0, "Model not found: a/b.", event.CodeModelNotFound},
		{"ProviderModelNotFoundError", 0, "", event.CodeModelNotFound},
		{"ContextOverflowError", 0, "too long", event.CodeContext},
		{"UnknownError", 0, "weird", event.CodeOpencode},
	}
	c := New()
	for _, tt := range tests {
		e := &opencode.MessageError{Name: tt.name}
		e.Data.Message, e.Data.StatusCode = tt.msg, tt.status
		if got := c.classify(e); got.Code != tt.want {
			t.Errorf("%s %d %q → %s, want %s", tt.name, tt.status, tt.msg, got.Code, tt.want)
		}
	}
}

// FuzzCodec feeds arbitrary event streams: the codec must not panic, must
// announce each call once, and must leave no turn settling forever.
func FuzzCodec(f *testing.F) {
	for _, path := range []string{"01-text-turn", "02-tool-turn", "04-abort", "07-unknown-model", "08-permission-once"} {
		// Small seeds keep the fuzzer fast: the events the codec acts on,
		// up to 6 KB.
		var b strings.Builder
		for _, te := range loadCapture(f, capturesDir+"/"+path+".sse.txt") {
			switch te.ev.Type {
			case "plugin.added", "session.updated", "session.diff", "server.heartbeat", "catalog.updated":
				continue
			}
			if b.Len()+len(te.ev.Raw) > 6<<10 {
				break
			}
			b.Write(te.ev.Raw)
			b.WriteByte('\n')
		}
		f.Add([]byte(b.String()))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := New()
		now := t0
		calls := map[string]int{}
		var out []event.Event
		for _, line := range strings.Split(string(in), "\n") {
			e, err := opencode.DecodeEvent([]byte(line))
			if err != nil {
				continue
			}
			now = now.Add(time.Millisecond)
			out = append(out, c.Feed(e, now)...)
		}
		out = append(out, c.Tick(now.Add(time.Hour))...)
		for _, e := range out {
			switch e.Kind {
			case event.ToolCall:
				var d event.ToolCallData
				json.Unmarshal(e.Data, &d)
				calls[d.CallID+"/"+e.Session]++
				if calls[d.CallID+"/"+e.Session] > 1 {
					t.Fatalf("call %s announced twice", d.CallID)
				}
			}
		}
		if _, ok := c.Deadline(); ok {
			t.Fatal("a turn is still settling after an hour")
		}
	})
}

func assistantOn(id, provider, model string) opencode.Event {
	return ev("message.updated", fmt.Sprintf(`{"sessionID":"S","info":{"id":%q,"sessionID":"S","role":"assistant","providerID":%q,"modelID":%q,"time":{"created":1}}}`, id, provider, model))
}

func TestModelSwitchIsReportedOnceWhenTheAnsweringModelChanges(t *testing.T) {
	c := New()
	c.Expect("S", "gw/big")
	// A turn on the expected model: no switch, however often its
	// assistant message is updated.
	evs := run(c, status("busy"), assistantOn("m1", "gw", "big"), assistantOn("m1", "gw", "big"), status("idle"))
	if got := kinds(evs); strings.Contains(got, "model.switched") {
		t.Fatalf("no switch expected: %s", got)
	}
	// The next turn (prompted from the TUI) is answered by another model.
	evs = run(c, status("busy"), assistantOn("m2", "gw", "small"), assistantOn("m2", "gw", "small"),
		assistantOn("m3", "gw", "small"), status("idle"))
	var sw []event.ModelSwitchedData
	for _, e := range evs {
		if e.Kind == event.ModelSwitched {
			var d event.ModelSwitchedData
			json.Unmarshal(e.Data, &d)
			sw = append(sw, d)
		}
	}
	if len(sw) != 1 || sw[0].From != "gw/big" || sw[0].To != "gw/small" || sw[0].Source != "opencode" {
		t.Fatalf("switches = %+v, want one gw/big → gw/small from opencode", sw)
	}
	// Prompted on the new model explicitly: still no second switch.
	c.Expect("S", "gw/small")
	if got := kinds(run(c, status("busy"), assistantOn("m4", "gw", "small"), status("idle"))); strings.Contains(got, "model.switched") {
		t.Fatalf("no switch expected: %s", got)
	}
}

func TestFirstModelSeenIsNoSwitch(t *testing.T) {
	// Nothing expected (a session the caller never prompted): the first
	// model seen is where it stands, not a change.
	if got := kinds(run(New(), status("busy"), assistantOn("m1", "gw", "big"), status("idle"))); strings.Contains(got, "model.switched") {
		t.Fatalf("no switch expected: %s", got)
	}
}

func TestASpentBudgetEndsTheTurnInsteadOfRetrying(t *testing.T) {
	c := New()
	now := t0
	var evs []event.Event
	feed := func(e opencode.Event) {
		now = now.Add(time.Millisecond)
		evs = append(evs, c.Feed(e, now)...)
	}
	feed(status("busy"))
	feed(msg("m1", "assistant", false))
	feed(ev("session.status", `{"sessionID":"S","status":{"type":"retry","attempt":1,"message":"budget exceeded: agent a has used its daily tokens (10 of 1)","next":99}}`))
	if stops := c.TakeStops(); len(stops) != 1 || stops[0] != "S" {
		t.Fatalf("stops = %v, want the session aborted", stops)
	}
	if c.TakeStops() != nil {
		t.Fatal("a stop was handed out twice")
	}
	// opencode, aborted, goes idle with its own abort error: the budget
	// is what the turn ends with, once.
	feed(ev("message.updated", `{"sessionID":"S","info":{"id":"m1","sessionID":"S","role":"assistant","error":{"name":"MessageAbortedError","data":{"message":"aborted"}},"time":{"created":1,"completed":2}}}`))
	feed(status("idle"))
	evs = append(evs, c.Tick(now.Add(time.Hour))...)
	var errs []event.ErrorData
	for _, e := range evs {
		if e.Kind == event.Error {
			var d event.ErrorData
			json.Unmarshal(e.Data, &d)
			errs = append(errs, d)
		}
		if e.Kind == event.Status && strings.Contains(string(e.Data), "retry") {
			t.Errorf("a retry was reported for a spent budget: %s", e.Data)
		}
	}
	if len(errs) != 1 || errs[0].Code != event.CodeBudget || errs[0].Status != 429 {
		t.Fatalf("errors = %+v, want one budget_exceeded", errs)
	}
}

// An idle left over from the session's previous loop (opencode says idle
// more than once, and late) that arrives after a prompt's Begin and before
// opencode says busy for it does not end the new turn: it ended with an
// empty final before its answer came (TestChatOverAPIAndCLI, under load).
func TestAStaleIdleDoesNotEndABegunTurn(t *testing.T) {
	c := New()
	first := run(c, status("busy"), msg("m1", "assistant", false), textPart("p1", "m1", "text", "one"), msg("m1", "assistant", true), status("idle"))
	if f := final(t, first); f.Text != "one" {
		t.Fatalf("the first turn: %q", f.Text)
	}
	t1 := t0.Add(time.Hour * 2)
	c.Begin("S", t1)
	out := c.Feed(ev("session.idle", `{"sessionID":"S"}`), t1.Add(time.Millisecond))
	out = append(out, c.Feed(status("idle"), t1.Add(2*time.Millisecond))...)
	out = append(out, c.Tick(t1.Add(time.Second))...)
	if len(out) != 0 {
		t.Fatalf("the stale idle ended the new turn: %s", kinds(out))
	}
	now := t1.Add(2 * time.Second)
	for _, e := range []opencode.Event{status("busy"), msg("m2", "assistant", false), textPart("p2", "m2", "text", "two"), msg("m2", "assistant", true), status("idle")} {
		now = now.Add(time.Millisecond)
		out = append(out, c.Feed(e, now)...)
	}
	out = append(out, c.Tick(now.Add(time.Hour))...)
	if got := kinds(out); got != "status delta final" || final(t, out).Text != "two" {
		t.Fatalf("the second turn: %s %q", got, final(t, out).Text)
	}
	// A prompt opencode never takes up still ends, MaxWait after its idle.
	t2 := now.Add(time.Hour)
	c.Begin("S", t2)
	c.Feed(status("idle"), t2)
	if d, ok := c.Deadline(); !ok || d != t2.Add(DefaultMaxWait) {
		t.Fatalf("deadline %v %v, want the idle + MaxWait", d, ok)
	}
	if got := kinds(c.Tick(t2.Add(DefaultMaxWait))); got != "final" {
		t.Fatalf("an ignored prompt: %s", got)
	}
}
