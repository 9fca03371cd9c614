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
	"errors"
	"fmt"
	"io/fs"
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

	pool  *pgxpool.Pool
	db    *sql.DB // the same pool, through database/sql, for the Tables
	waker waker
	// reqWaker wakes the cluster's requests' waiters and owners
	// (requests.go).
	reqWaker waker
	closed   chan struct{}
	// head and floor are the newest seq and the retention floor this log
	// knows of: read at Open, moved by its own commits and prunes, by the
	// commits other daemons notify, and by what its subscriptions read.
	head, floor atomic.Int64
	closing     sync.Once

	reqs       chan *request // the writer's queue (writer.go)
	writerDone chan struct{}
	reqMu      sync.RWMutex // guards reqsClosed against sends on reqs
	reqsClosed bool
	commits    atomic.Int64 // transactions the writer committed
	batched    atomic.Int64 // the requests they carried

	rawMu sync.Mutex
	raws  []eventlog.Raw // for the next commit

	subs subCount

	fence      atomic.Pointer[Lease]                      // set by Fence: every write checks it
	agentFence atomic.Pointer[func(string) (Lease, bool)] // set by FenceAgents: an owner's writes check it
}

// ConnectTimeout bounds how long Open waits for the database.
const ConnectTimeout = 10 * time.Second

// Open connects to the database of dsn (a postgres:// URL or key=value
// pairs) and brings its schema up to date. A wrong or unreachable
// database is an error naming what failed, within ConnectTimeout.
func Open(ctx context.Context, dsn string) (*Log, error) {
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	pool, cfg, err := connect(cctx, dsn, false)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := migrate(cctx, db); err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("pgstore: the schema of %s: %w", where(cfg), err)
	}
	l := &Log{pool: pool, db: db, closed: make(chan struct{}), reqs: make(chan *request, 1024), writerDone: make(chan struct{})}
	l.Tables = eventlog.NewTables(db, eventlog.Postgres, l.Update, l.Subscribe)
	go l.writer()
	var head, floor int64
	if err := pool.QueryRow(cctx, `SELECT (SELECT seq FROM head WHERE id = 1), (SELECT floor FROM retention WHERE id = 1)`).Scan(&head, &floor); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: the head of %s: %w", where(cfg), err)
	}
	l.saw(head)
	l.floor.Store(floor)
	lctx, stop := context.WithCancel(context.Background())
	l.waker = waker{ch: make(chan struct{}), stop: stop, done: make(chan struct{}), listening: make(chan struct{})}
	l.reqWaker = waker{ch: make(chan struct{})}
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

// connect opens a pool on dsn (read only if readOnly) and checks that
// the database answers before ctx ends: a wrong or unreachable database
// is an error naming it, without its password.
func connect(ctx context.Context, dsn string, readOnly bool) (*pgxpool.Pool, *pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: the database's address: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	if readOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, nil, fmt.Errorf("pgstore: cannot reach the database at %s: %w", where(cfg), err)
	}
	return pool, cfg, nil
}

// where names the database of cfg, without its password.
func where(cfg *pgxpool.Config) string { return whereConn(cfg.ConnConfig) }

func whereConn(c *pgx.ConnConfig) string {
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
		l.reqMu.Lock()
		l.reqsClosed = true
		close(l.reqs)
		l.reqMu.Unlock()
		<-l.writerDone
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

// querier is a pool, a connection or a transaction.
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

// Reader is the store's tables on a database, read only: for the
// recovery tools (doctor), which must not write to a database a daemon
// holds. It makes no table (no migration), takes no lease, and every write
// through it is eventlog.ErrReadOnly.
type Reader struct {
	eventlog.Tables
	db   *sql.DB
	pool *pgxpool.Pool
}

// OpenReader connects to dsn, read only, within ConnectTimeout. A
// database no daemon has made its tables in yet is an error saying so.
func OpenReader(ctx context.Context, dsn string) (*Reader, error) {
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	pool, cfg, err := connect(cctx, dsn, true)
	if err != nil {
		return nil, err
	}
	var made bool
	if err := pool.QueryRow(cctx, `SELECT to_regclass('agents') IS NOT NULL`).Scan(&made); err != nil || !made {
		pool.Close()
		if err == nil {
			err = errors.New("no daemon has made its tables there yet")
		}
		return nil, fmt.Errorf("pgstore: the database at %s: %w", where(cfg), err)
	}
	r := &Reader{db: stdlib.OpenDBFromPool(pool), pool: pool}
	r.Tables = eventlog.NewTables(r.db, eventlog.Postgres,
		func(context.Context, func(*eventlog.Tx) error) ([]event.Event, error) {
			return nil, eventlog.ErrReadOnly
		},
		func(string, int64, bool, ...event.Kind) (eventlog.Subscription, error) {
			return nil, eventlog.ErrReadOnly
		})
	return r, nil
}

// Close closes the connections.
func (r *Reader) Close() error {
	r.db.Close()
	r.pool.Close()
	return nil
}
