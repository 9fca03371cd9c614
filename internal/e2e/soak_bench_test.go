package e2e

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// BenchmarkSoakUnderCap runs AGENTS agents × TURNS turns each, all agents at
// once, on a daemon capped at CAP running instances
// (TAOSAGENT_SOAK=AGENTSxTURNSxCAP, default 6x5x4), and reports how many
// turns ended final: under the cap, agents wait for a slot rather than
// fail. Run with -benchtime 1x.
func BenchmarkSoakUnderCap(b *testing.B) {
	agents, turns, capN := 6, 5, 4
	if v := os.Getenv("TAOSAGENT_SOAK"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%dx%d", &agents, &turns, &capN); err != nil {
			b.Fatalf("TAOSAGENT_SOAK=%q: want AGENTSxTURNSxCAP", v)
		}
	}
	for range b.N {
		d := start(b, "", "--max-running", fmt.Sprint(capN))
		ctx := ctxT(b, time.Duration(agents*turns)*15*time.Second+10*time.Minute) // about 7 s a turn at 10 agents on 2 cores
		for i := range agents {
			d.agent(ctx, fmt.Sprint("soak", i), "")
		}
		var final, failed atomic.Int64
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprint("soak", i)
				for j := range turns {
					acc, err := d.c.Send(ctx, name, client.Message{Text: fmt.Sprintf("hello %d", j)})
					if err != nil {
						failed.Add(1)
						continue
					}
					evs := d.turnOf(ctx, name, acc.Seq-1, acc.Input)
					if e := last(evs); e.Kind == "final" {
						final.Add(1)
					} else {
						failed.Add(1)
						mu.Lock()
						codes[e.Field("code")+": "+e.Field("message")]++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(final.Load()), "final")
		b.ReportMetric(float64(agents*turns), "turns")
		b.ReportMetric(time.Since(t0).Seconds(), "s")
		b.ReportMetric(0, "ns/op")
		if failed.Load() > 0 {
			b.Errorf("%d of %d turns did not end final: %v", failed.Load(), agents*turns, codes)
		}
	}
}
