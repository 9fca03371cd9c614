package pgstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkIngestOnPostgreSQL is eventlog's BenchmarkIngest on
// PostgreSQL: upstream frames decoded, normalized by the codec, appended
// (AppendAsync, grouped into commits by the writer), committed and read
// back by a subscriber, from 10 agents at once. Next to it, in the same
// run, the storage limit: the same rows as plain batched inserts (1,000
// per transaction) into the same schema. TAOSAGENT_INGEST_EVENTS sets the
// events per agent (default 10,000); TAOSAGENT_INGEST_FENCED=1 fences the
// log per agent, as a cluster daemon's is (FenceAgents: each
// transaction checks the lease of each agent it writes for). Run with
// -benchtime 1x.
func BenchmarkIngestOnPostgreSQL(b *testing.B) {
	agents, perAgent := 10, 10000
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_INGEST_EVENTS")); err == nil && n > 0 {
		perAgent = n
	}
	pg := testenv.NewPostgres(b)
	for range b.N {
		ctx := context.Background()
		dsn1 := pg.Database(b)
		l, err := pgstore.Open(ctx, dsn1)
		if err != nil {
			b.Fatal(err)
		}
		if os.Getenv("TAOSAGENT_INGEST_FENCED") == "1" {
			held := map[string]pgstore.Lease{}
			for a := range agents + 1 {
				name := fmt.Sprint("agent", a)
				if a == agents {
					name = "end"
				}
				if held[name], err = l.Acquire(ctx, name, "bench", time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			l.FenceAgents(func(a string) (pgstore.Lease, bool) { le, ok := held[a]; return le, ok })
		}
		sub, _ := l.Subscribe("", 0, false)
		var got sync.WaitGroup
		var fanned int64
		got.Go(func() {
			for {
				recs, err := sub.Next(ctx, 4096)
				if err != nil {
					return
				}
				fanned += int64(len(recs))
				if recs[len(recs)-1].Kind == event.Final {
					return
				}
			}
		})
		b.ResetTimer()
		elapsed := testenv.Ingest(b, l, agents, perAgent)
		b.StopTimer()
		n := l.Head()
		if n < int64(agents*perAgent) {
			b.Fatalf("%d events stored, want at least %d", n, agents*perAgent)
		}
		l.Append(ctx, event.Event{Agent: "end", Kind: event.Final, Time: time.Now(), Data: []byte(`{}`)})
		got.Wait()
		sub.Close()
		if fanned != n+1 {
			b.Fatalf("the subscriber got %d of %d events", fanned, n+1)
		}
		commits, _ := l.Stats()
		rate := float64(n) / elapsed.Seconds()
		l.Close()

		// The storage limit: the same rows, plain batched inserts into a
		// new database of the same schema.
		type row struct {
			seq               int64
			agent, turn, kind string
			t                 int64
			body              []byte
		}
		dsn := pg.Database(b)
		l2, err := pgstore.Open(ctx, dsn) // the schema
		if err != nil {
			b.Fatal(err)
		}
		l2.Close()
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			b.Fatal(err)
		}
		srcDB, err := sql.Open("pgx", dsn1)
		if err != nil {
			b.Fatal(err)
		}
		rows := make([]row, 0, n)
		q, err := srcDB.Query(`SELECT seq, agent, turn, kind, time, body FROM events ORDER BY seq`)
		if err != nil {
			b.Fatal(err)
		}
		for q.Next() {
			var r row
			q.Scan(&r.seq, &r.agent, &r.turn, &r.kind, &r.t, &r.body)
			rows = append(rows, r)
		}
		q.Close()
		srcDB.Close()
		conn, err := db.Conn(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < len(rows); i += 1000 {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range rows[i:min(i+1000, len(rows))] {
				if _, err := tx.ExecContext(ctx, `INSERT INTO events(seq, agent, turn, kind, time, body) VALUES ($1,$2,$3,$4,$5,$6)`,
					r.seq, r.agent, r.turn, r.kind, r.t, r.body); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		limit := float64(len(rows)) / time.Since(start).Seconds()
		conn.Close()
		db.Close()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(limit, "limit-rows/s")
		b.ReportMetric(rate/limit, "ratio")
		b.ReportMetric(float64(n)/float64(commits), "events/commit")
		b.ReportMetric(0, "ns/op")
	}
}
