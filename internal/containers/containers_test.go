package containers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/containers"
	"github.com/taosagent/taosagent/internal/testenv"
)

func TestDemuxJoinsFramesAndPassesARawStream(t *testing.T) {
	framed := []byte("\x01\x00\x00\x00\x00\x00\x00\x06hello\n\x02\x00\x00\x00\x00\x00\x00\x04err\n")
	if got := string(containers.Demux(framed)); got != "hello\nerr\n" {
		t.Fatalf("demux: %q", got)
	}
	raw := []byte("a terminal's output\n")
	if got := string(containers.Demux(raw)); got != string(raw) {
		t.Fatalf("raw: %q", got)
	}
	cut := framed[:12] // a frame cut by the read's bound
	if got := string(containers.Demux(cut)); got != "hell" {
		t.Fatalf("cut: %q", got)
	}
}

// What the managed host asks of a container runtime, against a real
// Podman serving the Docker Engine API.
func TestTheEngineAPIOfARealPodman(t *testing.T) {
	if testing.Short() {
		t.Skip("starts podman")
	}
	t.Parallel()
	p := testenv.NewPodman(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := containers.Client{Socket: p.Socket}

	web := p.Container(t, "web", []string{"--label", "taos.app=web", "--health-cmd", "test -e /tmp/ok", "--health-interval", "0", "--health-retries", "1"},
		"sh", "-c", "echo started; echo to-stderr >&2; touch /tmp/ok; exec sleep 1000")
	p.Container(t, "web-2", nil, "sleep", "1000") // a name that contains "web"
	p.Container(t, "loop", []string{"--restart", "on-failure:3"}, "sh", "-c", "echo boom; exit 3")
	p.Container(t, "done", nil, "sh", "-c", "exit 4")
	p.Run(t, "wait", "done")

	// A name matches exactly; a label matches what it marks.
	if ids, err := c.Find(ctx, containers.Selector{Name: "web"}); err != nil || !slices.Equal(ids, []string{web}) {
		t.Fatalf("find by name: %v %v", ids, err)
	}
	if ids, err := c.Find(ctx, containers.Selector{Name: web[:12]}); err != nil || len(ids) != 0 {
		t.Fatalf("an id's prefix matched as a name: %v %v", ids, err)
	}
	if ids, err := c.Find(ctx, containers.Selector{Label: "taos.app=web"}); err != nil || !slices.Equal(ids, []string{web}) {
		t.Fatalf("find by label: %v %v", ids, err)
	}

	// Healthy once its check passed; unhealthy when it fails.
	p.Run(t, "healthcheck", "run", "web")
	now := time.Now()
	st, d, err := c.Look(ctx, web, p.ID, now)
	if err != nil || st.State != "running" || st.Health != "healthy" || len(st.Problems) != 0 || st.Image != p.ID || len(d.Raw) == 0 {
		t.Fatalf("web: %+v %v", st, err)
	}
	if st, _, _ := c.Look(ctx, web, "sha256:"+strings.Repeat("0", 64), now); len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "not the pinned") {
		t.Fatalf("another pin: %+v", st)
	}
	p.Run(t, "exec", "web", "rm", "/tmp/ok")
	p.Try("healthcheck", "run", "web")
	if st, _, _ := c.Look(ctx, web, "", time.Now()); st.Health != "unhealthy" || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "unhealthy") {
		t.Fatalf("unhealthy: %+v", st)
	}

	// The restart loop and the exited container.
	loop, _ := c.Find(ctx, containers.Selector{Name: "loop"})
	deadline := time.Now().Add(time.Minute)
	for {
		st, _, err := c.Look(ctx, loop[0], "", time.Now())
		if err == nil && len(st.Problems) == 1 && strings.Contains(st.Problems[0], "restarting in a loop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond) // podman restarts it by itself; nothing to wait on
	}
	done, _ := c.Find(ctx, containers.Selector{Name: "done"})
	if st, _, _ := c.Look(ctx, done[0], "", time.Now()); st.State != "exited" || st.ExitCode != 4 || len(st.Problems) != 1 || st.Problems[0] != "not running: exited with code 4" {
		t.Fatalf("done: %+v", st)
	}

	// Logs: both streams, in order, bounded by the tail.
	lines, err := c.Logs(ctx, web, 10, time.Time{})
	if err != nil || len(lines) < 2 || !strings.HasSuffix(lines[0], " started") || !strings.HasSuffix(lines[1], " to-stderr") {
		t.Fatalf("logs: %q %v", lines, err)
	}
	if lines, _ := c.Logs(ctx, web, 1, time.Time{}); len(lines) != 1 {
		t.Fatalf("tail 1: %q", lines)
	}

	// Restart, stop, start, kill, remove.
	if err := c.Restart(ctx, web, 0); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Inspect(ctx, web)
	if !after.State.StartedAt.After(d.State.StartedAt) || !after.State.Running {
		t.Fatalf("restart: started %v, then %v", d.State.StartedAt, after.State.StartedAt)
	}
	if err := c.Remove(ctx, web); err == nil {
		t.Fatal("a running container was removed")
	}
	if err := c.Kill(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, web, time.Second); err != nil { // already stopped: no error
		t.Fatal(err)
	}
	if err := c.Start(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, web); err != nil { // already running: no error
		t.Fatal(err)
	}
	if err := c.Stop(ctx, web, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, web); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, web); !errors.Is(err, containers.ErrNotFound) {
		t.Fatalf("removed, inspected: %v", err)
	}

	// A runtime that does not answer says so.
	bad := containers.Client{Socket: p.Dir + "/none.sock"}
	if _, err := bad.Find(ctx, containers.Selector{Name: "web"}); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("no runtime: %v", err)
	}
}
