package eventlog

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
)

// FuzzEncode holds the hand-written encoder to encoding/json: the same
// bytes for every event.
func FuzzEncode(f *testing.F) {
	f.Add(int64(1), "host", "ses_1", "turn_1", "", "delta", "hello", int64(0), false)
	f.Add(int64(9), "a\"b", "s\\", "<t>&", "tr-1\n", "final", "\u2028\x00é", int64(1700000000123456789), true)
	f.Fuzz(func(t *testing.T, seq int64, agent, session, turn, trace, kind, text string, ns int64, synthetic bool) {
		data, _ := json.Marshal(map[string]string{"text": text})
		e := event.Event{Seq: seq, Agent: agent, Session: session, Turn: turn, TraceID: trace, Kind: event.Kind(kind),
			Time: time.Unix(0, ns).UTC(), Data: data, Synthetic: synthetic}
		want, err := json.Marshal(e)
		if err != nil {
			t.Skip() // a time json cannot show
		}
		if got := encode(nil, e); !bytes.Equal(got, want) {
			t.Fatalf("encode:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}
