package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"
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
		var names []string
		for i := range agents {
			names = append(names, fmt.Sprint("soak", i))
			d.agent(ctx, names[i], "")
		}
		t0 := time.Now()
		bad := d.turnsEach(ctx, names, turns)
		b.ReportMetric(float64(agents*turns-len(bad)), "final")
		b.ReportMetric(float64(agents*turns), "turns")
		b.ReportMetric(time.Since(t0).Seconds(), "s")
		b.ReportMetric(0, "ns/op")
		if len(bad) > 0 {
			b.Errorf("%d of %d turns did not end final: %v", len(bad), agents*turns, bad)
		}
	}
}
