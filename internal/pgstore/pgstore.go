// Package pgstore is the event log on PostgreSQL, for several daemons
// sharing one database (issue 32): so far its events, appended durably
// and read by cursor, with seqs given out in commit order so that a
// reader following by cursor never skips an event committed after it
// read; and the agents' leases, with fencing tokens that the database
// checks on each of an owner's writes. The rest of the store's contract (eventlog.Store) comes next; this
// package is not wired into the daemon yet.
package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

//go:embed migrations/*.sql
var migrations embed.FS

// channel is the LISTEN/NOTIFY channel a commit wakes readers on; a
// notification is only a wake-up: readers read by cursor (sub.go).
const channel = "taosagent_events"

// Log is the event log in one PostgreSQL database.
type Log struct {
	eventlog.Tables // the store's tables, in the SQL both backends run

	pool   *pgxpool.Pool
	db     *sql.DB // the same pool, through database/sql, for the Tables
	waker  waker
	closed chan struct{}
	// head and floor are the newest seq and the retention floor this log
	// knows of: read at Open, moved by its own commits and prunes, by the
	// commits other daemons notify, and by what its subscriptions read.
	head, floor atomic.Int64
	closing     sync.Once

	async       chan asyncAppend // AppendAsync's queue
	asyncDone   chan struct{}
	asyncMu     sync.RWMutex // guards asyncClosed against sends on async
	asyncClosed bool

	rawMu sync.Mutex
	raws  []eventlog.Raw // for the next commit

	subs subCount

	fence atomic.Pointer[Lease] // set by Fence: every write checks it
}

// ConnectTimeout bounds how long Open waits for the database.
const ConnectTimeout = 10 * time.Second

// Open connects to the database of dsn (a postgres:// URL or key=value
// pairs) and brings its schema up to date. A wrong or unreachable
// database is an error naming what failed, within ConnectTimeout.
func Open(ctx context.Context, dsn string) (*Log, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: the database's address: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(cctx, cfg)
	if err == nil {
		err = pool.Ping(cctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, fmt.Errorf("pgstore: cannot reach the database at %s: %w", where(cfg), err)
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := migrate(cctx, db); err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("pgstore: the schema of %s: %w", where(cfg), err)
	}
	l := &Log{pool: pool, db: db, closed: make(chan struct{}), async: make(chan asyncAppend, 1024), asyncDone: make(chan struct{})}
	l.Tables = eventlog.NewTables(db, eventlog.Postgres, l.Update, l.Subscribe)
	go l.appender()
	var head, floor int64
	if err := pool.QueryRow(cctx, `SELECT (SELECT seq FROM head WHERE id = 1), (SELECT floor FROM retention WHERE id = 1)`).Scan(&head, &floor); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: the head of %s: %w", where(cfg), err)
	}
	l.saw(head)
	l.floor.Store(floor)
	lctx, stop := context.WithCancel(context.Background())
	l.waker = waker{ch: make(chan struct{}), stop: stop, done: make(chan struct{}), listening: make(chan struct{})}
	go l.listen(lctx)
	// Open returns once commits wake its subscriptions (they would poll
	// meanwhile).
	select {
	case <-l.waker.listening:
	case <-cctx.Done():
		l.Close()
		return nil, fmt.Errorf("pgstore: cannot listen on %s: %w", where(cfg), cctx.Err())
	}
	return l, nil
}

var _ eventlog.Store = (*Log)(nil)

// where names the database of cfg, without its password.
func where(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s:%d/%s (user %s)", c.Host, c.Port, c.Database, c.User)
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Close ends the subscriptions and closes the connections; again, it
// does nothing.
func (l *Log) Close() error {
	l.closing.Do(func() {
		l.asyncMu.Lock()
		l.asyncClosed = true
		close(l.async)
		l.asyncMu.Unlock()
		<-l.asyncDone
		close(l.closed)
		l.waker.stop()
		<-l.waker.done
		l.db.Close()
		l.pool.Close()
	})
	return nil
}

// saw moves the known head to seq, never back.
func (l *Log) saw(seq int64) {
	for {
		h := l.head.Load()
		if seq <= h || l.head.CompareAndSwap(h, seq) {
			return
		}
	}
}

// Append stores evs, in order, in one transaction, each given the next
// seq and applied to the projections, and returns them with their seqs
// once committed (durable before visible: no reader sees an event before
// its commit).
func (l *Log) Append(ctx context.Context, evs ...event.Event) ([]event.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	return l.appendChecked(ctx, evs, nil)
}

// appendChecked is Append, with check run first in the transaction (a
// fence).
func (l *Log) appendChecked(ctx context.Context, evs []event.Event, check func(*eventlog.Tx) error) ([]event.Event, error) {
	return l.Update(ctx, func(tx *eventlog.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		for _, e := range evs {
			if _, err := tx.Append(e); err != nil {
				return fmt.Errorf("pgstore: append: %w", err)
			}
		}
		return nil
	})
}

// AppendAsync queues evs and returns without waiting for the commit; then,
// if not nil, runs after it with the events and their seqs. Events of
// successive calls are stored in call order.
func (l *Log) AppendAsync(evs []event.Event, then func([]event.Event, error)) {
	l.asyncMu.RLock()
	defer l.asyncMu.RUnlock()
	if l.asyncClosed {
		if then != nil {
			then(nil, eventlog.ErrClosed)
		}
		return
	}
	l.async <- asyncAppend{evs: evs, then: then}
}

type asyncAppend struct {
	evs  []event.Event
	then func([]event.Event, error)
}

// appender commits AppendAsync's requests one after another, in order.
func (l *Log) appender() {
	defer close(l.asyncDone)
	for r := range l.async {
		out, err := l.Append(context.Background(), r.evs...)
		if r.then != nil {
			r.then(out, err)
		}
	}
}

// AddRaw keeps opencode's raw events for the next commit (best effort: a
// failed commit drops them).
func (l *Log) AddRaw(raws ...eventlog.Raw) {
	l.rawMu.Lock()
	l.raws = append(l.raws, raws...)
	l.rawMu.Unlock()
}

// Update runs fn in one transaction; the events it appends (each given
// the next seq: the head's row stays locked until the commit, so the next
// writer takes its seqs after this one committed) are committed with it,
// their readers woken, and returned. If fn fails, nothing it did is kept
// and its error is returned. Once begun, the transaction commits or fails
// whatever ctx says, so that the caller's view of what is stored is exact.
func (l *Log) Update(ctx context.Context, fn func(*eventlog.Tx) error) ([]event.Event, error) {
	ctx = context.WithoutCancel(ctx)
	stx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("pgstore: begin: %w", err)
	}
	defer stx.Rollback()
	tx := eventlog.NewTx(ctx, stx, eventlog.Postgres, writer{stx})
	if le := l.fence.Load(); le != nil {
		if err := checkLease(tx, *le); err != nil {
			return nil, err
		}
	}
	if err := fn(tx); err != nil {
		return nil, err
	}
	out, _ := tx.Appended()
	l.rawMu.Lock()
	raws := l.raws
	l.raws = nil
	l.rawMu.Unlock()
	for _, r := range raws {
		if _, err := stx.ExecContext(ctx, `INSERT INTO raw_events(agent, time, type, body) VALUES ($1,$2,$3,$4)`, r.Agent, r.Time.UnixNano(), r.Type, r.Body); err != nil {
			break
		}
	}
	if len(out) > 0 {
		if _, err := stx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, strconv.FormatInt(out[len(out)-1].Seq, 10)); err != nil {
			return nil, fmt.Errorf("pgstore: notify: %w", err)
		}
	}
	if err := stx.Commit(); err != nil {
		return nil, fmt.Errorf("pgstore: commit: %w", err)
	}
	if len(out) > 0 {
		l.saw(out[len(out)-1].Seq)
	}
	return out, nil
}

// writer gives a transaction's events their seqs and rows.
type writer struct{ tx *sql.Tx }

func (w writer) NextSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := w.tx.QueryRowContext(ctx, `UPDATE head SET seq = seq + 1 WHERE id = 1 RETURNING seq`).Scan(&seq)
	return seq, err
}

func (w writer) InsertEvent(ctx context.Context, e event.Event, body []byte) error {
	_, err := w.tx.ExecContext(ctx, `INSERT INTO events(seq, agent, turn, kind, time, body) VALUES ($1,$2,$3,$4,$5,$6)`,
		e.Seq, e.Agent, e.Turn, string(e.Kind), e.Time.UnixNano(), body)
	return err
}

func (writer) Kept(event.Event) {}

// QuickCheck reports what is damaged in the store: on PostgreSQL, only
// whether it answers (the server checks its own pages).
func (l *Log) QuickCheck(ctx context.Context) ([]string, error) {
	if err := l.pool.Ping(ctx); err != nil {
		return []string{"the database does not answer: " + err.Error()}, nil
	}
	return nil, nil
}

// Head is the seq of the newest event this log knows to be committed
// (its own, and other daemons' as they notify or its readers read).
func (l *Log) Head() int64 { return l.head.Load() }

// Floor is the retention floor: events up to it were pruned.
func (l *Log) Floor() int64 { return l.floor.Load() }

// Prune removes the events older than before (the oldest seqs, up to the
// newest of them) and moves the floor there; a subscription with an older
// explicit cursor gets a Reset; opencode's raw events older than
// rawBefore go too.
func (l *Log) Prune(ctx context.Context, before, rawBefore time.Time) (int64, error) {
	var n, floor int64
	_, err := l.Update(ctx, func(tx *eventlog.Tx) error {
		if _, err := tx.Exec(`DELETE FROM raw_events WHERE time < ?`, rawBefore.UnixNano()); err != nil {
			return err
		}
		var upto sql.NullInt64
		if err := tx.QueryRow(`SELECT MAX(seq) FROM events WHERE time < ?`, before.UnixNano()).Scan(&upto); err != nil || !upto.Valid {
			return err
		}
		if err := tx.QueryRow(`SELECT floor FROM retention WHERE id = 1 FOR UPDATE`).Scan(&floor); err != nil || upto.Int64 <= floor {
			return err
		}
		res, err := tx.Exec(`DELETE FROM events WHERE seq <= ?`, upto.Int64)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		floor = upto.Int64
		_, err = tx.Exec(`UPDATE retention SET floor = ? WHERE id = 1`, floor)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: prune: %w", err)
	}
	for {
		f := l.floor.Load()
		if floor <= f || l.floor.CompareAndSwap(f, floor) {
			break
		}
	}
	return n, nil
}

// Scan calls fn for every stored event matching q, oldest first.
func (l *Log) Scan(ctx context.Context, q eventlog.Query, fn func(eventlog.Record) error) error {
	return scan(ctx, l.pool, q, fn)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func scan(ctx context.Context, db querier, q eventlog.Query, fn func(eventlog.Record) error) error {
	sql, args := `SELECT seq, agent, kind, body FROM events WHERE seq > $1`, []any{q.After}
	if q.Agent != "" {
		sql += ` AND agent = $2`
		args = append(args, q.Agent)
	}
	if len(q.Kinds) > 0 {
		kinds := make([]string, len(q.Kinds))
		for i, k := range q.Kinds {
			kinds[i] = string(k)
		}
		sql += fmt.Sprintf(` AND kind = ANY($%d)`, len(args)+1)
		args = append(args, kinds)
	}
	sql += ` ORDER BY seq`
	if q.Limit > 0 {
		sql += fmt.Sprintf(` LIMIT %d`, q.Limit)
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r eventlog.Record
		var kind string
		if err := rows.Scan(&r.Seq, &r.Agent, &kind, &r.Body); err != nil {
			return err
		}
		r.Kind = event.Kind(kind)
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Follow calls fn with every event of agent ("" for all) after seq
// after, in order, each once, as they are committed, until ctx ends or fn
// fails (its error is Follow's).
func (l *Log) Follow(ctx context.Context, agent string, after int64, fn func([]eventlog.Record) error) error {
	sub, err := l.Subscribe(agent, after, false)
	if err != nil {
		return err
	}
	defer sub.Close()
	for {
		recs, err := sub.Next(ctx, pageSize)
		if err != nil {
			return err
		}
		if err := fn(recs); err != nil {
			return err
		}
	}
}
