package e2e

import (
	"syscall"
	"testing"
	"time"
)

// opencode killed between two turns, and a message sent at once, before
// the supervisor has noticed: the prompt finds the process gone and goes
// to its replacement; the turn ends final. (It used to end with "opencode
// refused the prompt".)
func TestACrashBetweenTurnsLosesNoTurn(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "c", "")
	first := d.send(ctx, "c", "hello", "")
	if e := last(d.turnOf(ctx, "c", first.Seq-1, first.Input)); e.Kind != "final" {
		t.Fatalf("the first turn ended %s", e.Kind)
	}
	a, err := d.c.Agent(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	oc := opencodeIn(a.Status.PID)
	if oc == 0 {
		t.Fatalf("no opencode process under %d", a.Status.PID)
	}
	syscall.Kill(oc, syscall.SIGKILL)
	next := d.send(ctx, "c", "hello after the crash", "")
	if e := last(d.turnOf(ctx, "c", next.Seq-1, next.Input)); e.Kind != "final" {
		t.Fatalf("the turn sent right after the crash ended %s: %s", e.Kind, e.Field("message"))
	}
	b, err := d.c.Agent(ctx, "c")
	if err != nil || b.Status.PID == a.Status.PID || b.Status.PID == 0 {
		t.Fatalf("the instance after the crash: %d, before %d (%v)", b.Status.PID, a.Status.PID, err)
	}
}
