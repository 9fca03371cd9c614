package reply

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

var update = flag.Bool("update", false, "rewrite the golden files from the codec's output")

// capturesDir holds the real opencode 1.18.33 traffic.
const capturesDir = "../../testdata/opencode-1.18.33"

// captures lists every recorded event stream.
func captures(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.sse.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s : %v", capturesDir, err)
	}
	return files
}

// timedEvent is a captured event with the time opencode stamped into its id.
type timedEvent struct {
	ev opencode.Event
	at time.Time
}

// eventTime reads the time out of an opencode event id: its first 12 hex
// digits are ms × 4096 + a counter (mod 2^48): a clock that wraps every
// ~2.2 years, good for differences only.
func eventTime(id string) (time.Time, bool) {
	if len(id) < 16 || !strings.HasPrefix(id, "evt_") {
		return time.Time{}, false
	}
	v, err := strconv.ParseUint(id[4:16], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(v >> 12)).UTC(), true
}

func loadCapture(t testing.TB, path string) []timedEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Some captures end with the capturing tool's own note, not a frame.
	if i := bytes.Index(b, []byte("\nCURL_EXIT ")); i >= 0 {
		b = b[:i+1]
	}
	rd := opencode.NewSSEReader(bytes.NewReader(b), 0)
	var out []timedEvent
	var last time.Time
	for {
		fr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A truncated or damaged capture must fail, not regenerate a
			// shorter golden file that passes.
			t.Fatalf("%s: frame %d: %v", path, len(out)+1, err)
		}
		ev, err := opencode.DecodeEvent(fr.Data)
		if err != nil {
			t.Fatalf("%s: frame %d does not decode: %v", path, len(out)+1, err)
		}
		if ev.Type == "sync" {
			continue
		}
		if at, ok := eventTime(ev.ID); ok {
			last = at
		}
		out = append(out, timedEvent{ev, last})
	}
	return out
}

// replay feeds a capture through a fresh codec with the capture's own clock,
// then lets every open turn settle.
func replay(t testing.TB, path string) []event.Event {
	c := New()
	var out []event.Event
	var last time.Time
	for _, te := range loadCapture(t, path) {
		if d, ok := c.Deadline(); ok && !d.After(te.at) {
			out = append(out, c.Tick(d)...)
		}
		out = append(out, c.Feed(te.ev, te.at)...)
		last = te.at
	}
	out = append(out, c.Tick(last.Add(time.Hour))...)
	return out
}

func renderEvents(evs []event.Event) []byte {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s %s\n", e.Session, e.Kind, e.Data)
	}
	return b.Bytes()
}

func TestGoldenCaptures(t *testing.T) {
	for _, path := range captures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".sse.txt")
		t.Run(name, func(t *testing.T) {
			got := renderEvents(replay(t, path))
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/reply -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("codec output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestCaptureInvariants checks, over every capture, what must hold whatever
// the golden files say.
func TestCaptureInvariants(t *testing.T) {
	for _, path := range captures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".sse.txt")
		t.Run(name, func(t *testing.T) {
			evs := replay(t, path)
			reasoning := map[string]string{}
			calls, results := map[string]int{}, map[string]int{}
			inTurn := map[string]bool{}
			for _, e := range evs {
				switch e.Kind {
				case event.Reasoning:
					var d event.DeltaData
					json.Unmarshal(e.Data, &d)
					reasoning[e.Session] += d.Text
				case event.ToolCall:
					var d event.ToolCallData
					json.Unmarshal(e.Data, &d)
					calls[d.CallID]++
					inTurn[e.Session] = true
				case event.ToolResult:
					var d event.ToolResultData
					json.Unmarshal(e.Data, &d)
					results[d.CallID]++
					if calls[d.CallID] == 0 {
						t.Errorf("tool_result for %s before its tool_call", d.CallID)
					}
				case event.Final:
					var d event.FinalData
					json.Unmarshal(e.Data, &d)
					if r := reasoning[e.Session]; r != "" && strings.Contains(d.Text, r) {
						t.Errorf("reasoning %q leaked into final %q", r, d.Text)
					}
					reasoning[e.Session] = ""
				case event.Error:
					var d event.ErrorData
					json.Unmarshal(e.Data, &d)
					if strings.Contains(d.Message, " at ") || strings.Contains(d.Message, "\n") || d.Code == "" {
						t.Errorf("error not clean: %+v", d)
					}
				case event.Delta:
					var d event.DeltaData
					json.Unmarshal(e.Data, &d)
					if r := reasoning[e.Session]; r != "" && strings.Contains(r, d.Text) && len(d.Text) > 8 {
						t.Errorf("delta %q repeats reasoning", d.Text)
					}
				}
			}
			for id, n := range calls {
				if n != 1 || results[id] != 1 {
					t.Errorf("call %s: %d tool_call, %d tool_result; want 1 and 1", id, n, results[id])
				}
			}
			// Prompts are never echoed as answer text.
			prompts := userPrompts(t, path)
			for _, e := range evs {
				if e.Kind != event.Delta {
					continue
				}
				var d event.DeltaData
				json.Unmarshal(e.Data, &d)
				for _, p := range prompts {
					if d.Text == p {
						t.Errorf("user prompt %q echoed as delta", p)
					}
				}
			}
		})
	}
}

// userPrompts lists the texts of user parts in a capture.
func userPrompts(t testing.TB, path string) []string {
	users := map[string]bool{}
	var out []string
	for _, te := range loadCapture(t, path) {
		switch te.ev.Type {
		case "message.updated":
			var p struct{ Info opencode.MessageInfo }
			json.Unmarshal(te.ev.Properties, &p)
			if p.Info.Role == "user" {
				users[p.Info.ID] = true
			}
		case "message.part.updated":
			var p struct{ Part opencode.Part }
			json.Unmarshal(te.ev.Properties, &p)
			if users[p.Part.MessageID] && p.Part.Text != "" {
				out = append(out, p.Part.Text)
			}
		}
	}
	return out
}

func TestEventTime(t *testing.T) {
	a, ok1 := eventTime("evt_200267114001DNikIxyIylmJ2N")
	b, ok2 := eventTime("evt_20026711b001OHrjNIuWw0yvhx")
	if !ok1 || !ok2 || b.Sub(a) != 7*time.Millisecond {
		t.Fatalf("ids 7 ms apart read as %v apart", b.Sub(a))
	}
	if _, ok := eventTime("nope"); ok {
		t.Error("bad id accepted")
	}
}
