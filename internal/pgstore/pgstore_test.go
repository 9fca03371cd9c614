package pgstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/eventlog/storetest"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/testenv"
)

func ev(agent string, i int) event.Event {
	e := event.New("ses_1", event.Delta, time.Now(), event.DeltaData{Text: fmt.Sprint(i)})
	e.Agent = agent
	return e
}

// open opens a log on a new database of pg, closed when t ends, with a
// context of limit.
func open(t *testing.T, pg *testenv.Postgres, limit time.Duration) (context.Context, *pgstore.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	l, err := pgstore.Open(ctx, pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return ctx, l
}

// One throwaway cluster (Debian's PostgreSQL), a database per part.
func TestTheEventLogOnPostgreSQL(t *testing.T) {
	pg := testenv.NewPostgres(t)
	t.Run("AFollowerByCursorSkipsNothingUnderConcurrentWriters", func(t *testing.T) { followerSkipsNothing(t, pg) })
	t.Run("WhatWasCommittedOutlivesACrashOfTheDatabase", func(t *testing.T) { committedOutlivesACrash(t, pg) })
	t.Run("AWrongDatabaseIsAClearError", func(t *testing.T) { wrongDatabase(t, pg) })
	t.Run("AnAgentIsLeasedToOneDaemonAndAnOldOwnerIsFenced", func(t *testing.T) { leasesFence(t, pg) })
	t.Run("AFencedLogWritesNothingOnceItsLeaseIsTaken", func(t *testing.T) { fencedLog(t, pg) })
	t.Run("AFollowerGoesOnAfterTheDatabaseComesBack", func(t *testing.T) { followerOutlivesTheDatabase(t, pg) })
	t.Run("ASubscriptionFromACursorThenLive", func(t *testing.T) { subscription(t, pg) })
	t.Run("TheSchemaHasTheSQLiteLogsTablesAndColumns", func(t *testing.T) { sameSchema(t, pg) })
	// The whole conformance suite, as the SQLite log passes it: a name
	// opens the same database again.
	t.Run("Conformance", func(t *testing.T) {
		var mu sync.Mutex
		dbs := map[string]string{}
		storetest.Run(t, func(t testing.TB, name string) eventlog.Store {
			mu.Lock()
			key := t.Name() + "/" + name
			dsn, ok := dbs[key]
			if !ok || name == "" {
				dsn = pg.Database(t)
				dbs[key] = dsn
			}
			mu.Unlock()
			l, err := pgstore.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		})
	})
}

// Eight writers append at once, in transactions of one to four events; a
// follower reading by cursor all along sees every seq once, in order,
// with no gap: seqs are given out in commit order, so it never passes one
// still in flight.
func followerSkipsNothing(t *testing.T, pg *testenv.Postgres) {
	ctx, l := open(t, pg, 2*time.Minute)
	const writers, appends = 8, 60
	var seen []int64
	var mu sync.Mutex
	fctx, stop := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() {
		followed <- l.Follow(fctx, "", 0, func(recs []eventlog.Record) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				seen = append(seen, r.Seq)
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	total := 0
	for w := range writers {
		for i := range appends {
			total += 1 + (w+i)%4
		}
		wg.Go(func() {
			for i := range appends {
				evs := make([]event.Event, 1+(w+i)%4)
				for j := range evs {
					evs[j] = ev(fmt.Sprintf("a%d", w), i)
				}
				out, err := l.Append(ctx, evs...)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(out); j++ {
					if out[j].Seq != out[j-1].Seq+1 {
						t.Errorf("one append's seqs are not contiguous: %d after %d", out[j].Seq, out[j-1].Seq)
					}
				}
			}
		})
	}
	wg.Wait()
	head := l.Head()
	if head != int64(total) {
		t.Fatalf("head %d after %d events", head, total)
	}
	// The follower reaches the head; what it saw on the way is the test.
	for {
		mu.Lock()
		at := int64(0)
		if len(seen) > 0 {
			at = seen[len(seen)-1]
		}
		mu.Unlock()
		if at >= head {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the follower is at %d, the head at %d", at, head)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-followed
	if len(seen) != total {
		t.Fatalf("the follower saw %d events of %d", len(seen), total)
	}
	for i, s := range seen {
		if s != int64(i+1) {
			t.Fatalf("the follower saw seq %d at %d: skipped or repeated (%v…)", s, i, seen[max(0, i-3):min(len(seen), i+3)])
		}
	}
	// One agent's, by cursor, from the middle.
	n := 0
	l.Scan(ctx, eventlog.Query{Agent: "a3", After: int64(total / 2)}, func(r eventlog.Record) error {
		if r.Agent != "a3" || r.Seq <= int64(total/2) {
			t.Errorf("scan: %+v", r)
		}
		n++
		return nil
	})
	if n == 0 {
		t.Error("scan: nothing of a3's after the middle")
	}
}

// The cluster is killed (immediate: no checkpoint) while writers append;
// once it is back, every append that returned is there, and the seqs have
// no hole.
func committedOutlivesACrash(t *testing.T, pg *testenv.Postgres) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dsn := pg.Database(t)
	l, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var committed []int64
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				out, err := l.Append(ctx, ev(fmt.Sprint("w", w), i), ev(fmt.Sprint("w", w), i))
				if err != nil {
					return // the database went away
				}
				mu.Lock()
				committed = append(committed, out[0].Seq, out[1].Seq)
				if len(committed) >= 200 {
					once.Do(func() { close(started) })
				}
				mu.Unlock()
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	select {
	case <-started:
	case <-writing:
		t.Fatalf("the writers stopped before the crash (%d events)", len(committed))
	}
	pg.Kill(t)
	<-writing
	l.Close()
	pg.Start(t)

	l, err = pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stored := map[int64]bool{}
	var last int64
	l.Scan(ctx, eventlog.Query{}, func(r eventlog.Record) error {
		if r.Seq != last+1 {
			t.Errorf("a hole: %d after %d", r.Seq, last)
		}
		last = r.Seq
		stored[r.Seq] = true
		return nil
	})
	for _, s := range committed {
		if !stored[s] {
			t.Fatalf("seq %d was committed and is gone after the crash", s)
		}
	}
	if head := l.Head(); head != last {
		t.Fatalf("head %d, last event %d", head, last)
	}
	// And it takes appends again, after what it kept.
	if out, err := l.Append(ctx, ev("w0", -1)); err != nil || out[0].Seq != last+1 {
		t.Fatalf("after the crash: %+v %v", out, err)
	}
}

// A database that is not there is an error naming it, not a hang.
func wrongDatabase(t *testing.T, pg *testenv.Postgres) {
	ctx := t.Context()
	for dsn, want := range map[string]string{
		pg.DSN("nonesuch"):                                  "cannot reach the database at " + pg.Dir,
		"host=/nonexistent user=postgres dbname=x":          "cannot reach the database at /nonexistent",
		"postgres://postgres@127.0.0.1:1/x?sslmode=disable": "cannot reach the database at 127.0.0.1:1/x",
		"postgres://%zz":                                    "the database's address",
	} {
		start := time.Now()
		_, err := pgstore.Open(ctx, dsn)
		if err == nil || !strings.Contains(err.Error(), want) || time.Since(start) > pgstore.ConnectTimeout+5*time.Second {
			t.Errorf("%s: %v, want %q", dsn, err, want)
		}
	}
}

// Two daemons share a database: one holds agent a's lease, the other is
// refused it; the holder, paused past its lease, loses it to the other
// (a greater token), and then can neither renew nor write: the database
// refuses its writes. Four daemons racing for a lapsed lease: one wins,
// the token grows by one. A daemon back within its lease keeps its token.
func leasesFence(t *testing.T, pg *testenv.Postgres) {
	ctx, l := open(t, pg, time.Minute)
	// Leases long enough for any machine's pace, but the paused owner's
	// last renewal, which lapses while the test waits.
	const ttl, paused = time.Minute, 300 * time.Millisecond
	d1, err := l.Acquire(ctx, "a", "daemon-1", ttl)
	if err != nil || d1.Token != 1 {
		t.Fatalf("d1: %+v %v", d1, err)
	}
	if _, err := l.Acquire(ctx, "a", "daemon-2", ttl); !errors.Is(err, pgstore.ErrLeased) || !strings.Contains(err.Error(), "daemon-1") {
		t.Fatalf("d2 took a held lease: %v", err)
	}
	if again, err := l.Acquire(ctx, "a", "daemon-1", ttl); err != nil || again.Token != d1.Token {
		t.Fatalf("d1 back within its lease: %+v %v", again, err)
	}
	if _, err := l.AppendFenced(ctx, d1, ev("a", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendFenced(ctx, d1, ev("b", 1)); err == nil {
		t.Fatal("an event of b under a's lease")
	}
	if d1, err = l.Renew(ctx, d1, paused); err != nil {
		t.Fatal(err)
	}

	// d1 pauses past its lease; d2 takes the agent.
	var d2 pgstore.Lease
	for {
		if d2, err = l.Acquire(ctx, "a", "daemon-2", ttl); err == nil {
			break
		}
		if !errors.Is(err, pgstore.ErrLeased) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d2.Token != d1.Token+1 {
		t.Fatalf("the new lease's token: %d after %d", d2.Token, d1.Token)
	}
	head := l.Head()
	if _, err := l.AppendFenced(ctx, d1, ev("a", 2)); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("the old owner wrote after losing the agent: %v", err)
	}
	if h := l.Head(); h != head {
		t.Fatalf("a fenced write moved the head: %d → %d", head, h)
	}
	if _, err := l.Renew(ctx, d1, ttl); !errors.Is(err, pgstore.ErrLost) {
		t.Fatalf("the old owner renewed: %v", err)
	}
	if _, err := l.AppendFenced(ctx, d2, ev("a", 3)); err != nil {
		t.Fatal(err)
	}

	// d2 releases it; four daemons race: one wins, the token one more.
	if err := l.Release(ctx, d2); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []pgstore.Lease
	for i := range 4 {
		wg.Go(func() {
			le, err := l.Acquire(ctx, "a", fmt.Sprint("racer-", i), ttl)
			if err == nil {
				mu.Lock()
				won = append(won, le)
				mu.Unlock()
			} else if !errors.Is(err, pgstore.ErrLeased) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || won[0].Token != d2.Token+1 {
		t.Fatalf("the race: %+v", won)
	}
	if _, err := l.AppendFenced(ctx, d2, ev("a", 4)); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("a released lease wrote: %v", err)
	}
}

// The database goes away under a follower and comes back: the follower
// connects again, reads from its cursor once, and goes on; appends fail
// meanwhile with an error and take again after.
func followerOutlivesTheDatabase(t *testing.T, pg *testenv.Postgres) {
	ctx, l := open(t, pg, time.Minute)
	got := make(chan int64, 100)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go l.Follow(fctx, "a", 0, func(recs []eventlog.Record) error {
		for _, r := range recs {
			got <- r.Seq
		}
		return nil
	})
	next := func(want int64) {
		t.Helper()
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("followed seq %d, want %d", s, want)
			}
		case <-ctx.Done():
			t.Fatalf("seq %d never followed", want)
		}
	}
	if _, err := l.Append(ctx, ev("a", 1)); err != nil {
		t.Fatal(err)
	}
	next(1)
	pg.Kill(t)
	if _, err := l.Append(ctx, ev("a", 2)); err == nil {
		t.Fatal("an append with the database down succeeded")
	}
	pg.Start(t)
	for {
		if _, err := l.Append(ctx, ev("a", 3)); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("appends never took again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	next(2)
}

// The contract's subscription (eventlog.Subscription): an agent's events
// after a cursor, then live as they commit; a client's cursor beyond the
// head gets a Reset first.
func subscription(t *testing.T, pg *testenv.Postgres) {
	ctx, l := open(t, pg, time.Minute)
	for i := range 3 {
		if _, err := l.Append(ctx, ev("a", i), ev("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	var s eventlog.Subscription
	s, err := l.Subscribe("a", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seqs := func(recs []eventlog.Record) (out []int64) {
		for _, r := range recs {
			if r.Agent != "a" {
				t.Errorf("b's event in a's subscription: %+v", r)
			}
			out = append(out, r.Seq)
		}
		return out
	}
	recs, err := s.Next(ctx, 10)
	if got := seqs(recs); err != nil || fmt.Sprint(got) != "[3 5]" || s.Cursor() != 5 {
		t.Fatalf("after 1: %v %v (cursor %d)", got, err, s.Cursor())
	}
	live := make(chan []int64)
	go func() {
		recs, _ := s.Next(ctx, 10)
		live <- seqs(recs)
	}()
	if _, err := l.Append(ctx, ev("b", 9), ev("a", 9)); err != nil {
		t.Fatal(err)
	}
	if got := <-live; fmt.Sprint(got) != "[8]" {
		t.Fatalf("live: %v", got)
	}
	far, _ := l.Subscribe("", 999, true)
	defer far.Close()
	recs, err = far.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Kind != eventlog.Reset || recs[0].Seq != 8 || !strings.Contains(string(recs[0].Body), `"beyond_head"`) {
		t.Fatalf("a cursor beyond the head: %+v %v", recs, err)
	}
	s.Close()
	if _, err := s.Next(ctx, 10); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// The PostgreSQL schema has every table and column of the SQLite log's,
// and only those besides its own (the head's row and the leases): a
// migration added on one side and not the other fails here.
func sameSchema(t *testing.T, pg *testenv.Postgres) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := pg.Database(t)
	l, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	path := filepath.Join(t.TempDir(), "events.db")
	sl, err := eventlog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sl.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	columns := func(rows *sql.Rows, err error) map[string][]string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][]string{}
		for rows.Next() {
			var table, column string
			if err := rows.Scan(&table, &column); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], column)
		}
		for _, cs := range out {
			slices.Sort(cs)
		}
		return out
	}
	lite := columns(db.QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT IN ('sqlite_sequence', 'goose_db_version')`))
	pgdb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close()
	post := columns(pgdb.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name NOT IN ('goose_db_version', 'head', 'leases', 'daemons', 'placements', 'requests', 'moves', 'move_chunks')`))
	if len(lite) < 20 {
		t.Fatalf("the SQLite log's tables: %v", lite)
	}
	for table, cs := range lite {
		if !slices.Equal(cs, post[table]) {
			t.Errorf("table %s: SQLite has %v, PostgreSQL %v", table, cs, post[table])
		}
	}
	for table := range post {
		if _, ok := lite[table]; !ok {
			t.Errorf("table %s is PostgreSQL's only", table)
		}
	}
}

// Two daemons' logs on one database: the first holds the whole database
// and fences its log with that lease. It writes while the lease is its;
// once the lease lapsed and the second took it, no write of the first
// goes through (events, the tables, retention), and nothing of it shows.
func fencedLog(t *testing.T, pg *testenv.Postgres) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := pg.Database(t)
	logs := make([]*pgstore.Log, 2)
	for i := range logs {
		l, err := pgstore.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs[i] = l
	}
	le, err := logs[0].Acquire(ctx, pgstore.Everything, "daemon-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	logs[0].Fence(le)
	if _, err := logs[0].Append(ctx, ev("a", 1)); err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	// Its last renewal, which lapses while the second waits.
	if _, err := logs[0].Renew(ctx, le, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var le2 pgstore.Lease
	for {
		if le2, err = logs[1].Acquire(ctx, pgstore.Everything, "daemon-2", time.Minute); err == nil {
			break
		}
		if !errors.Is(err, pgstore.ErrLeased) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs[1].Fence(le2)
	if _, err := logs[0].Append(ctx, ev("a", 2)); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("an event after the lease was taken: %v", err)
	}
	if err := logs[0].Audit(ctx, eventlog.AuditEntry{Actor: "daemon-1", Action: "x", Target: "y", Outcome: "ok"}); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("an audit entry after the lease was taken: %v", err)
	}
	if _, err := logs[0].Prune(ctx, time.Now().Add(time.Hour), time.Now()); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("a prune after the lease was taken: %v", err)
	}
	if _, err := logs[1].Append(ctx, ev("a", 3)); err != nil {
		t.Fatalf("the new holder's write: %v", err)
	}
	var seen []string
	must(t, logs[1].Scan(ctx, eventlog.Query{Agent: "a"}, func(r eventlog.Record) error {
		var e event.Event
		json.Unmarshal(r.Body, &e)
		var d event.DeltaData
		json.Unmarshal(e.Data, &d)
		seen = append(seen, d.Text)
		return nil
	}))
	if fmt.Sprint(seen) != "[1 3]" {
		t.Fatalf("the events: %v", seen)
	}
	if es, err := logs[1].AuditEntries(ctx, 0, 10); err != nil || len(es) != 0 {
		t.Fatalf("the audit: %+v %v", es, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
