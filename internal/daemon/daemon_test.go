package daemon

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/taosagent/taosagent/internal/opencode"
)

// Run returns when its context ends, with every goroutine it started
// joined: the listeners, an event stream held open by a client, the
// workers, the store.
func TestRunJoinsEverythingItStarts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	home := t.TempDir()
	pinned := func(context.Context, string) (string, string, error) { return "/bin/false", opencode.Version, nil }
	out, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := Run(ctx, Config{Home: home, Listen: "127.0.0.1:0", Version: "test", Stdout: w, Opencode: pinned, Release: pinned,
			Retention: time.Hour, RawRetention: time.Hour, ModelsSync: time.Hour})
		w.Close()
		done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var base string
	select {
	case base = <-addr:
	case err := <-done:
		t.Fatalf("Run ended before it listened: %v", err)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	// An event stream a client keeps open: the stop must end it.
	token, _ := os.ReadFile(filepath.Join(home, "token"))
	req, _ := http.NewRequest("GET", base+"/v1/agents/host/events?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", stream, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// At once, not eventually: nothing of the daemon's runs any more.
	buf := make([]byte, 1<<22)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "github.com/taosagent/taosagent/internal/") && !strings.Contains(g, "daemon_test.go") {
			t.Errorf("still running after Run returned:\n%s", g)
		}
	}
	io.Copy(io.Discard, stream.Body)
	stream.Body.Close()
	http.DefaultClient.CloseIdleConnections()
}

// A stop that came as the earlier program handed over (Exec's stopping)
// stops the new one once it has taken over the instances: Run returns by
// itself, with nothing left of the record it keeps while it runs.
func TestAStopAtTheHandOverStopsTheNextProgram(t *testing.T) {
	t.Setenv(stopEnv, "1")
	home := t.TempDir()
	pinned := func(context.Context, string) (string, string, error) { return "/bin/false", opencode.Version, nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Run(ctx, Config{Home: home, Listen: "127.0.0.1:0", Version: "test", Stdout: io.Discard, Opencode: pinned, Release: pinned,
		Retention: time.Hour, RawRetention: time.Hour, ModelsSync: time.Hour})
	if err != nil || ctx.Err() != nil {
		t.Fatalf("Run: %v, its context: %v (want it to stop by itself)", err, ctx.Err())
	}
	if _, ok := os.LookupEnv(stopEnv); ok {
		t.Errorf("%s is left for what the daemon starts", stopEnv)
	}
}
