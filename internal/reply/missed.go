package reply

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

// Missed is what opencode's record of a turn holds that the turn's logged
// events do not: for a daemon that died while the turn ran and whose
// successor adopted the same opencode, the output opencode had that the
// dead daemon never committed (text streamed in its last moments, a tool
// that finished while no daemon listened, a step's usage).
//
// msgs is opencode's record of the turn's session (GET
// /session/{id}/message, oldest first); logged the events committed for
// the turn; began when it started. The turn's messages are those from the
// session's last user message on, if opencode took that message after the
// turn began (else opencode never had the turn's prompt, and nothing is
// missed). Text is compared as the turn's whole answer and reasoning, so
// what was streamed in any number of deltas counts once; tool calls and
// results by call id; usage by step. Every event returned is Synthetic,
// with Session set and Agent and Turn left to the caller; none is a
// terminal.
func Missed(sessionID string, msgs []opencode.Message, logged []event.Event, began, now time.Time) []event.Event {
	last := -1
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Info.Role == "user" && msgs[i].Info.SessionID == sessionID {
			last = i
			break
		}
	}
	if last < 0 || msgs[last].Info.Time.Created < began.UnixMilli() {
		return nil
	}
	c := New()
	c.Begin(sessionID, now)
	record := c.Reconcile(sessionID, msgs[last:], now)

	text := map[event.Kind]string{} // what was logged, not yet matched
	calls, results := map[string]bool{}, map[string]bool{}
	steps := 0
	for _, e := range logged {
		switch e.Kind {
		case event.Delta, event.Reasoning:
			var d event.DeltaData
			json.Unmarshal(e.Data, &d)
			text[e.Kind] += d.Text
		case event.ToolCall:
			var d event.ToolCallData
			json.Unmarshal(e.Data, &d)
			calls[d.CallID] = true
		case event.ToolResult:
			var d event.ToolResultData
			json.Unmarshal(e.Data, &d)
			results[d.CallID] = true
		case event.Usage:
			steps++
		}
	}
	diverged := map[event.Kind]bool{}
	var out []event.Event
	for _, e := range record {
		switch e.Kind {
		case event.Delta, event.Reasoning:
			var d event.DeltaData
			json.Unmarshal(e.Data, &d)
			have := text[e.Kind]
			switch {
			case diverged[e.Kind]:
				continue
			case strings.HasPrefix(have, d.Text):
				text[e.Kind] = have[len(d.Text):] // logged whole
				continue
			case !strings.HasPrefix(d.Text, have):
				// The log says something opencode's record does not: no
				// guess at what is missing.
				diverged[e.Kind] = true
				continue
			}
			text[e.Kind] = ""
			e = event.New(sessionID, e.Kind, now, event.DeltaData{Text: d.Text[len(have):]})
		case event.ToolCall:
			var d event.ToolCallData
			json.Unmarshal(e.Data, &d)
			if calls[d.CallID] {
				continue
			}
		case event.ToolResult:
			var d event.ToolResultData
			json.Unmarshal(e.Data, &d)
			if results[d.CallID] {
				continue
			}
		case event.Usage:
			if steps > 0 {
				steps--
				continue
			}
		default:
			continue
		}
		e.Synthetic = true
		out = append(out, e)
	}
	return out
}
