package schedule_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/schedule"
)

// BenchmarkAThousandSchedulesDueAtOnce: 1,000 schedules across 50 agents,
// every slot due in the same second, fired by a running scheduler on the
// real clock. It reports how late each input was committed after its slot
// (p50, p99, max) and that each fired once; the baseline, in the same run
// and store, is committing the same 1,000 inputs directly, one after the
// other (the store's own floor): the ratio is the scheduler's time to fire
// them all against it. Turns are not part of the figure.
func BenchmarkAThousandSchedulesDueAtOnce(b *testing.B) {
	const agents, schedules = 50, 1000
	ctx := context.Background()
	for range b.N {
		l, err := eventlog.Open(filepath.Join(b.TempDir(), "db"))
		if err != nil {
			b.Fatal(err)
		}
		l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}})
		for i := range agents {
			if _, err := l.CreateAgent(ctx, agent.Agent{Name: fmt.Sprintf("a%d", i), Model: "p/m", Models: []string{"p/m"}}); err != nil {
				b.Fatal(err)
			}
		}
		// The baseline: the same inputs, committed one after the other.
		t0 := time.Now()
		for i := range schedules {
			if _, _, err := l.AddInput(ctx, eventlog.Input{Agent: fmt.Sprintf("a%d", i%agents), ClientID: fmt.Sprint("direct-", i), Text: "tick", Mode: "queue"}); err != nil {
				b.Fatal(err)
			}
		}
		direct := time.Since(t0)

		every := time.Hour
		slot := time.Now().Add(2 * time.Second).Truncate(time.Second)
		for i := range schedules {
			created := slot.Add(-every)
			if err := l.CreateSchedule(ctx, eventlog.Schedule{ID: fmt.Sprintf("sch_%04d", i), Agent: fmt.Sprintf("a%d", i%agents), Every: every, Message: "tick",
				Missed: schedule.MissedOnce, Overlap: schedule.OverlapQueue, CreatedBy: "bench", Created: created, LastSlot: created}); err != nil {
				b.Fatal(err)
			}
		}
		s := &schedule.Scheduler{Store: l}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(rctx) }()
		var late []time.Duration
		fired := map[string]int{}
		for {
			late = late[:0]
			clear(fired)
			for i := range agents {
				ins, _ := l.Inputs(ctx, fmt.Sprintf("a%d", i), "queued")
				for _, in := range ins {
					if in.Schedule != "" {
						late = append(late, in.Created.Sub(slot))
						fired[in.Schedule]++
					}
				}
			}
			if len(late) >= schedules || time.Since(slot) > time.Minute {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-done
		l.Close()
		if len(late) != schedules || len(fired) != schedules {
			b.Fatalf("%d inputs from %d schedules for %d slots", len(late), len(fired), schedules)
		}
		slices.Sort(late)
		p := func(q float64) time.Duration { return late[min(len(late)-1, int(q*float64(len(late))))] }
		b.ReportMetric(float64(p(0.5).Milliseconds()), "p50-ms")
		b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
		b.ReportMetric(float64(late[len(late)-1].Milliseconds()), "max-ms")
		b.ReportMetric(float64(direct.Milliseconds()), "direct-ms")
		b.ReportMetric(float64(late[len(late)-1])/float64(direct), "x-direct")
	}
}
