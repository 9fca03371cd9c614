package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkOpencodeRestartFloor measures opencode's own part of a crash's
// next turn, with no taosagent, no sandbox and no confinement: a bare
// `opencode serve` with the scripted model is killed with SIGKILL and
// started again in the same home, ROUNDS times (TAOSAGENT_KILLS, default
// 10), and each time the same session gets a prompt at once. It reports
// the medians of the start (exec to "listening"), of the first prompt on
// the fresh process (sent to its answer), of their sum (the floor under
// BenchmarkNextTurnAfterKill's next-turn time), and of a second prompt on
// the same process (the baseline: a warm turn). Run with -benchtime 1x.
func BenchmarkOpencodeRestartFloor(b *testing.B) {
	rounds := 10
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_KILLS")); err == nil && n > 0 {
		rounds = n
	}
	model := httptest.NewServer(&scriptedmodel.Server{})
	b.Cleanup(model.Close)
	cfg := opencode.Config{Model: "m", Provider: opencode.Provider{ID: "taos", BaseURL: model.URL + "/v1", APIKey: "bench",
		Models: []opencode.Model{{ID: "m", ToolCall: true}}}}
	raw, err := cfg.ConfigJSON()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	home, work := filepath.Join(dir, "home"), filepath.Join(dir, "work")
	os.MkdirAll(filepath.Join(home, ".config", "opencode"), 0o700)
	os.MkdirAll(work, 0o700)
	if err := os.WriteFile(filepath.Join(home, ".config", "opencode", "opencode.json"), raw, 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := ctxT(b, time.Duration(rounds)*time.Minute)
	var session string
	var start, first, floor, warm []float64
	for r := range rounds + 1 { // the first round pays opencode's first-run work
		t0 := time.Now()
		c, stop := startBareIn(b, home, work)
		up := time.Since(t0)
		if session == "" {
			s, err := c.CreateSession(ctx, "floor")
			if err != nil {
				b.Fatal(err)
			}
			session = s.ID
		}
		p1 := promptAndWait(ctx, b, c, session, fmt.Sprint("say: first ", r))
		p2 := promptAndWait(ctx, b, c, session, fmt.Sprint("say: second ", r))
		stop()
		if r == 0 {
			continue
		}
		start = append(start, up.Seconds())
		first = append(first, p1.Seconds())
		floor = append(floor, (up + p1).Seconds())
		warm = append(warm, p2.Seconds())
	}
	b.ReportMetric(median(start), "start-s")
	b.ReportMetric(median(first), "first-prompt-s")
	b.ReportMetric(median(floor), "floor-s")
	b.ReportMetric(slices.Min(floor), "floor-min-s")
	b.ReportMetric(slices.Max(floor), "floor-max-s")
	b.ReportMetric(median(warm), "warm-prompt-s")
	b.ReportMetric(0, "ns/op")
	b.Logf("start (s): %v", round(start))
	b.Logf("first prompt (s): %v", round(first))
}

// startBareIn starts `opencode serve` unconfined in home (its HOME and XDG
// directories) and work, with the switches the supervisor sets, and
// returns a client once it listens and a function that kills it.
func startBareIn(b *testing.B, home, work string) (*opencode.Client, func()) {
	cmd := exec.Command(testenv.Opencode(b), "serve", "--hostname", "127.0.0.1", "--port", "0")
	cmd.Dir = work
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "OPENCODE_SERVER_PASSWORD=bench",
		"XDG_CONFIG_HOME=" + home + "/.config", "XDG_DATA_HOME=" + home + "/.local/share",
		"XDG_CACHE_HOME=" + home + "/.cache", "XDG_STATE_HOME=" + home + "/.local/state",
		"OPENCODE_DISABLE_MODELS_FETCH=1", "OPENCODE_DISABLE_AUTOUPDATE=1", "OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1", "OPENCODE_DISABLE_CLAUDE_CODE=1", "npm_config_registry=http://127.0.0.1:9/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
			go io.Copy(io.Discard, out)
			return &opencode.Client{BaseURL: strings.TrimSpace(url), Password: "bench", Directory: work, HTTP: &http.Client{}}, stop
		}
	}
	stop()
	b.Fatal("bare opencode never listened")
	return nil, nil
}

// promptAndWait sends text to session through opencode's synchronous
// message route, which answers when the turn is over, and returns the
// time it took.
func promptAndWait(ctx context.Context, b *testing.B, c *opencode.Client, session, text string) time.Duration {
	body, _ := json.Marshal(map[string]any{"parts": []any{map[string]any{"type": "text", "text": text}},
		"model": map[string]string{"providerID": "taos", "modelID": "m"}})
	req, _ := http.NewRequestWithContext(ctx, "POST", c.BaseURL+"/session/"+session+"/message?directory="+c.Directory, bytes.NewReader(body))
	req.SetBasicAuth("opencode", c.Password)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(reply, []byte(strings.TrimPrefix(text, "say: "))) {
		b.Fatalf("prompt %q: %d %.300s", text, resp.StatusCode, reply)
	}
	return time.Since(t0)
}
