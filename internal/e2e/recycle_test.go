package e2e

import (
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/client"
)

// An instance that holds more memory than its agent's recycle_mb is
// recycled at a turn boundary, never during a turn: here a recycle_mb
// below what an idle opencode holds, so that every turn ends on an
// instance that is over it. An instance event between the turns says why,
// and the next turn runs on a new process.
func TestAnInstanceOverItsRecycleMBIsRecycledBetweenTurns(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "big", Model: "demo/scripted-demo", Limits: &agent.Limits{RecycleMB: 16}}); err != nil {
		t.Fatal(err)
	}
	first := d.send(ctx, "big", "one", "")
	one := d.turnOf(ctx, "big", first.Seq-1, first.Input)
	var r client.Event
	waitFor(t, ctx, func() bool {
		evs, _ := d.c.Events(ctx, "big", last(one).Seq, 100, "instance")
		for _, e := range evs {
			if e.Field("state") == "recycled" {
				r = e
				return true
			}
		}
		return false
	})
	second := d.send(ctx, "big", "two", "")
	two := d.turnOf(ctx, "big", second.Seq-1, second.Input)
	if last(one).Kind != "final" || last(two).Kind != "final" {
		t.Fatalf("turns ended %s and %s", last(one).Kind, last(two).Kind)
	}
	if r.Turn != "" {
		t.Errorf("recycled during turn %s", r.Turn)
	}
	if msg := r.Field("message"); msg == "" {
		t.Error("the recycled event does not say why")
	} else {
		t.Log(msg)
	}
	evs, err := d.c.Events(ctx, "big", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range evs {
		if e.Kind == "instance" && e.Field("state") == "ready" {
			pids = append(pids, e.Field("pid"))
		}
		if e.Kind == "instance" && e.Turn != "" && e.Field("state") == "stopped" {
			t.Errorf("the instance stopped during turn %s", e.Turn)
		}
	}
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Errorf("processes that served %v: want the second turn on a new one", pids)
	}
}
