package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkTimeToFirstOutput measures, on one daemon and one confined
// opencode instance with the scripted model, the time from sending a
// message to its first streamed output (reasoning or answer text):
//
//   - through taosagent: POST /v1/agents/host/messages, then the agent's
//     SSE stream (API → inbox → runner → opencode → codec → log → SSE);
//   - straight to opencode: POST /session/{id}/prompt_async to a bare
//     `opencode serve` of the same binary with a copy of the agent's
//     config (so the same scripted model), then opencode's own event
//     stream.
//
// The two alternate, and it reports the medians and their ratio. Run with
// -benchtime 1x; TTFO_UNCONFINED=1 runs the daemon --unconfined, to tell
// the sandbox's share from the rest of the path.
func BenchmarkTimeToFirstOutput(b *testing.B) {
	for range b.N {
		var extra []string
		if os.Getenv("TTFO_UNCONFINED") != "" {
			extra = append(extra, "--unconfined")
		}
		d := start(b, "", extra...)
		ctx := ctxT(b, 5*time.Minute)
		acc, err := d.c.Send(ctx, "host", client.Message{Text: "hello"})
		if err != nil {
			b.Fatal(err)
		}
		d.turnOf(ctx, "host", 0, acc.Input) // warm: instance up, session pinned

		oc := bareOpencode(b, filepath.Join(d.home, "agents", "host", "home", ".config", "opencode", "opencode.json"))
		direct, err := oc.CreateSession(ctx, "bench direct")
		if err != nil {
			b.Fatal(err)
		}
		first := make(chan struct{}, 64)
		connected := make(chan struct{})
		want := []byte(`"sessionID":"` + direct.ID + `"`)
		stream := &opencode.Stream{Client: oc, OnConnect: func(n int) {
			if n == 1 {
				close(connected)
			}
		}}
		seen := map[string]bool{} // assistant messages whose first delta was counted
		sub := stream.Start(ctx, func(ev opencode.Event) {
			if ev.Type != "message.part.delta" || !bytes.Contains(ev.Properties, want) {
				return
			}
			var p struct{ MessageID string }
			json.Unmarshal(ev.Properties, &p)
			if !seen[p.MessageID] {
				seen[p.MessageID] = true
				first <- struct{}{}
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

// bareOpencode starts `opencode serve` on its own, unconfined, with a copy
// of config, and returns a client of it.
func bareOpencode(b *testing.B, config string) *opencode.Client {
	cfg, err := os.ReadFile(config)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(home, ".config", "opencode"), 0o700)
	os.MkdirAll(filepath.Join(dir, "work"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".config", "opencode", "opencode.json"), cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(testenv.Opencode(b), "serve", "--hostname", "127.0.0.1", "--port", "0")
	cmd.Dir = filepath.Join(dir, "work")
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "OPENCODE_SERVER_PASSWORD=bench",
		"XDG_CONFIG_HOME=" + home + "/.config", "XDG_DATA_HOME=" + home + "/.local/share",
		"XDG_CACHE_HOME=" + home + "/.cache", "XDG_STATE_HOME=" + home + "/.local/state",
		"OPENCODE_DISABLE_MODELS_FETCH=1", "OPENCODE_DISABLE_AUTOUPDATE=1", "npm_config_registry=http://127.0.0.1:9/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
			go io.Copy(io.Discard, out)
			return &opencode.Client{BaseURL: strings.TrimSpace(url), Password: "bench", Directory: filepath.Join(dir, "work"), HTTP: &http.Client{}}
		}
	}
	b.Fatal("bare opencode never listened")
	return nil
}
