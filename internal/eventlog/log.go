// Package eventlog is taosagent's durable store: providers, agents, the
// inbox, turns, normalized events, raw opencode events, approvals and the
// audit trail, in one SQLite database in WAL mode.
//
// Every write goes through one writer goroutine, which groups whatever
// requests are waiting into a single transaction: one fsync commits them
// all. Only after the commit does the writer hand the new events to
// subscribers, so nothing is ever seen that is not durable. Events get a
// global, strictly increasing seq.
//
// The turns, inputs and approvals tables are projections of the events:
// the writer updates them in the same transaction as the event that
// changes them (turn.started, final, error, permission.asked, …), so they
// can never disagree with the log, not even after a crash.
package eventlog

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/taosagent/taosagent/internal/event"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Gather appends to batch what already waits on ch, without waiting, up
// to max in all: a writer's group commit takes every request that came
// while it committed the last one.
func Gather[T any](ch <-chan T, batch []T, max int) []T {
	for len(batch) < max {
		select {
		case r, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// maxBatch bounds the requests one transaction takes.
const maxBatch = 4096

// ErrClosed: the log was closed.
var ErrClosed = errors.New("eventlog: closed")

// ErrReadOnly: a write to a log opened with OpenReadOnly.
var ErrReadOnly = errors.New("eventlog: opened read-only")

// SchemaVersion is the schema this build writes (its newest migration).
const SchemaVersion = 14

// OpenReadOnly opens the database at path for reading only, as the
// recovery tools do while the daemon may be down or broken: it creates
// nothing, never migrates, and never writes (SQLite's read-only mode;
// every write of the Log fails with ErrReadOnly). A database of a newer
// schema than this build knows is refused, as is a file that is not one.
func OpenReadOnly(path string) (*Log, int64, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, 0, fmt.Errorf("eventlog: %w", err)
	}
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, 0, fmt.Errorf("eventlog: %w", err)
	}
	db.SetMaxOpenConns(4)
	var version int64
	if err := db.QueryRow(`SELECT COALESCE(MAX(version_id),0) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("eventlog: %s is not a taosagent database: %w", path, err)
	}
	if version > SchemaVersion {
		db.Close()
		return nil, version, fmt.Errorf("eventlog: %s has schema version %d, newer than this taosagent knows (%d)", path, version, SchemaVersion)
	}
	l := &Log{path: path, readOnly: true, closed: true}
	l.Tables = NewTables(db, SQLite, l.Update, l.Subscribe)
	var head, floor int64
	db.QueryRow(`SELECT COALESCE(MAX(seq),0) FROM events`).Scan(&head)
	db.QueryRow(`SELECT floor FROM retention WHERE id=1`).Scan(&floor)
	l.head.Store(max(head, floor))
	l.floor.Store(floor)
	return l, version, nil
}

// Log is the open database. Its methods are safe for concurrent use.
type Log struct {
	Tables // the store's tables, read through the readers' database

	path string
	wdb  *sql.DB // the writer's single connection
	ckdb *sql.DB // the checkpointer's connection
	w    *sql.Conn
	ins  *sql.Stmt // insert an event
	raw  *sql.Stmt // insert a raw event

	reqs    chan *request
	stop    chan struct{}
	done    chan struct{}
	ckDone  chan struct{}
	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	nextSeq int64        // owned by the writer
	head    atomic.Int64 // the last committed seq
	floor   atomic.Int64 // events up to here were pruned
	bus     bus

	ckFinish chan struct{} // the checkpointer asks the writer to finish

	readOnly bool // opened by OpenReadOnly: no writer, no checkpointer

	// Commits counts transactions, Batched the requests they carried.
	commits, batched atomic.Int64

	raws rawBuffer // raw events waiting for the next commit
}

// Open opens (creating it, mode 0600) the database at path and migrates it.
func Open(path string) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	f.Close()
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		// FULL: a commit is on disk when it returns (WAL fsync per commit).
		q.Add("_pragma", "synchronous(FULL)")
		for _, e := range extra {
			q.Add("_pragma", e)
		}
		return "file:" + path + "?" + q.Encode()
	}
	l := &Log{path: path, reqs: make(chan *request, 1024), stop: make(chan struct{}), done: make(chan struct{}), ckDone: make(chan struct{}), ckFinish: make(chan struct{}, 1)}
	// Checkpoints run on a connection of their own (see checkpointer), off
	// the commit path: the writer's commits then cost one WAL fsync each.
	l.wdb, err = sql.Open("sqlite", dsn("wal_autocheckpoint(0)"))
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	l.wdb.SetMaxOpenConns(1)
	fail := func(err error) (*Log, error) {
		if l.db != nil {
			l.db.Close()
		}
		l.wdb.Close()
		return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fail(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, l.wdb, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fail(err)
	}
	if _, err := p.Up(context.Background()); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	if l.w, err = l.wdb.Conn(ctx); err != nil {
		return fail(err)
	}
	if l.ins, err = l.w.PrepareContext(ctx, `INSERT INTO events(seq, agent, turn, kind, time, body) VALUES (?,?,?,?,?,?)`); err != nil {
		return fail(err)
	}
	if l.raw, err = l.w.PrepareContext(ctx, `INSERT INTO raw_events(agent, time, type, body) VALUES (?,?,?,?)`); err != nil {
		return fail(err)
	}
	l.db, err = sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		return fail(err)
	}
	l.db.SetMaxOpenConns(8)
	l.Tables = NewTables(l.db, SQLite, l.Update, l.Subscribe)
	var head, floor int64
	if err := l.db.QueryRow(`SELECT COALESCE(MAX(seq),0) FROM events`).Scan(&head); err != nil {
		return fail(err)
	}
	if err := l.db.QueryRow(`SELECT floor FROM retention WHERE id=1`).Scan(&floor); err != nil {
		return fail(err)
	}
	head = max(head, floor)
	l.nextSeq = head + 1
	l.head.Store(head)
	l.floor.Store(floor)
	if l.ckdb, err = sql.Open("sqlite", dsn()); err != nil {
		return fail(err)
	}
	l.ckdb.SetMaxOpenConns(1)
	go l.writer()
	go l.checkpointer()
	return l, nil
}

// checkpointer keeps the WAL small and rewritten in place. Every second it
// copies the WAL back into the database (PASSIVE, on its own connection, so
// commits go on meanwhile), then asks the writer to finish the job between
// two transactions: only the few frames committed during the copy are left,
// and once none is left SQLite restarts the WAL from its start. Commits then
// overwrite the WAL instead of growing it, and the fsync of an overwrite
// costs about half that of an append here; under a steady stream, a WAL that
// is never wholly copied would otherwise grow without bound.
func (l *Log) checkpointer() {
	defer close(l.ckDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.ckdb.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			select {
			case l.ckFinish <- struct{}{}:
			default:
			}
		case <-l.stop:
			return
		}
	}
}

// checkpointEvery is how often the WAL is copied back into the database; a
// variable for tests.
var checkpointEvery = time.Second

// Close stops the writer after the requests already sent, ends every
// subscription and closes the database.
func (l *Log) Close() error {
	if l.readOnly {
		return l.db.Close()
	}
	l.flushRaw() // the raw events still held
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
	close(l.stop)
	<-l.ckDone
	l.ckdb.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	l.bus.closeAll()
	l.ins.Close()
	l.raw.Close()
	l.w.Close()
	err := errors.Join(l.wdb.Close(), l.db.Close(), l.ckdb.Close())
	return err
}

// Head is the seq of the last committed event, 0 if none.
func (l *Log) Head() int64 { return l.head.Load() }

// Floor is the highest seq removed by retention: events after it are kept.
func (l *Log) Floor() int64 { return l.floor.Load() }

// Stats reports commits and the requests they carried, for benchmarks.
func (l *Log) Stats() (commits, requests int64) { return l.commits.Load(), l.batched.Load() }

// Raw is one opencode event as received, kept for a bounded time so that
// normalization can be replayed.
type Raw struct {
	Agent string
	Time  time.Time
	Type  string
	Body  []byte
}

// sqliteWriter gives the writer's transactions their seqs and rows.
type sqliteWriter struct{ l *Log }

func (w sqliteWriter) NextSeq(context.Context) (int64, error) { return w.l.nextSeq, nil }

func (w sqliteWriter) InsertEvent(ctx context.Context, e event.Event, body []byte) error {
	_, err := w.l.ins.ExecContext(ctx, e.Seq, e.Agent, e.Turn, string(e.Kind), e.Time.UnixNano(), body)
	return err
}

func (w sqliteWriter) Kept(event.Event) { w.l.nextSeq++ }

type request struct {
	then   func([]event.Event, error) // AppendAsync's callback
	events []event.Event
	fn     func(*Tx) error
	out    []event.Event
	recs   []Record
	err    error
	done   chan struct{}
}

func (l *Log) send(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	if l.readOnly {
		return ErrReadOnly
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	l.mu.RUnlock()
	// Once sent, the request is committed or failed whatever ctx says:
	// waiting keeps the caller's view of what is stored exact.
	<-r.done
	return r.err
}

// Append stores events, commits them and only then publishes them; it
// returns them with their seqs. Concurrent calls share commits.
func (l *Log) Append(ctx context.Context, evs ...event.Event) ([]event.Event, error) {
	r := &request{events: evs}
	if err := l.send(ctx, r); err != nil {
		return nil, err
	}
	return r.out, nil
}

// AppendAsync queues events and returns without waiting for the commit
// (it blocks only while the writer's queue is full). then, if not nil, runs
// on the writer goroutine after the commit and the fan-out, with the events
// and their seqs; it must be quick. Events of successive calls are stored
// in call order, after those of earlier Append and Update calls.
func (l *Log) AppendAsync(evs []event.Event, then func([]event.Event, error)) {
	r := &request{events: evs, then: then, done: make(chan struct{})}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		if then != nil {
			then(nil, ErrClosed)
		}
		return
	}
	l.reqs <- r
}

// Update runs fn in a write transaction; the events it appends are
// published after the commit and returned. If fn fails, nothing it did is
// kept and its error is returned.
func (l *Log) Update(ctx context.Context, fn func(*Tx) error) ([]event.Event, error) {
	r := &request{fn: fn}
	if err := l.send(ctx, r); err != nil {
		return nil, err
	}
	return r.out, nil
}

func (l *Log) writer() {
	defer close(l.done)
	batch := make([]*request, 0, 64)
	for {
		var r *request
		var ok bool
		select {
		case r, ok = <-l.reqs:
		case <-l.ckFinish:
			// Between transactions, the only writer: this pass copies what
			// the checkpointer's left, so the next commit restarts the WAL.
			l.w.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
			continue
		}
		if !ok {
			return
		}
		batch = Gather(l.reqs, append(batch[:0], r), maxBatch)
		l.commit(batch)
	}
}

// commit writes batch in one transaction, then publishes and releases.
func (l *Log) commit(batch []*request) {
	ctx := context.Background()
	seq0 := l.nextSeq
	fail := func(err error) {
		l.w.ExecContext(ctx, "ROLLBACK")
		l.nextSeq = seq0
		for _, r := range batch {
			r.out, r.err = nil, err
			r.finish()
		}
	}
	raws := l.raws.take()
	defer l.raws.giveBack(raws)
	if len(raws) == 0 && empty(batch) {
		for _, r := range batch {
			r.finish() // a flush of raw events that an earlier commit took
		}
		return
	}
	if _, err := l.w.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		fail(err)
		return
	}
	l.storeRaw(ctx, raws)
	for _, r := range batch {
		tx := NewTx(ctx, l.w, SQLite, sqliteWriter{l})
		if r.fn != nil {
			r.err = l.savepoint(tx, r.fn)
		} else if err := l.plain(tx, r); err != nil {
			// Plain appends fail only when the database does: give up the
			// whole transaction.
			fail(fmt.Errorf("eventlog: append: %w", err))
			return
		}
		if r.err == nil {
			r.out, r.recs = tx.out, tx.recs
		}
	}
	if _, err := l.w.ExecContext(ctx, "COMMIT"); err != nil {
		fail(fmt.Errorf("eventlog: commit: %w", err))
		return
	}
	l.commits.Add(1)
	l.batched.Add(int64(len(batch)))
	l.head.Store(l.nextSeq - 1)
	for _, r := range batch {
		if r.err == nil && len(r.recs) > 0 {
			l.bus.publish(r.recs)
		}
	}
	for _, r := range batch {
		r.finish()
	}
}

// empty says whether no request of batch has anything to store.
func empty(batch []*request) bool {
	for _, r := range batch {
		if len(r.events) > 0 || r.fn != nil {
			return false
		}
	}
	return true
}

// storeRaw inserts raw events into the open transaction, best effort: the
// first failure drops the rest, and the events of the commit go on.
func (l *Log) storeRaw(ctx context.Context, raws []Raw) {
	for i, raw := range raws {
		if _, err := l.raw.ExecContext(ctx, raw.Agent, raw.Time.UnixNano(), raw.Type, raw.Body); err != nil {
			l.raws.mu.Lock()
			l.raws.dropped += int64(len(raws) - i)
			l.raws.mu.Unlock()
			return
		}
	}
}

func (r *request) finish() {
	if r.then != nil {
		r.then(r.out, r.err)
	}
	close(r.done)
}

// plain appends a request's events.
func (l *Log) plain(tx *Tx, r *request) error {
	for _, e := range r.events {
		if _, err := tx.Append(e); err != nil {
			return err
		}
	}
	return nil
}

// savepoint runs fn so that its failure undoes only its own writes.
func (l *Log) savepoint(tx *Tx, fn func(*Tx) error) error {
	seq := l.nextSeq
	if _, err := l.w.ExecContext(tx.ctx, "SAVEPOINT op"); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		l.w.ExecContext(tx.ctx, "ROLLBACK TO op")
		l.w.ExecContext(tx.ctx, "RELEASE op")
		l.nextSeq = seq
		tx.Truncate(0)
		return err
	}
	_, err := l.w.ExecContext(tx.ctx, "RELEASE op")
	return err
}

// encode appends e as JSON, the same document json.Marshal makes of it,
// without reflection: Append runs once per event on the writer. Data is
// trusted to be valid compact JSON (event.New and the codec marshal it).
func encode(buf []byte, e event.Event) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendInt(buf, e.Seq, 10)
	buf = append(buf, `,"agent":`...)
	buf = appendString(buf, e.Agent)
	buf = append(buf, `,"session":`...)
	buf = appendString(buf, e.Session)
	buf = append(buf, `,"turn":`...)
	buf = appendString(buf, e.Turn)
	if e.TraceID != "" {
		buf = append(buf, `,"trace_id":`...)
		buf = appendString(buf, e.TraceID)
	}
	buf = append(buf, `,"time":"`...)
	buf = e.Time.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","kind":`...)
	buf = appendString(buf, string(e.Kind))
	buf = append(buf, `,"data":`...)
	if len(e.Data) == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, e.Data...)
	}
	if e.Synthetic {
		buf = append(buf, `,"synthetic":true`...)
	}
	return append(buf, '}')
}

// appendString appends s as a JSON string: plain ASCII directly, anything
// else through encoding/json.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// QuickCheck runs SQLite's quick_check: the problems it finds, none when
// the file is sound.
func (l *Log) QuickCheck(ctx context.Context) ([]string, error) {
	rows, err := l.db.QueryContext(ctx, `PRAGMA quick_check(20)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		if s != "ok" {
			out = append(out, s)
		}
	}
	return out, rows.Err()
}

// Copy writes a consistent copy of the database at src to dst (which must
// not exist, mode 0600): SQLite's VACUUM INTO, a snapshot of one instant
// taken beside a running daemon's writer. It reads src only (SQLite's
// read-only mode forbids VACUUM INTO itself, so its connection is an
// ordinary one that never writes). A backup's event log.
func Copy(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	q := url.Values{}
	q.Add("mode", "rw")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", "file:"+src+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("eventlog: copy %s: %w", src, err)
	}
	return os.Chmod(dst, 0o600)
}
