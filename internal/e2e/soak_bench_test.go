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

// BenchmarkQueuedSoakOverTheCap queues TURNS messages for each of AGENTS
// agents at once (TAOSAGENT_QSOAK=AGENTSxTURNSxCAP, default 6x5x4) and
// runs them on a daemon capped at CAP, then on one with a slot for every
// agent, in the same run: it reports each's time, their ratio (the goal
// is at most 1.5), and opencode starts per turn over the cap.
// TAOSAGENT_QSOAK_QUANTUM sets serve's --quantum (1ns: a slot changes
// hands at every turn's end, as before issue 27). Run with -benchtime 1x.
func BenchmarkQueuedSoakOverTheCap(b *testing.B) {
	agents, turns, capN := 6, 5, 4
	if v := os.Getenv("TAOSAGENT_QSOAK"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%dx%d", &agents, &turns, &capN); err != nil {
			b.Fatalf("TAOSAGENT_QSOAK=%q: want AGENTSxTURNSxCAP", v)
		}
	}
	quantum := os.Getenv("TAOSAGENT_QSOAK_QUANTUM")
	if quantum == "" {
		quantum = "60s"
	}
	run := func(capN int) (secs float64, starts int) {
		d := start(b, "", "--max-running", fmt.Sprint(capN), "--quantum", quantum)
		ctx := ctxT(b, time.Duration(agents*turns)*15*time.Second+10*time.Minute)
		var names []string
		for i := range agents {
			names = append(names, fmt.Sprint("q", i))
			d.agent(ctx, names[i], "")
		}
		t0 := time.Now()
		bad, perAgent := d.queuedTurns(ctx, names, turns)
		secs = time.Since(t0).Seconds()
		for _, msg := range bad {
			b.Errorf("cap %d, %s", capN, msg)
		}
		for _, n := range perAgent {
			starts += n
		}
		return secs, starts
	}
	for range b.N {
		over, starts := run(capN)
		enough, _ := run(agents)
		b.ReportMetric(over, "s-over-cap")
		b.ReportMetric(enough, "s-enough-slots")
		b.ReportMetric(over/enough, "ratio")
		b.ReportMetric(float64(starts)/float64(agents*turns), "starts/turn")
		b.ReportMetric(0, "ns/op")
	}
}
