package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkFailover measures a daemon on PostgreSQL killed with SIGKILL
// in the middle of a turn while a standby waits (serve --standby, both
// with --lease 2s), FAILOVERS times (TAOSAGENT_FAILOVERS, default 5), the
// two homes taking turns: from the kill, and from the dead daemon's
// lease's expiry (read from the database right after the kill), to the
// first event the new holder writes (the cut turn's interrupted error);
// and from the kill to the end of the next turn on the new holder (its
// own opencode start included). The lease is the limit the takeover is
// measured against. Run with -benchtime 1x.
func BenchmarkFailover(b *testing.B) {
	rounds, ctx, dsn, conn := failovers(b)
	env := []string{"TAOSAGENT_DB=" + dsn}
	homes := []string{b.TempDir(), b.TempDir()}
	holder := startIn(b, homes[0], env, "--lease", failoverLease.String())
	holder.agent(ctx, "a", "")
	var fromKill, fromExpiry, nextTurn []float64
	for i := range rounds {
		waiting := make(chan *daemon, 1)
		go func() {
			s, err := launch(b, homes[(i+1)%2], env, "--lease", failoverLease.String(), "--standby")
			if err != nil {
				b.Error(err)
			}
			waiting <- s
		}()
		cut := holder.send(ctx, "a", "endless", "")
		if err := holder.c.Stream(ctx, "a", cut.Seq, func(e client.Event) bool { return e.Kind != "delta" && e.Kind != "reasoning" }); err != nil {
			b.Fatal(err)
		}
		holder.kill()
		killed := time.Now()
		var expires time.Time
		if err := conn.QueryRow(ctx, `SELECT expires FROM leases WHERE agent = '*'`).Scan(&expires); err != nil {
			b.Fatal(err)
		}
		holder = <-waiting
		if holder == nil {
			b.FailNow()
		}
		var first time.Time
		err := holder.c.Stream(ctx, "a", cut.Seq, func(e client.Event) bool {
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
		next := holder.send(ctx, "a", fmt.Sprint("say: after failover ", i), "")
		if e := last(holder.turnOf(ctx, "a", next.Seq-1, next.Input)); e.Kind != "final" {
			b.Fatalf("the turn after failover %d ended %s", i, e.Kind)
		}
		nextTurn = append(nextTurn, time.Since(killed).Seconds())
	}
	reportFailovers(b, "the new holder", fromKill, fromExpiry, nextTurn)
}

// failoverLease is the lease of the failover benchmarks' daemons: the
// limit their takeovers are measured against.
const failoverLease = 2 * time.Second

// failovers is what a failover benchmark starts from: its rounds
// (TAOSAGENT_FAILOVERS, default 5), a context long enough for them, and
// a new database of a throwaway PostgreSQL with a connection to read its
// leases.
func failovers(b *testing.B) (rounds int, ctx context.Context, dsn string, conn *pgx.Conn) {
	b.Helper()
	rounds = 5
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_FAILOVERS")); err == nil && n > 0 {
		rounds = n
	}
	dsn = testenv.NewPostgres(b).Database(b)
	ctx = ctxT(b, time.Duration(rounds)*2*time.Minute)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return rounds, ctx, dsn, conn
}

// reportFailovers reports a failover benchmark's times, in seconds: from
// the kill and from the lease's expiry to the first event on who took
// over, and from the kill to the next turn's end there.
func reportFailovers(b *testing.B, who string, fromKill, fromExpiry, nextTurn []float64) {
	b.Helper()
	b.ReportMetric(median(fromKill), "kill-to-takeover-s")
	b.ReportMetric(median(fromExpiry), "expiry-to-takeover-s")
	b.ReportMetric(slices.Max(fromExpiry), "expiry-to-takeover-max-s")
	b.ReportMetric(median(nextTurn), "kill-to-next-final-s")
	b.ReportMetric(failoverLease.Seconds(), "lease-s")
	b.ReportMetric(0, "ns/op")
	b.Logf("kill → the first event on %s (s): %v", who, round(fromKill))
	b.Logf("lease expiry → the first event on %s (s): %v", who, round(fromExpiry))
	b.Logf("kill → the next turn's final on %s (s): %v", who, round(nextTurn))
}
