package pgstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// The log's writes go through one writer goroutine, as the SQLite log's
// do: the requests waiting when it is free share one transaction (group
// commit), so that a burst of small appends from many agents costs one
// commit, one fsync and one hold of the head's row, not one each. Seqs
// are still given out in commit order across daemons: each transaction
// locks the head's row first and moves it at its end.

// maxBatch bounds the requests one transaction takes.
const maxBatch = 1024

// request is one Append, AppendAsync or Update for the writer.
type request struct {
	events []event.Event
	fn     func(*eventlog.Tx) error
	then   func([]event.Event, error) // AppendAsync's
	out    []event.Event
	err    error
	done   chan struct{}
}

func (r *request) finish() {
	if r.then != nil {
		r.then(r.out, r.err)
	}
	close(r.done)
}

// send queues r and waits for its commit. Once queued, r is committed or
// failed whatever ctx says, so that the caller's view of what is stored
// is exact.
func (l *Log) send(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	l.reqMu.RLock()
	if l.reqsClosed {
		l.reqMu.RUnlock()
		return eventlog.ErrClosed
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.reqMu.RUnlock()
		return ctx.Err()
	}
	l.reqMu.RUnlock()
	<-r.done
	return r.err
}

// Update runs fn in a write transaction; the events it appends (each
// given the next seq and applied to the projections) are committed with
// it, their readers woken, and returned. If fn fails, nothing it did is
// kept and its error is returned. fn runs on the writer: it must not
// call the log.
func (l *Log) Update(ctx context.Context, fn func(*eventlog.Tx) error) ([]event.Event, error) {
	r := &request{fn: fn}
	if err := l.send(ctx, r); err != nil {
		return nil, err
	}
	return r.out, nil
}

// appendChecked is Append, with check run first in the transaction (a
// fence).
func (l *Log) appendChecked(ctx context.Context, evs []event.Event, check func(*eventlog.Tx) error) ([]event.Event, error) {
	return l.Update(ctx, func(tx *eventlog.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		for _, e := range evs {
			if _, err := tx.Append(e); err != nil {
				return fmt.Errorf("pgstore: append: %w", err)
			}
		}
		return nil
	})
}

// Append stores evs, in order, in one transaction, each given the next
// seq and applied to the projections, and returns them with their seqs
// once committed (durable before visible: no reader sees an event before
// its commit). Concurrent calls share commits.
func (l *Log) Append(ctx context.Context, evs ...event.Event) ([]event.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	r := &request{events: evs}
	if err := l.send(ctx, r); err != nil {
		return nil, err
	}
	return r.out, nil
}

// AppendAsync queues evs and returns without waiting for the commit (it
// blocks only while the writer's queue is full); then, if not nil, runs
// on the writer after the commit with the events and their seqs, and
// must be quick. Events of successive calls are stored in call order.
func (l *Log) AppendAsync(evs []event.Event, then func([]event.Event, error)) {
	r := &request{events: evs, then: then, done: make(chan struct{})}
	l.reqMu.RLock()
	defer l.reqMu.RUnlock()
	if l.reqsClosed {
		if then != nil {
			then(nil, eventlog.ErrClosed)
		}
		return
	}
	l.reqs <- r
}

// AddRaw keeps opencode's raw events for the next commit (best effort: a
// failed commit drops them).
func (l *Log) AddRaw(raws ...eventlog.Raw) {
	l.rawMu.Lock()
	l.raws = append(l.raws, raws...)
	l.rawMu.Unlock()
}

func (l *Log) writer() {
	defer close(l.writerDone)
	batch := make([]*request, 0, 64)
	for r := range l.reqs {
		batch = eventlog.Gather(l.reqs, append(batch[:0], r), maxBatch)
		l.commit(batch)
	}
}

// commit writes batch in one transaction, then releases its requests.
// A request's fn that fails undoes only its own writes (a savepoint); a
// failure of the database, or of the fence, fails them all.
func (l *Log) commit(batch []*request) {
	ctx := context.Background()
	fail := func(err error) {
		for _, r := range batch {
			r.out, r.err = nil, err
			r.finish()
		}
	}
	stx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("pgstore: begin: %w", err))
		return
	}
	defer stx.Rollback()
	seqs := &seqs{tx: stx, held: l.agentFence.Load()}
	tx := eventlog.NewTx(ctx, stx, eventlog.Postgres, seqs)
	// The head's row stays locked until this transaction ends: the next
	// writer, of any daemon, takes its seqs after this one committed.
	if err := stx.QueryRowContext(ctx, `SELECT seq FROM head WHERE id = 1 FOR UPDATE`).Scan(&seqs.head); err != nil {
		fail(fmt.Errorf("pgstore: the head: %w", err))
		return
	}
	seqs.next = seqs.head + 1
	if le := l.fence.Load(); le != nil {
		if err := checkLease(tx, *le); err != nil {
			fail(err)
			return
		}
	}
	l.storeRaw(ctx, stx)
	for _, r := range batch {
		from := len(events(tx))
		if r.fn != nil {
			r.err = savepoint(ctx, stx, tx, seqs, r.fn)
		} else if r.err = seqs.fencedAll(ctx, r.events); r.err == nil {
			for _, e := range r.events {
				if _, err := tx.Append(e); err != nil {
					// Plain appends fail only when the database does.
					fail(fmt.Errorf("pgstore: append: %w", err))
					return
				}
			}
		}
		if r.err == nil {
			r.out = events(tx)[from:]
		}
	}
	if last := seqs.next - 1; last > seqs.head {
		if _, err := stx.ExecContext(ctx, `UPDATE head SET seq = $1 WHERE id = 1`, last); err != nil {
			fail(fmt.Errorf("pgstore: the head: %w", err))
			return
		}
		if _, err := stx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, strconv.FormatInt(last, 10)); err != nil {
			fail(fmt.Errorf("pgstore: notify: %w", err))
			return
		}
	}
	if err := stx.Commit(); err != nil {
		fail(fmt.Errorf("pgstore: commit: %w", err))
		return
	}
	l.commits.Add(1)
	l.batched.Add(int64(len(batch)))
	l.saw(seqs.next - 1)
	for _, r := range batch {
		r.finish()
	}
}

// savepoint runs fn so that its failure undoes only its own writes.
func savepoint(ctx context.Context, stx *sql.Tx, tx *eventlog.Tx, seqs *seqs, fn func(*eventlog.Tx) error) error {
	if _, err := stx.ExecContext(ctx, "SAVEPOINT op"); err != nil {
		return err
	}
	next, kept := seqs.next, len(events(tx))
	if err := fn(tx); err != nil {
		stx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT op")
		stx.ExecContext(ctx, "RELEASE SAVEPOINT op")
		seqs.next = next
		tx.Truncate(kept)
		return err
	}
	_, err := stx.ExecContext(ctx, "RELEASE SAVEPOINT op")
	return err
}

// storeRaw inserts the raw events waiting for a commit, best effort, in
// a savepoint of their own: a failure drops them and the commit goes on.
func (l *Log) storeRaw(ctx context.Context, stx *sql.Tx) {
	l.rawMu.Lock()
	raws := l.raws
	l.raws = nil
	l.rawMu.Unlock()
	if len(raws) == 0 {
		return
	}
	if _, err := stx.ExecContext(ctx, "SAVEPOINT raw"); err != nil {
		return
	}
	for _, r := range raws {
		if _, err := stx.ExecContext(ctx, `INSERT INTO raw_events(agent, time, type, body) VALUES ($1,$2,$3,$4)`, r.Agent, r.Time.UnixNano(), r.Type, r.Body); err != nil {
			stx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT raw")
			break
		}
	}
	stx.ExecContext(ctx, "RELEASE SAVEPOINT raw")
}

// seqs gives a transaction's events their seqs, after the head it
// locked, and their rows.
type seqs struct {
	tx         *sql.Tx
	head, next int64
	// held is the log's agent fence (FenceAgents), nil if none; checked
	// what it said of each agent in this transaction.
	held    *func(string) (Lease, bool)
	checked map[string]error
}

func (s *seqs) NextSeq(context.Context) (int64, error) { return s.next, nil }

func (s *seqs) InsertEvent(ctx context.Context, e event.Event, body []byte) error {
	if err := s.fenced(ctx, e); err != nil {
		return err
	}
	_, err := s.tx.ExecContext(ctx, `INSERT INTO events(seq, agent, turn, kind, time, body) VALUES ($1,$2,$3,$4,$5,$6)`,
		e.Seq, e.Agent, e.Turn, string(e.Kind), e.Time.UnixNano(), body)
	return err
}

func (s *seqs) Kept(event.Event) { s.next++ }

// events is what was appended through tx so far.
func events(tx *eventlog.Tx) []event.Event {
	evs, _ := tx.Appended()
	return evs
}

// Stats counts the writer's transactions and the requests they carried.
func (l *Log) Stats() (commits, requests int64) { return l.commits.Load(), l.batched.Load() }
