package reply

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

// loadMessages reads a captured GET /session/{id}/message answer.
func loadMessages(t *testing.T, name string) []opencode.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capturesDir, name+".messages.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []opencode.Message
	if err := json.Unmarshal(b, &msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// outcome is what a user of a turn sees: the answer as streamed, the
// reasoning, each tool call and result, the usage and the final answer.
type outcome struct {
	Delta, Reasoning, Final string
	Calls, Results          []string
	Usage                   event.UsageData
	Terminals               int
}

func summarize(evs []event.Event) outcome {
	var o outcome
	for _, e := range evs {
		switch e.Kind {
		case event.Delta, event.Reasoning:
			var d event.DeltaData
			json.Unmarshal(e.Data, &d)
			if e.Kind == event.Delta {
				o.Delta += d.Text
			} else {
				o.Reasoning += d.Text
			}
		case event.ToolCall:
			var d event.ToolCallData
			json.Unmarshal(e.Data, &d)
			o.Calls = append(o.Calls, d.CallID+" "+d.Tool+" "+string(d.Input))
		case event.ToolResult:
			var d event.ToolResultData
			json.Unmarshal(e.Data, &d)
			o.Results = append(o.Results, d.CallID+" "+d.Output+d.Error)
		case event.Usage:
			var d event.UsageData
			json.Unmarshal(e.Data, &d)
			o.Usage.Add(d)
		case event.Final:
			var d event.FinalData
			json.Unmarshal(e.Data, &d)
			o.Final = d.Text
			o.Terminals++
		case event.Error:
			o.Terminals++
		}
	}
	return o
}

// settle ends the turn as the driver does after a reconnect: opencode
// reports the session idle, and the grace period passes.
func settle(c *Codec, session string, now time.Time) []event.Event {
	out := c.Feed(opencode.Event{Type: "session.status",
		Properties: json.RawMessage(fmt.Sprintf(`{"sessionID":%q,"status":{"type":"idle"}}`, session))}, now)
	return append(out, c.Tick(now.Add(time.Hour))...)
}

// Whatever point the stream breaks at, reconciling with opencode's record
// of the session yields the same turn as the whole stream did: nothing
// missing, nothing twice, and what was learned marked synthetic.
func TestReconcileAfterAnyBreakRecoversTheTurn(t *testing.T) {
	for _, name := range []string{"01-text-turn", "02-tool-turn"} {
		t.Run(name, func(t *testing.T) {
			stream := loadCapture(t, filepath.Join(capturesDir, name+".sse.txt"))
			msgs := loadMessages(t, name)
			session := msgs[0].Info.SessionID
			whole := New()
			var all []event.Event
			all = append(all, whole.Begin(session, stream[0].at)...)
			for _, te := range stream {
				all = append(all, whole.Feed(te.ev, te.at)...)
			}
			all = append(all, whole.Tick(stream[len(stream)-1].at.Add(time.Hour))...)
			want := summarize(all)
			if want.Final == "" || want.Terminals != 1 {
				t.Fatalf("the whole stream gives %+v", want)
			}
			for cut := range len(stream) + 1 {
				c := New()
				evs := c.Begin(session, stream[0].at)
				now := stream[0].at
				for _, te := range stream[:cut] {
					evs = append(evs, c.Feed(te.ev, te.at)...)
					now = te.at
				}
				if !c.Open(session) {
					continue // the turn ended before the break
				}
				rec := c.Reconcile(session, msgs, now)
				for _, e := range rec {
					if !e.Synthetic {
						t.Errorf("cut %d: reconciled %s not marked synthetic", cut, e.Kind)
					}
				}
				evs = append(evs, rec...)
				evs = append(evs, settle(c, session, now)...)
				if got := summarize(evs); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("stream broken after %d of %d events:\n got %+v\nwant %+v", cut, len(stream), got, want)
				}
			}
		})
	}
}

// Reconciling a new turn never replays the answers of earlier turns.
func TestReconcileLeavesEarlierTurnsAlone(t *testing.T) {
	stream := loadCapture(t, filepath.Join(capturesDir, "02-tool-turn.sse.txt"))
	msgs := loadMessages(t, "02-tool-turn")
	session := msgs[0].Info.SessionID
	end := stream[len(stream)-1].at

	t.Run("after a turn the codec closed", func(t *testing.T) {
		c := New()
		c.Begin(session, stream[0].at)
		for _, te := range stream {
			c.Feed(te.ev, te.at)
		}
		c.Tick(end.Add(time.Hour))
		c.Begin(session, end.Add(2*time.Hour)) // the next prompt; its messages not out yet
		if got := c.Reconcile(session, msgs, end.Add(2*time.Hour)); len(got) != 0 {
			t.Fatalf("replayed the earlier turn: %s", kinds(got))
		}
	})

	t.Run("fresh codec, history from before a restart", func(t *testing.T) {
		// An older turn of the same session (01's messages, moved into it)
		// comes before this one; the codec saw neither.
		older := loadMessages(t, "01-text-turn")
		for i := range older {
			older[i].Info.SessionID = session
			for j := range older[i].Parts {
				older[i].Parts[j].SessionID = session
			}
		}
		history := append(older, msgs...)
		c := New()
		c.Begin(session, end)
		evs := append(c.Reconcile(session, history, end), settle(c, session, end)...)
		got := summarize(evs)
		for _, m := range older {
			for _, p := range m.Parts {
				if m.Info.Role == "assistant" && p.Type == "text" && strings.Contains(got.Delta, p.Text) {
					t.Errorf("older answer %q replayed: %q", p.Text, got.Delta)
				}
			}
		}
		if got.Final != `The tool finished. Output was: "hi". Done.` || len(got.Calls) != 1 || len(got.Results) != 1 {
			t.Fatalf("got %+v", got)
		}
	})
}

// A daemon that died while a turn ran logged the turn only up to some
// point; whatever that point, what opencode's record holds beyond it is
// found, once, marked synthetic, and the log then has the whole turn.
func TestMissedIsWhatTheLogLacks(t *testing.T) {
	for _, name := range []string{"01-text-turn", "02-tool-turn"} {
		t.Run(name, func(t *testing.T) {
			stream := loadCapture(t, filepath.Join(capturesDir, name+".sse.txt"))
			msgs := loadMessages(t, name)
			session := msgs[0].Info.SessionID
			began := time.UnixMilli(msgs[0].Info.Time.Created)
			whole := New()
			var all []event.Event
			all = append(all, whole.Begin(session, stream[0].at)...)
			for _, te := range stream {
				all = append(all, whole.Feed(te.ev, te.at)...)
			}
			want := summarize(all)
			want.Final, want.Terminals = "", 0
			for cut := range len(stream) + 1 {
				c := New()
				logged := c.Begin(session, stream[0].at)
				for _, te := range stream[:cut] {
					logged = append(logged, c.Feed(te.ev, te.at)...)
				}
				if !c.Open(session) {
					continue // the turn ended before the daemon died
				}
				missed := Missed(session, msgs, logged, began, stream[0].at)
				for _, e := range missed {
					if !e.Synthetic || e.Session != session {
						t.Fatalf("cut %d: %s not marked synthetic of the session: %+v", cut, e.Kind, e)
					}
				}
				got := summarize(append(logged, missed...))
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("the daemon died after %d of %d events:\n got %+v\nwant %+v", cut, len(stream), got, want)
				}
			}
		})
	}
	msgs := loadMessages(t, "02-tool-turn")
	session := msgs[0].Info.SessionID
	t.Run("opencode never had the turn's prompt", func(t *testing.T) {
		// The last user message is an earlier turn's: it came before
		// this turn began.
		later := time.UnixMilli(msgs[len(msgs)-1].Info.Time.Created + 1000)
		if got := Missed(session, msgs, nil, later, later); len(got) != 0 {
			t.Fatalf("an earlier turn's output filed under this one: %s", kinds(got))
		}
	})
	t.Run("a log that says what opencode does not", func(t *testing.T) {
		began := time.UnixMilli(msgs[0].Info.Time.Created)
		logged := []event.Event{event.New(session, event.Delta, began, event.DeltaData{Text: "something else"})}
		for _, e := range Missed(session, msgs, logged, began, began) {
			if e.Kind == event.Delta {
				t.Fatalf("text guessed past a divergence: %s", e.Data)
			}
		}
	})
}
