package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/taosagent/taosagent/internal/event"
)

// Tables is the store's contract over its tables, in SQL that both
// backends run: the catalog, the inputs and turns, the approvals and
// questions, the audit, metering, apps, schedules, hooks, tasks and
// notifications, and the projections that keep the tables in step with
// the events. A backend embeds it (the SQLite Log here; pgstore's Log on
// PostgreSQL) and gives it its readers' database, its dialect, its write
// transactions and its subscriptions; the events' own log (Append,
// Subscribe, Scan, Prune) is the backend's.
type Tables struct {
	db        *sql.DB
	dialect   Dialect
	update    func(ctx context.Context, fn func(*Tx) error) ([]event.Event, error)
	subscribe func(agent string, after int64, explicit bool, kinds ...event.Kind) (Subscription, error)
}

// NewTables is a backend's Tables: db is for reads, update runs a write
// transaction (the events appended through its Tx committed with it and
// published after), subscribe is the backend's Subscribe.
func NewTables(db *sql.DB, d Dialect, update func(context.Context, func(*Tx) error) ([]event.Event, error),
	subscribe func(agent string, after int64, explicit bool, kinds ...event.Kind) (Subscription, error)) Tables {
	return Tables{db: db, dialect: d, update: update, subscribe: subscribe}
}

// Dialect is what differs between the backends' SQL. Statements are
// written once, with ? for their arguments, in the SQL both accept; the
// dialect rebinds them and supplies the few expressions that differ.
type Dialect int

const (
	SQLite Dialect = iota
	Postgres
)

// rebind turns q's ? placeholders into PostgreSQL's $1, $2, … (outside
// string literals); SQLite takes q as it is.
func (d Dialect) rebind(q string) string {
	if d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// jsonText is the text of the top-level key of col, a column holding a
// JSON object as text.
func (d Dialect) jsonText(col, key string) string {
	if d == Postgres {
		return fmt.Sprintf("(%s::jsonb ->> '%s')", col, key)
	}
	return fmt.Sprintf("json_extract(%s, '$.%s')", col, key)
}

// eventInput is the input an event's body names (data.input), as a
// number: the input.accepted event of an input.
func (d Dialect) eventInput(col string) string {
	if d == Postgres {
		return fmt.Sprintf("(convert_from(%s, 'UTF8')::jsonb #>> '{data,input}')::bigint", col)
	}
	return fmt.Sprintf("json_extract(%s, '$.data.input')", col)
}

// Querier is what a transaction's statements run on: a connection or a
// database/sql transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// EventWriter is a backend's part of appending an event inside a write
// transaction: the seq it gets (NextSeq, called again if the event is not
// kept), its row, and Kept once the event and its projections are in.
type EventWriter interface {
	NextSeq(ctx context.Context) (int64, error)
	InsertEvent(ctx context.Context, e event.Event, body []byte) error
	Kept(e event.Event)
}

// Tx is a write transaction, given to the functions passed to Update.
// Everything done through it commits or rolls back as one.
type Tx struct {
	ctx  context.Context
	q    Querier
	d    Dialect
	w    EventWriter
	out  []event.Event
	recs []Record
}

// NewTx is a backend's write transaction over q.
func NewTx(ctx context.Context, q Querier, d Dialect, w EventWriter) *Tx {
	return &Tx{ctx: ctx, q: q, d: d, w: w}
}

// Appended is what was appended through t, with the records readers get.
func (t *Tx) Appended() ([]event.Event, []Record) { return t.out, t.recs }

// Truncate forgets what was appended through t after its first n events:
// a backend's savepoint rolled them back.
func (t *Tx) Truncate(n int) { t.out, t.recs = t.out[:n], t.recs[:n] }

// Exec runs a statement inside the transaction.
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	return t.q.ExecContext(t.ctx, t.d.rebind(query), args...)
}

// QueryRow runs a query inside the transaction.
func (t *Tx) QueryRow(query string, args ...any) *sql.Row {
	return t.q.QueryRowContext(t.ctx, t.d.rebind(query), args...)
}

// Query runs a query inside the transaction.
func (t *Tx) Query(query string, args ...any) (*sql.Rows, error) {
	return t.q.QueryContext(t.ctx, t.d.rebind(query), args...)
}

// Append assigns e the next seq, stores it and applies it to the
// projections; it returns e with its seq.
func (t *Tx) Append(e event.Event) (event.Event, error) {
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return e, fmt.Errorf("eventlog: %s event: data is not JSON", e.Kind)
	}
	seq, err := t.w.NextSeq(t.ctx)
	if err != nil {
		return e, err
	}
	e.Seq = seq
	body := encode(make([]byte, 0, 128+len(e.Data)), e)
	if err := t.w.InsertEvent(t.ctx, e, body); err != nil {
		return e, err
	}
	if err := project(t, e); err != nil {
		return e, err
	}
	t.w.Kept(e)
	t.out = append(t.out, e)
	t.recs = append(t.recs, Record{Seq: e.Seq, Agent: e.Agent, Kind: e.Kind, Body: body})
	return e, nil
}

// query, queryRow and exec run a statement on the readers' database.
func (l *Tables) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return l.db.QueryContext(ctx, l.dialect.rebind(q), args...)
}

func (l *Tables) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return l.db.QueryRowContext(ctx, l.dialect.rebind(q), args...)
}
