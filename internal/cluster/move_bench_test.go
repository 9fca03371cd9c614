package cluster_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/cluster"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkMoveThroughTheDatabase moves an agent whose directory holds
// TAOSAGENT_MOVE_MB (default 64) of files, half text and half random
// bytes, between two daemons with directories of their own, and compares
// the move (its owner packing it into the database, the target
// unpacking it) with cp -a of the same directory on the same disk,
// timed in the same run.
func BenchmarkMoveThroughTheDatabase(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("TAOSAGENT_MOVE_MB")); err == nil && v > 0 {
		mb = v
	}
	pg := testenv.NewPostgres(b)
	dsn := pg.Database(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	names := func(context.Context) ([]string, error) { return []string{"a"}, nil }
	var ks [2]*cluster.Keeper
	var hs [2]home.Home
	ag := &agents{busy: map[string]bool{}}
	for i, id := range []string{"d1", "d2"} {
		l, err := pgstore.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		hs[i] = home.Home{Dir: b.TempDir()}
		ks[i] = &cluster.Keeper{Log: l, TTL: time.Minute, Names: names, Logger: slog.New(slog.DiscardHandler), Home: hs[i],
			Self: pgstore.Daemon{ID: id, Storage: "s" + id, Dir: hs[i].Agents(), Slots: 2}}
		if err := ks[i].Join(ctx); err != nil {
			b.Fatal(err)
		}
	}
	l := ks[0].Log
	if err := l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}}); err != nil {
		b.Fatal(err)
	}
	if _, err := l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		b.Fatal(err)
	}
	ks[0].Step(ctx, ag)
	const file = 256 << 10
	for i := range mb * 4 {
		data := make([]byte, file)
		if i%2 == 0 {
			rand.Read(data)
		} else {
			for j := range data {
				data[j] = "session log text, "[j%18]
			}
		}
		write(b, filepath.Join(hs[0].Agent("a"), "work", fmt.Sprintf("f%04d", i)), string(data), 0o644)
	}
	var copies, moves time.Duration
	at := 0 // the daemon a is on
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		out, err := exec.Command("cp", "-a", hs[at].Agent("a"), filepath.Join(hs[at].Dir, "copy")).CombinedOutput()
		if err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		copies += time.Since(t0)
		os.RemoveAll(filepath.Join(hs[at].Dir, "copy"))

		to := 1 - at
		t0 = time.Now()
		if _, err := ks[to].Move(ctx, "a", ks[to].Self.ID); err != nil {
			b.Fatal(err)
		}
		ks[at].Step(ctx, ag) // packs
		ks[to].Step(ctx, ag) // unpacks, takes
		moves += time.Since(t0)
		if !ks[to].Here("a") {
			b.Fatalf("a is not on %s after its move", ks[to].Self.ID)
		}
		at = to
	}
	n := float64(b.N)
	b.ReportMetric(float64(mb)/moves.Seconds()*n, "MB/s-move")
	b.ReportMetric(float64(mb)/copies.Seconds()*n, "MB/s-cp")
	b.ReportMetric(moves.Seconds()/copies.Seconds(), "move/cp")
}
