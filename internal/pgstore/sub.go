package pgstore

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	mu        sync.Mutex
	ch        chan struct{}
	stop      context.CancelFunc
	done      chan struct{}
	listening chan struct{} // closed at the first LISTEN
	once      sync.Once
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
			if _, err = conn.Exec(ctx, `LISTEN `+channel+`; LISTEN `+requestsChannel); err == nil {
				l.waker.wake() // whatever was missed while it was away
				l.reqWaker.wake()
				l.waker.once.Do(func() { close(l.waker.listening) })
				for err == nil {
					var n *pgconn.Notification
					if n, err = conn.Conn().WaitForNotification(ctx); err == nil {
						if n.Channel == requestsChannel {
							l.reqWaker.wake()
							continue
						}
						if seq, perr := strconv.ParseInt(n.Payload, 10, 64); perr == nil {
							l.saw(seq)
						}
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
	l.subs.add(1)
	return &sub{l: l, agent: agent, kinds: kinds, cursor: after, explicit: explicit, closed: make(chan struct{})}, nil
}

func (s *sub) Cursor() int64 { return s.cursor }

func (s *sub) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.l.subs.add(-1)
	})
}

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

// read reads one page after the cursor into pending, with the retention
// floor and the head read in the same snapshot as the page, so that a
// prune can never remove events between the two reads unseen: a cursor
// below the floor gets a Reset (retention), as does a client's cursor
// beyond the head (beyond_head).
func (s *sub) read(ctx context.Context) error {
	var floor, head int64
	var page []eventlog.Record
	err := pgx.BeginTxFunc(ctx, s.l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT (SELECT floor FROM retention WHERE id = 1), (SELECT seq FROM head WHERE id = 1)`).Scan(&floor, &head); err != nil {
			return err
		}
		return scan(ctx, tx, eventlog.Query{Agent: s.agent, After: max(s.cursor, floor), Kinds: s.kinds, Limit: pageSize}, func(r eventlog.Record) error {
			page = append(page, r)
			return nil
		})
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
		return nil
	}
	s.l.saw(head)
	var reset *eventlog.Record
	if s.cursor, reset = eventlog.Follow(s.agent, s.cursor, floor, head, s.explicit); reset != nil {
		s.pending = append(s.pending, *reset)
	}
	s.explicit = false
	s.pending = append(s.pending, page...)
	return nil
}

// subCount counts the open subscriptions, for Subscribers.
type subCount struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func (c *subCount) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Subscribers returns how many subscriptions are open, and a channel closed
// at the next change of that number.
func (l *Log) Subscribers() (int, <-chan struct{}) {
	c := &l.subs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.n, c.changed
}
