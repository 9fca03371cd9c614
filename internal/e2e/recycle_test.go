package e2e

import (
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/client"
)

// An instance that holds more memory than its agent's recycle_mb is
// recycled at the next turn boundary, never during a turn: here a
// recycle_mb below what an idle opencode holds, so that every turn ends on
// an instance that is over it. Both queued turns end final, the second on
// a new process, and an instance event between them says why.
func TestAnInstanceOverItsRecycleMBIsRecycledBetweenTurns(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "big", Model: "demo/scripted-demo", Limits: &agent.Limits{RecycleMB: 16}}); err != nil {
		t.Fatal(err)
	}
	first, second := d.send(ctx, "big", "one", ""), d.send(ctx, "big", "two", "")
	one := d.turnOf(ctx, "big", first.Seq-1, first.Input)
	two := d.turnOf(ctx, "big", second.Seq-1, second.Input)
	if last(one).Kind != "final" || last(two).Kind != "final" {
		t.Fatalf("turns ended %s and %s", last(one).Kind, last(two).Kind)
	}
	evs, err := d.c.Events(ctx, "big", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ready []int64
	var recycled []client.Event
	for _, e := range evs {
		switch {
		case e.Kind == "instance" && e.Field("state") == "ready":
			ready = append(ready, e.Seq)
		case e.Kind == "instance" && e.Field("state") == "recycled":
			recycled = append(recycled, e)
		case e.Kind == "instance" && e.Turn != "" && e.Field("state") == "stopped":
			t.Errorf("the instance stopped during turn %s", e.Turn)
		}
	}
	if len(recycled) == 0 {
		t.Fatal("no recycled instance event")
	}
	r := recycled[0]
	if r.Seq < last(one).Seq || r.Seq > two[0].Seq || r.Turn != "" {
		t.Errorf("recycled at seq %d (turn %q): want between the first turn's end (%d) and the second's start (%d)", r.Seq, r.Turn, last(one).Seq, two[0].Seq)
	}
	if msg := r.Field("message"); msg == "" {
		t.Error("the recycled event does not say why")
	} else {
		t.Log(msg)
	}
	if len(ready) < 2 || ready[1] < r.Seq {
		t.Errorf("ready events at %v: want a new process after the recycle at %d", ready, r.Seq)
	}
}
