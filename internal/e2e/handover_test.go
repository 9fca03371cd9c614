package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// A planned restart (SIGHUP, as `systemctl reload taosagent` and
// `taosagent install` send it) in the middle of a streaming turn: the turn
// goes on and ends final with the same opencode process, a client
// following the stream sees every event once (resuming by cursor across
// the hand-over), the final text is the deltas' text, an input sent during
// the hand-over runs after it on the same process, and no request to the
// API is refused meanwhile.
func TestAPlannedRestartKeepsTheTurnAndTheInstance(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	warm := d.send(ctx, "host", "hello", "")
	warmEnd := last(d.turnOf(ctx, "host", warm.Seq-1, warm.Input))
	if warmEnd.Kind != "final" {
		t.Fatalf("the first turn ended %s", warmEnd.Kind)
	}
	host, err := d.c.Agent(ctx, "host")
	if err != nil || host.Status.PID == 0 {
		t.Fatalf("the host's instance: %+v %v", host.Status, err)
	}

	var mu sync.Mutex
	var seen []client.Event
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	go d.c.Stream(sctx, "host", warm.Seq, func(e client.Event) bool {
		mu.Lock()
		seen = append(seen, e)
		mu.Unlock()
		return true
	})
	slow := d.send(ctx, "host", "slow please", "")
	waitFor(t, ctx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range seen {
			if e.Kind == "delta" {
				n++
			}
		}
		return n >= 3
	})

	// Requests keep coming during the hand-over: none may be refused.
	var asked, refused atomic.Int64
	hctx, stopAsking := context.WithCancel(ctx)
	var asking sync.WaitGroup
	asking.Add(1)
	go func() {
		defer asking.Done()
		for hctx.Err() == nil {
			c, cancel := context.WithTimeout(hctx, 30*time.Second)
			_, err := d.c.Health(c)
			cancel()
			if hctx.Err() != nil {
				return
			}
			asked.Add(1)
			if err != nil {
				refused.Add(1)
				t.Logf("during the hand-over: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	after := d.send(ctx, "host", "hello after the hand-over", "")

	one := d.turnOf(ctx, "host", slow.Seq-1, slow.Input)
	two := d.turnOf(ctx, "host", after.Seq-1, after.Input)
	if last(one).Kind != "final" || last(two).Kind != "final" {
		t.Fatalf("turns ended %s (%s) and %s", last(one).Kind, last(one).Field("message"), last(two).Kind)
	}
	waitFor(t, ctx, func() bool { return strings.Contains(d.log.String(), "state=adopted") })
	stopAsking()
	asking.Wait()
	if asked.Load() == 0 || refused.Load() > 0 {
		t.Errorf("%d of %d requests failed during the hand-over", refused.Load(), asked.Load())
	}
	t.Logf("%d requests during the hand-over, none refused", asked.Load())
	if !strings.Contains(d.log.String(), "handing over") {
		t.Error("the daemon's log does not tell of the hand-over")
	}
	if testing.Verbose() {
		t.Logf("daemon log:\n%s", d.log)
	}

	// The stream: every event once, in order, none missing.
	waitFor(t, ctx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].Seq >= last(two).Seq
	})
	mu.Lock()
	got := append([]client.Event(nil), seen...)
	mu.Unlock()
	for k, e := range got {
		if want := warm.Seq + 1 + int64(k); e.Seq != want {
			t.Fatalf("the stream's event %d has seq %d, want %d: an event missed or seen twice", k, e.Seq, want)
		}
	}
	var text strings.Builder
	for _, e := range one {
		if e.Kind == "delta" {
			text.WriteString(e.Field("text"))
		}
	}
	if f := last(one).Field("text"); f == "" || f != text.String() {
		t.Errorf("final text %q, deltas %q", f, text.String())
	}
	var states []string
	for _, e := range got {
		if e.Kind == "instance" && e.Seq > warmEnd.Seq {
			states = append(states, fmt.Sprint(e.Field("state"), " ", e.Field("pid")))
		}
	}
	if want := fmt.Sprint("adopted ", host.Status.PID); len(states) != 1 || states[0] != want {
		t.Errorf("the host's instance across the hand-over: %v, want only %q", states, want)
	}
}

// SIGHUPs in a burst (a reload run twice, a script's loop) each reach a
// program that takes them as a hand-over or ignores them: none lands in
// the new program before it listens for it and ends it (SIGHUP's default
// action), which would leave its instances with no daemon.
func TestABurstOfSIGHUPsLeavesTheDaemonServing(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 2*time.Minute)
	// One every millisecond, until 200 ms after the first hand-over's
	// exec: across the new program's start.
	var handed time.Time
	for handed.IsZero() || time.Since(handed) < 200*time.Millisecond {
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			<-d.done
			t.Fatalf("the daemon is gone during the burst (%v): %v", d.cmd.ProcessState, err)
		}
		select {
		case <-d.done:
			t.Fatalf("the daemon ended during a burst of SIGHUPs (%v):\n%s", d.cmd.ProcessState, d.log.String())
		case <-ctx.Done():
			t.Fatal("no hand-over")
		case <-time.After(time.Millisecond):
		}
		if handed.IsZero() && strings.Contains(d.log.String(), "handing over now") {
			handed = time.Now()
		}
	}
	waitFor(t, ctx, func() bool { _, err := d.c.Health(ctx); return err == nil })
	select {
	case <-d.done:
		t.Fatalf("the daemon ended after a burst of SIGHUPs (%v):\n%s", d.cmd.ProcessState, d.log.String())
	default:
	}
	// A last hand-over may still be under way: a request sent on a
	// connection kept from before it could meet that connection's close.
	// This one opens its own (a new one waits in the kept socket's backlog).
	fresh := &client.Client{Base: d.c.Base, Token: d.c.Token, HTTP: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	acc, err := fresh.Send(ctx, "host", client.Message{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if evs := d.turnOf(ctx, "host", 0, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("a turn after the burst: %v", kinds(evs))
	}
}
