package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkCrossDaemonStream measures, on two daemons of a cluster
// (serve --cluster on one PostgreSQL), how long an agent's events take
// from their making on the daemon that owns the agent to an SSE client:
// one streaming from that same daemon (the limit: a commit and a local
// wake-up) and one from the other daemon (a commit, PostgreSQL's
// NOTIFY, and a read by cursor there), both following one turn of
// STREAM_EVENTS deltas (TAOSAGENT_STREAM_EVENTS, default 400). It prints
// each side's p50 and p99 and their ratios. Run with -benchtime 1x.
func BenchmarkCrossDaemonStream(b *testing.B) {
	want := 400
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_STREAM_EVENTS")); err == nil && n > 0 {
		want = n
	}
	pg := testenv.NewPostgres(b)
	env := []string{"TAOSAGENT_DB=" + pg.Database(b)}
	ctx := ctxT(b, 5*time.Minute)
	ds := []*daemon{startIn(b, newHome(b), env, "--cluster", "--lease", "2s"), startIn(b, newHome(b), env, "--cluster", "--lease", "2s")}
	ds[0].agent(ctx, "a", "")
	owner, other := ds[0], ds[1]
	if waitOwner(b, ctx, ds[0], "a", func(string) bool { return true }) != daemonID(b, ctx, ds[0]) {
		owner, other = ds[1], ds[0]
	}
	warm := owner.send(ctx, "a", "say: warm", "")
	last(owner.turnOf(ctx, "a", warm.Seq-1, warm.Input))
	b.ResetTimer()
	turn := owner.send(ctx, "a", "endless", "")
	var wg sync.WaitGroup
	lat := make([][]float64, 2)
	for i, d := range []*daemon{owner, other} {
		wg.Go(func() {
			n := 0
			err := d.c.Stream(ctx, "a", turn.Seq, func(e client.Event) bool {
				if e.Kind == "delta" {
					lat[i] = append(lat[i], time.Since(e.Time).Seconds()*1000)
					n++
				}
				return n < want
			})
			if err != nil && ctx.Err() == nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if _, err := owner.c.Abort(context.Background(), "a"); err != nil {
		b.Log(err)
	}
	pct := func(xs []float64, p float64) float64 {
		s := slices.Sorted(slices.Values(xs))
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	same50, same99 := pct(lat[0], 0.5), pct(lat[0], 0.99)
	cross50, cross99 := pct(lat[1], 0.5), pct(lat[1], 0.99)
	b.ReportMetric(same50, "same-p50-ms")
	b.ReportMetric(same99, "same-p99-ms")
	b.ReportMetric(cross50, "cross-p50-ms")
	b.ReportMetric(cross99, "cross-p99-ms")
	b.ReportMetric(cross50/same50, "p50-ratio")
	b.ReportMetric(cross99/same99, "p99-ratio")
	b.Logf("%d deltas: same daemon p50 %.1f ms p99 %.1f ms; the other daemon p50 %.1f ms p99 %.1f ms (×%.2f, ×%.2f)",
		len(lat[1]), same50, same99, cross50, cross99, cross50/same50, cross99/same99)
}
