package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// Over the running-instance cap, agents take turns with the slots: each
// agent sends its next message as soon as its previous turn ends, and every
// turn ends final. The instance stopped to make room is often the one whose
// turn just ended; its agent's next message must wait for a slot, not be
// handed to the stopping instance (half the turns failed so).
func TestTurnsOverTheCapAllEndFinal(t *testing.T) {
	t.Parallel()
	const agents, turns, capN = 3, 2, 2
	d := start(t, "", "--max-running", fmt.Sprint(capN))
	ctx := ctxT(t, 8*time.Minute)
	var names []string
	for i := range agents {
		names = append(names, fmt.Sprint("cap", i))
		d.agent(ctx, names[i], "")
	}
	if bad := d.turnsEach(ctx, names, turns); len(bad) > 0 {
		t.Fatalf("%d of %d turns did not end final:\n%v", len(bad), agents*turns, bad)
	}
}

// turnsEach has every agent of names run turns turns, all agents at once,
// each sending its next message when its previous turn has ended; it
// returns what went wrong with the turns that did not end final.
func (d *daemon) turnsEach(ctx context.Context, names []string, turns int) (bad []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range turns {
				acc, err := d.c.Send(ctx, name, client.Message{Text: fmt.Sprintf("hello %d", j)})
				msg := ""
				if err != nil {
					msg = fmt.Sprintf("%s turn %d: send: %v", name, j, err)
				} else if e := last(d.turnOf(ctx, name, acc.Seq-1, acc.Input)); e.Kind != "final" {
					msg = fmt.Sprintf("%s turn %d: %s %s: %s", name, j, e.Kind, e.Field("code"), e.Field("message"))
				}
				if msg != "" {
					mu.Lock()
					bad = append(bad, msg)
					mu.Unlock()
				}
				if d.onTurnEnd != nil {
					d.onTurnEnd()
				}
			}
		}()
	}
	wg.Wait()
	return bad
}

// Over the cap, a slot serves an agent's run of turns: an agent with input
// queued keeps its instance for its quantum while others wait their turn,
// rather than lose it at each turn's end to a waiter (which cost one
// opencode start a turn). Each agent here starts its opencode once.
func TestOverTheCapASlotServesARunOfTurns(t *testing.T) {
	t.Parallel()
	const agents, turns, capN = 3, 2, 2
	d := start(t, "", "--max-running", fmt.Sprint(capN), "--quantum", "10m")
	ctx := ctxT(t, 8*time.Minute)
	var names []string
	for i := range agents {
		names = append(names, fmt.Sprint("run", i))
		d.agent(ctx, names[i], "")
	}
	bad, starts := d.queuedTurns(ctx, names, turns)
	if len(bad) > 0 {
		t.Fatalf("%d of %d turns did not end final:\n%v", len(bad), agents*turns, bad)
	}
	for _, name := range names {
		if starts[name] != 1 {
			t.Errorf("%s: its opencode started %d times for %d turns, want once", name, starts[name], turns)
		}
		// One was stopped to make room: on purpose, not a crash.
		evs, err := d.c.Events(ctx, name, 0, 1000, "instance")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Field("state") == "crashed" {
				t.Errorf("%s: an instance stopped for the cap reported as crashed: %s", name, e.Data)
			}
		}
	}
}

// queuedTurns sends turns messages to each agent of names at once, waits
// for every turn, and returns what went wrong with those that did not end
// final and how many times each agent's opencode started (its "ready"
// instance events).
func (d *daemon) queuedTurns(ctx context.Context, names []string, turns int) (bad []string, starts map[string]int) {
	d.t.Helper()
	sent := map[string][]client.Accepted{}
	for _, name := range names {
		for j := range turns {
			sent[name] = append(sent[name], d.send(ctx, name, fmt.Sprintf("hello %d", j), ""))
		}
	}
	starts = map[string]int{}
	for _, name := range names {
		for j, acc := range sent[name] {
			if e := last(d.turnOf(ctx, name, acc.Seq-1, acc.Input)); e.Kind != "final" {
				bad = append(bad, fmt.Sprintf("%s turn %d: %s %s: %s", name, j, e.Kind, e.Field("code"), e.Field("message")))
			}
		}
		evs, err := d.c.Events(ctx, name, 0, 10000)
		if err != nil {
			d.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == "instance" && e.Field("state") == "ready" {
				starts[name]++
			}
		}
	}
	return bad, starts
}
