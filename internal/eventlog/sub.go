package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/event"
)

// subBuffer is how many events a subscriber may be behind before it falls
// back to reading the log.
const subBuffer = 1024

// pageSize is how many events one catch-up read takes.
const pageSize = 2048

// Record is one stored event as subscribers and readers get it: Body is
// the event's JSON, ready to send.
type Record struct {
	Seq   int64
	Agent string
	Kind  event.Kind
	Body  []byte
}

// Reset is the kind of the Record a subscription yields when its cursor
// cannot be followed: events after it were pruned (reason "retention"; the
// Seq is the retention floor and the records that follow come after it),
// or the cursor is beyond the last event stored (reason "beyond_head": a
// cursor from another database, say; the Seq is the head, and the records
// that follow are new events).
const Reset event.Kind = "reset"

// ResetData is the body of a Reset record.
type ResetData struct {
	After  int64  `json:"after"`  // the cursor asked for
	Oldest int64  `json:"oldest"` // the first seq that may still be stored
	Head   int64  `json:"head"`   // the last seq stored when the reset was made
	Reason string `json:"reason"` // "retention" or "beyond_head"
}

type bus struct {
	mu      sync.RWMutex
	subs    map[*Sub]struct{}
	closed  bool
	changed chan struct{} // closed and replaced when subs changes
}

// changedLocked tells the waiters of Subscribers that subs changed.
func (b *bus) changedLocked() {
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

// Subscribers returns how many subscriptions are open, and a channel closed
// at the next change of that number.
func (l *Log) Subscribers() (int, <-chan struct{}) {
	b := &l.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return len(b.subs), b.changed
}

func (b *bus) add(s *Sub) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	if b.subs == nil {
		b.subs = map[*Sub]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.changedLocked()
	return true
}

func (b *bus) remove(s *Sub) {
	b.mu.Lock()
	delete(b.subs, s)
	b.changedLocked()
	b.mu.Unlock()
}

// publish hands committed events to every subscriber, never blocking: a
// subscriber whose buffer is full is marked lagged and reads the log.
func (b *bus) publish(recs []Record) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		for _, r := range recs {
			// Once a record is dropped, none after it may enter the buffer:
			// the subscriber would take it and skip the gap. It reads the
			// log from its cursor instead, and then clears lagged.
			if !s.wants(r) || s.lagged.Load() {
				continue
			}
			select {
			case s.ch <- r:
			default:
				s.lagged.Store(true)
				s.falls.Add(1)
			}
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (b *bus) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		close(s.gone)
	}
	b.subs = nil
}

// Subscription is one subscriber's view of a log: every event after its
// cursor, in seq order, each once, whatever its speed; with an explicit
// cursor the log cannot follow, a Reset record first. Use it from one
// goroutine. Every backend's subscriptions are one.
type Subscription interface {
	// Next returns the next records (at least one, at most max), waiting
	// for them until ctx is done or the log closes.
	Next(ctx context.Context, max int) ([]Record, error)
	// Cursor is the seq of the last record returned.
	Cursor() int64
	// Close ends the subscription.
	Close()
}

var _ Subscription = (*Sub)(nil)

// Sub is the SQLite log's Subscription: a buffer filled as commits
// publish, and the log read again whenever it fell behind.
type Sub struct {
	l        *Log
	agent    string
	kinds    map[event.Kind]bool
	ch       chan Record
	wake     chan struct{}
	gone     chan struct{}
	lagged   atomic.Bool
	falls    atomic.Int64 // times its buffer was full and it fell back to the log
	cursor   int64
	explicit bool // the cursor was asked for: report when it is pruned
	pending  []Record
}

// Subscribe follows the events of agent ("" for all) after seq after, of
// the given kinds (all if none). explicit says the cursor came from the
// client: if retention has pruned past it, the first record is a Reset.
func (l *Log) Subscribe(agent string, after int64, explicit bool, kinds ...event.Kind) (Subscription, error) {
	s, err := l.subscribe(agent, after, explicit, kinds...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (l *Log) subscribe(agent string, after int64, explicit bool, kinds ...event.Kind) (*Sub, error) {
	s := &Sub{l: l, agent: agent, ch: make(chan Record, subBuffer), wake: make(chan struct{}, 1),
		gone: make(chan struct{}), cursor: after, explicit: explicit}
	if len(kinds) > 0 {
		s.kinds = map[event.Kind]bool{}
		for _, k := range kinds {
			s.kinds[k] = true
		}
	}
	// Registered first, then read from the log: nothing falls in between.
	s.lagged.Store(true)
	if !l.bus.add(s) {
		return nil, ErrClosed
	}
	return s, nil
}

func (s *Sub) wants(r Record) bool {
	return (s.agent == "" || r.Agent == s.agent) && (s.kinds == nil || s.kinds[r.Kind])
}

// Close ends the subscription.
func (s *Sub) Close() { s.l.bus.remove(s) }

// Cursor is the seq of the last record returned.
func (s *Sub) Cursor() int64 { return s.cursor }

// Next returns the next records (at least one, at most max), waiting for
// them until ctx is done or the log closes.
func (s *Sub) Next(ctx context.Context, max int) ([]Record, error) {
	for {
		if len(s.pending) == 0 && s.lagged.Swap(false) {
			// Behind: what the buffer holds is also in the log.
			for drained := false; !drained; {
				select {
				case <-s.ch:
				default:
					drained = true
				}
			}
			if err := s.catchUp(ctx); err != nil {
				return nil, err
			}
		}
		if len(s.pending) > 0 {
			n := min(max, len(s.pending))
			out := s.pending[:n:n]
			s.pending = s.pending[n:]
			s.cursor = out[n-1].Seq
			return out, nil
		}
		var out []Record
	take:
		for len(out) < max {
			select {
			case r := <-s.ch:
				if r.Seq > s.cursor {
					out = append(out, r)
					s.cursor = r.Seq
				}
			default:
				break take
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if s.lagged.Load() {
			continue
		}
		select {
		case <-s.wake:
		case <-s.gone:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// catchUp reads one page after the cursor from the log into pending. If the
// page is full, the subscriber stays lagged so the next call reads on. The
// retention floor and the head are read in the same snapshot as the page,
// so a prune can never remove events between the two reads unseen.
func (s *Sub) catchUp(ctx context.Context) error {
	q := Query{Agent: s.agent, After: s.cursor, Limit: pageSize}
	for k := range s.kinds {
		q.Kinds = append(q.Kinds, k)
	}
	var page []Record
	floor, head, err := s.l.scan(ctx, q, func(r Record) error {
		page = append(page, r)
		return nil
	})
	if err != nil {
		return err
	}
	var reset *Record
	if s.cursor, reset = Follow(s.agent, s.cursor, floor, head, s.explicit); reset != nil {
		s.pending = append(s.pending, *reset)
		s.explicit = false
	}
	s.pending = append(s.pending, page...)
	if len(page) == pageSize {
		s.lagged.Store(true)
	}
	return nil
}

// Follow is where a subscription of agent at cursor goes on, given the
// retention floor and the head read in the snapshot of its page, and the
// Reset it is told first, if any: a cursor below the floor (pruned: to a
// client's cursor, or one already following) or a client's cursor beyond
// the head. Every backend's subscriptions follow this one rule.
func Follow(agent string, cursor, floor, head int64, explicit bool) (int64, *Record) {
	reset := func(seq int64, reason string) *Record {
		body, _ := json.Marshal(ResetData{After: cursor, Oldest: floor + 1, Head: head, Reason: reason})
		return &Record{Seq: seq, Agent: agent, Kind: Reset, Body: body}
	}
	switch {
	case cursor < floor:
		if explicit || cursor > 0 {
			return floor, reset(floor, "retention")
		}
		return floor, nil
	case cursor > head && explicit:
		return head, reset(head, "beyond_head")
	}
	return cursor, nil
}

// Query selects stored events.
type Query struct {
	Agent string // "" for all
	After int64
	Kinds []event.Kind
	Limit int // 0: no limit
}

// Scan calls fn for every stored event matching q, oldest first.
func (l *Log) Scan(ctx context.Context, q Query, fn func(Record) error) error {
	_, _, err := l.scan(ctx, q, fn)
	return err
}

// scan is Scan, in one read transaction that also returns the retention
// floor and the head as of the same snapshot.
func (l *Log) scan(ctx context.Context, q Query, fn func(Record) error) (floor, head int64, err error) {
	var sb strings.Builder
	args := []any{q.After}
	sb.WriteString(`SELECT seq, agent, kind, body FROM events WHERE seq > ?`)
	if q.Agent != "" {
		sb.WriteString(` AND agent = ?`)
		args = append(args, q.Agent)
	}
	if len(q.Kinds) > 0 {
		sb.WriteString(` AND kind IN (?` + strings.Repeat(",?", len(q.Kinds)-1) + `)`)
		for _, k := range q.Kinds {
			args = append(args, string(k))
		}
	}
	sb.WriteString(` ORDER BY seq`)
	if q.Limit > 0 {
		sb.WriteString(` LIMIT ?`)
		args = append(args, q.Limit)
	}
	tx, err := l.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT floor, (SELECT COALESCE(MAX(seq), 0) FROM events) FROM retention WHERE id=1`).Scan(&floor, &head); err != nil {
		return 0, 0, err
	}
	head = max(head, floor)
	rows, err := tx.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var r Record
		var kind string
		if err := rows.Scan(&r.Seq, &r.Agent, &kind, &r.Body); err != nil {
			return 0, 0, err
		}
		r.Kind = event.Kind(kind)
		if err := fn(r); err != nil {
			return 0, 0, err
		}
	}
	return floor, head, rows.Err()
}

// RecentTurnsStart returns the seq of the turn.started event of agent's
// n-th latest turn (0 when it has had fewer than n turns): where a reader
// that wants only its recent turns begins.
func (l *Tables) RecentTurnsStart(ctx context.Context, agent string, n int) (int64, error) {
	var seq int64
	err := l.queryRow(ctx, `SELECT seq FROM events WHERE agent=? AND kind=? ORDER BY seq DESC LIMIT 1 OFFSET ?`,
		agent, string(event.TurnStarted), n-1).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// ErrNeverRan ends FollowTurn for an input that ended without a turn: its
// agent's inbox was closed.
var ErrNeverRan = errors.New("the message never ran: its agent's inbox was closed")

// TurnEvent is one event of a followed turn.
type TurnEvent struct {
	Kind event.Kind
	Data json.RawMessage
}

// FollowTurn follows the turn that runs input in:
// after each batch read from the log, each is called with the turn (""
// until it started) and that batch's events of it after its start, in
// order, until each reports done (at the turn's terminal event, say).
// Whenever quiet passes with nothing new, idle is called with the turn; an
// error from idle ends the follow with it. An input that ended without
// ever running ends it with ErrNeverRan.
func (l *Tables) FollowTurn(ctx context.Context, in Input, quiet time.Duration, idle func(turn string) error, each func(turn string, evs []TurnEvent) (done bool)) error {
	sub, err := l.subscribe(in.Agent, max(in.Seq-1, 0), false)
	if err != nil {
		return err
	}
	defer sub.Close()
	turn := ""
	var batch []TurnEvent
	for {
		qctx, cancel := context.WithTimeout(ctx, quiet)
		recs, err := sub.Next(qctx, 512)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if turn == "" {
				// By its id: a deleted agent's inputs move to its tombstone.
				cur, err := l.inputs(ctx, false, `WHERE id=?`, in.ID)
				if err == nil && (len(cur) == 0 || cur[0].State == "done" && cur[0].Turn == "") {
					return ErrNeverRan
				}
			}
			if err := idle(turn); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		batch = batch[:0]
		for _, rec := range recs {
			var e struct {
				Turn string          `json:"turn"`
				Data json.RawMessage `json:"data"`
			}
			if rec.Kind == Reset || json.Unmarshal(rec.Body, &e) != nil {
				continue
			}
			if turn == "" {
				var d event.InputData
				if (rec.Kind == event.TurnStarted || rec.Kind == event.InputSteered) && json.Unmarshal(e.Data, &d) == nil && d.Input == in.ID {
					turn = e.Turn
				}
				continue
			}
			if e.Turn == turn {
				batch = append(batch, TurnEvent{Kind: rec.Kind, Data: e.Data})
			}
		}
		if each(turn, batch) {
			return nil
		}
	}
}
