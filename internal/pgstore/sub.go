package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// Poll is how often a waiting subscription reads the log with no
// notification: commits' notifications are only wake-ups, and one lost
// (a connection that broke) delays a reader by at most this.
const Poll = time.Second

// pageSize is how many records a subscription reads at once.
const pageSize = 1000

// waker is the log's one LISTEN connection, shared by its subscriptions:
// each commit's notification, and each reconnect, closes the current
// channel (every waiting subscription reads again) and opens the next.
type waker struct {
	mu   sync.Mutex
	ch   chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

func (w *waker) current() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *waker) wake() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// listen keeps a LISTEN connection until ctx ends, waking the
// subscriptions at each notification and after each reconnect.
func (l *Log) listen(ctx context.Context) {
	defer close(l.waker.done)
	for ctx.Err() == nil {
		conn, err := l.pool.Acquire(ctx)
		if err == nil {
			if _, err = conn.Exec(ctx, `LISTEN `+channel); err == nil {
				l.waker.wake() // whatever was missed while it was away
				for err == nil {
					_, err = conn.Conn().WaitForNotification(ctx)
					if err == nil {
						l.waker.wake()
					}
				}
			}
			// A connection that broke is not given back to the pool.
			conn.Hijack().Close(context.Background())
		}
		select {
		case <-ctx.Done():
		case <-time.After(Poll):
		}
	}
}

// sub is a subscription to the log on PostgreSQL.
type sub struct {
	l        *Log
	agent    string
	kinds    []event.Kind
	cursor   int64
	explicit bool
	pending  []eventlog.Record
	closed   chan struct{}
	once     sync.Once
}

// Subscribe follows the events of agent ("" for all) after seq after, of
// the given kinds (all if none): the contract's subscription. explicit
// says the cursor came from a client: one beyond the head first gets a
// Reset record.
func (l *Log) Subscribe(agent string, after int64, explicit bool, kinds ...event.Kind) (eventlog.Subscription, error) {
	select {
	case <-l.closed:
		return nil, eventlog.ErrClosed
	default:
	}
	return &sub{l: l, agent: agent, kinds: kinds, cursor: after, explicit: explicit, closed: make(chan struct{})}, nil
}

func (s *sub) Cursor() int64 { return s.cursor }

func (s *sub) Close() { s.once.Do(func() { close(s.closed) }) }

func (s *sub) Next(ctx context.Context, max int) ([]eventlog.Record, error) {
	for {
		if len(s.pending) > 0 {
			n := min(max, len(s.pending))
			out := s.pending[:n:n]
			s.pending = s.pending[n:]
			s.cursor = out[n-1].Seq
			return out, nil
		}
		// The wake-up is taken before the read: a commit after the read
		// closes it.
		woken := s.l.waker.current()
		if err := s.read(ctx); err != nil {
			return nil, err
		}
		if len(s.pending) > 0 {
			continue
		}
		select {
		case <-woken:
		case <-time.After(Poll):
		case <-s.closed:
			return nil, eventlog.ErrClosed
		case <-s.l.closed:
			return nil, eventlog.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// read reads one page after the cursor into pending.
func (s *sub) read(ctx context.Context) error {
	if s.explicit {
		// A cursor beyond the head (from another database, say).
		head, err := s.l.Head(ctx)
		if err != nil {
			return err
		}
		if s.cursor > head {
			body, _ := json.Marshal(eventlog.ResetData{After: s.cursor, Oldest: 1, Head: head, Reason: "beyond_head"})
			s.pending = append(s.pending, eventlog.Record{Seq: head, Agent: s.agent, Kind: eventlog.Reset, Body: body})
			s.cursor = head
		}
		s.explicit = false
	}
	err := s.l.Scan(ctx, eventlog.Query{Agent: s.agent, After: s.cursor, Kinds: s.kinds, Limit: pageSize}, func(r eventlog.Record) error {
		s.pending = append(s.pending, r)
		return nil
	})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err != nil {
		// The database is away: the subscription waits and reads again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(Poll):
		}
	}
	return nil
}
