package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/opencode"
)

// BenchmarkTimeToFirstOutput measures, on one daemon and one confined
// opencode instance with the scripted model, the time from sending a
// message to its first streamed output (reasoning or answer text):
//
//   - through taosagent: POST /v1/agents/host/messages, then the agent's
//     SSE stream (API → inbox → runner → opencode → codec → log → SSE);
//   - straight to opencode: POST /session/{id}/prompt_async on a session of
//     its own of the same instance, then opencode's own event stream.
//
// The two alternate, and it reports the medians and their ratio. Run with
// -benchtime 1x.
func BenchmarkTimeToFirstOutput(b *testing.B) {
	for range b.N {
		d := start(b, "")
		ctx := ctxT(b, 5*time.Minute)
		acc, err := d.c.Send(ctx, "host", client.Message{Text: "hello"})
		if err != nil {
			b.Fatal(err)
		}
		d.turnOf(ctx, "host", 0, acc.Input) // warm: instance up, session pinned

		port, password := instanceSecrets(b, d.home, "host")
		oc := &opencode.Client{BaseURL: "http://127.0.0.1:" + port, Password: password,
			Directory: filepath.Join(d.home, "agents", "host", "work"), HTTP: &http.Client{}}
		direct, err := oc.CreateSession(ctx, "bench direct")
		if err != nil {
			b.Fatal(err)
		}
		first := make(chan struct{}, 1)
		connected := make(chan struct{})
		want := []byte(`"sessionID":"` + direct.ID + `"`)
		stream := &opencode.Stream{Client: oc, OnConnect: func(n int) {
			if n == 1 {
				close(connected)
			}
		}}
		sub := stream.Start(ctx, func(ev opencode.Event) {
			if ev.Type == "message.part.delta" && bytes.Contains(ev.Properties, want) {
				select {
				case first <- struct{}{}:
				default:
				}
			}
		})
		defer sub.Close()
		<-connected

		const rounds = 15
		var via, straight []float64
		for r := 0; r < rounds; r++ {
			// Through taosagent, on a stream already open.
			evs, _ := d.c.Events(ctx, "host", 0, 10000)
			after := evs[len(evs)-1].Seq
			sctx, cancel := context.WithCancel(ctx)
			req, _ := http.NewRequestWithContext(sctx, "GET", d.addr+"/v1/agents/host/events/stream?after="+strconv.FormatInt(after, 10), nil)
			req.Header.Set("Authorization", "Bearer "+d.c.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, ": taosagent events") {
				b.Fatalf("stream opening: %q %v", line, err)
			}
			t0 := time.Now()
			acc, err := d.c.Send(ctx, "host", client.Message{Text: "hello"})
			if err != nil {
				b.Fatal(err)
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					b.Fatal("no output through taosagent: ", err)
				}
				if line == "event: reasoning\n" || line == "event: delta\n" {
					via = append(via, float64(time.Since(t0).Microseconds())/1000)
					break
				}
			}
			resp.Body.Close()
			cancel()
			d.turnOf(ctx, "host", after, acc.Input)

			// Straight to opencode.
			t0 = time.Now()
			if err := oc.PromptAsync(ctx, direct.ID, opencode.Prompt{Text: "hello"}); err != nil {
				b.Fatal(err)
			}
			select {
			case <-first:
				straight = append(straight, float64(time.Since(t0).Microseconds())/1000)
			case <-ctx.Done():
				b.Fatal("no output straight from opencode")
			}
			waitIdle(b, ctx, oc, direct.ID)
		}
		mv, ms := medianOf(via), medianOf(straight)
		b.ReportMetric(mv, "taosagent-ms")
		b.ReportMetric(ms, "opencode-ms")
		b.ReportMetric(mv/ms, "ratio")
		b.ReportMetric(0, "ns/op")
	}
}

// waitIdle waits until opencode reports session id idle.
func waitIdle(b *testing.B, ctx context.Context, oc *opencode.Client, id string) {
	for {
		st, err := oc.SessionStatus(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if s, ok := st[id]; !ok || s.Type == "idle" {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatal("the direct session never went idle")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func medianOf(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}
