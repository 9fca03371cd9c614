package eventlog

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkIngest measures the whole ingest path: upstream frames decoded,
// normalized by the codec, appended, committed (grouped), and fanned out to
// a subscriber, from 10 agents at once. Next to it, in the same run, the
// storage limit: plain batched inserts of the same rows into the same
// schema. Run with -benchtime 1x.
func BenchmarkIngest(b *testing.B) {
	const agents, perAgent = 10, 20000
	for range b.N {
		l := open(b, "")
		sub, _ := l.Subscribe("", 0, false)
		var got sync.WaitGroup
		var fanned int64
		got.Add(1)
		go func() {
			defer got.Done()
			for {
				recs, err := sub.Next(context.Background(), 4096)
				if err != nil {
					return
				}
				fanned += int64(len(recs))
				if recs[len(recs)-1].Kind == event.Final {
					return
				}
			}
		}()
		b.ResetTimer()
		elapsed := testenv.Ingest(b, l, agents, perAgent)
		b.StopTimer()
		n := l.Head()
		if n < agents*perAgent {
			b.Fatalf("%d events stored, want at least %d", n, agents*perAgent)
		}
		l.Append(context.Background(), event.Event{Agent: "end", Kind: event.Final, Time: time.Now(), Data: []byte(`{}`)})
		got.Wait()
		sub.Close()
		if fanned != n+1 {
			b.Fatalf("the subscriber got %d of %d events", fanned, n+1)
		}
		commits, _ := l.Stats()
		rate := float64(n) / elapsed.Seconds()

		// The storage limit: the same rows, plain batched inserts.
		type row struct {
			seq               int64
			agent, turn, kind string
			t                 int64
			body              []byte
		}
		rows := make([]row, 0, n)
		q, _ := l.db.Query(`SELECT seq, agent, turn, kind, time, body FROM events ORDER BY seq`)
		for q.Next() {
			var r row
			q.Scan(&r.seq, &r.agent, &r.turn, &r.kind, &r.t, &r.body)
			rows = append(rows, r)
		}
		q.Close()
		l2 := open(b, "")
		ctx := context.Background()
		start := time.Now()
		for i := 0; i < len(rows); i += 1000 {
			l2.w.ExecContext(ctx, "BEGIN IMMEDIATE")
			for _, r := range rows[i:min(i+1000, len(rows))] {
				if _, err := l2.ins.ExecContext(ctx, r.seq, r.agent, r.turn, r.kind, r.t, r.body); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := l2.w.ExecContext(ctx, "COMMIT"); err != nil {
				b.Fatal(err)
			}
		}
		limit := float64(len(rows)) / time.Since(start).Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(limit, "limit-rows/s")
		b.ReportMetric(rate/limit, "ratio")
		b.ReportMetric(float64(n)/float64(commits), "events/commit")
		b.ReportMetric(0, "ns/op")
	}
}
