package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// BenchmarkClusterFailover measures, on two daemons of a cluster (serve
// --cluster --lease 2s, shared agents' directories: newNodes), the
// owner of an agent killed with SIGKILL in the middle of a turn,
// FAILOVERS times (TAOSAGENT_FAILOVERS, default 5; the killed daemon is
// started again each time, and owns nothing then): from the kill, and
// from the agent's lease's expiry (read from the database right after
// the kill), to the first event of the agent on its new owner (the cut
// turn's interrupted error); and from the kill to the end of the next
// turn there (the new owner's opencode start included). The lease is the
// limit. Run with -benchtime 1x.
func BenchmarkClusterFailover(b *testing.B) {
	rounds, ctx, dsn, conn := failovers(b)
	ns := newNodes(b, []string{"TAOSAGENT_DB=" + dsn})
	ds := []*daemon{ns.start(""), ns.start("")}
	ds[0].agent(ctx, "a", "")
	var fromKill, fromExpiry, nextTurn []float64
	for i := range rounds {
		owner := 1
		if waitOwner(b, ctx, ds[0], "a", func(string) bool { return true }) == daemonID(b, ctx, ds[0]) {
			owner = 0
		}
		other := ds[1-owner]
		cut := other.send(ctx, "a", "endless", "")
		if err := other.c.Stream(ctx, "a", cut.Seq, func(e client.Event) bool { return e.Kind != "delta" && e.Kind != "reasoning" }); err != nil {
			b.Fatal(err)
		}
		ds[owner].kill()
		killed := time.Now()
		var expires time.Time
		if err := conn.QueryRow(ctx, `SELECT expires FROM leases WHERE agent = 'a'`).Scan(&expires); err != nil {
			b.Fatal(err)
		}
		var first time.Time
		err := other.c.Stream(ctx, "a", cut.Seq, func(e client.Event) bool {
			if e.Kind == "error" && e.Field("code") == "interrupted" {
				first = e.Time
				return false
			}
			return true
		})
		if err != nil {
			b.Fatal(err)
		}
		fromKill = append(fromKill, first.Sub(killed).Seconds())
		fromExpiry = append(fromExpiry, first.Sub(expires).Seconds())
		next := other.send(ctx, "a", fmt.Sprint("say: after failover ", i), "")
		if e := last(other.turnOf(ctx, "a", next.Seq-1, next.Input)); e.Kind != "final" {
			b.Fatalf("the turn after failover %d ended %s %q", i, e.Kind, e.Field("message"))
		}
		nextTurn = append(nextTurn, time.Since(killed).Seconds())
		ds[owner] = ns.start(ds[owner].home)
	}
	reportFailovers(b, "the agent's new owner", fromKill, fromExpiry, nextTurn)
}
