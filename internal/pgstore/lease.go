package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// Lease is a daemon's ownership of an agent: only the owner runs the
// agent and writes for it, with Token; times are the database's.
type Lease struct {
	Agent   string
	Owner   string // the daemon's id
	Token   int64  // grows with each new owner (or each new lease after one lapsed)
	Expires time.Time
	// Previous is the owner of the lease before Acquire took it ("" if
	// none ever held it): another daemon's name after a takeover.
	Previous string
	// Live is whether the lease had not expired when it was read
	// (Leases).
	Live bool `json:"live"`
}

var (
	// ErrLeased: another daemon holds the agent's lease.
	ErrLeased = errors.New("leased by another daemon")
	// ErrLost: the lease expired or another daemon took it; its owner
	// stops the agent and writes nothing more for it.
	ErrLost = errors.New("the lease was lost")
	// ErrFenced: a write carried a token that is no longer the agent's
	// (a newer lease exists, or this one expired); nothing was written.
	ErrFenced = errors.New("fenced: the writer's lease is not the agent's current one")
)

// Acquire takes agent's lease for owner for ttl: when no daemon holds it,
// or its lease expired (a new, greater token), or owner already holds it
// (the same token: a daemon back within its lease re-adopts its agent).
// Held by another, it is ErrLeased, naming the holder.
func (l *Log) Acquire(ctx context.Context, agent, owner string, ttl time.Duration) (Lease, error) {
	le := Lease{Agent: agent, Owner: owner}
	err := l.pool.QueryRow(ctx, `
		WITH prev AS (SELECT owner FROM leases WHERE agent = $1)
		INSERT INTO leases AS l (agent, owner, token, expires) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
		ON CONFLICT (agent) DO UPDATE SET
			owner = excluded.owner,
			token = CASE WHEN l.owner = excluded.owner AND l.expires >= now() THEN l.token ELSE l.token + 1 END,
			expires = excluded.expires
		WHERE l.expires < now() OR l.owner = excluded.owner
		RETURNING token, expires, COALESCE((SELECT owner FROM prev), '')`, agent, owner, ttl.Milliseconds()).Scan(&le.Token, &le.Expires, &le.Previous)
	if errors.Is(err, pgx.ErrNoRows) {
		var holder string
		var until time.Time
		if err := l.pool.QueryRow(ctx, `SELECT owner, expires FROM leases WHERE agent = $1`, agent).Scan(&holder, &until); err != nil {
			return Lease{}, fmt.Errorf("pgstore: lease of %s: %w", agent, err)
		}
		what := "agent " + agent
		if agent == Everything {
			what = "the database"
		}
		return Lease{}, fmt.Errorf("%s: %w (%s, until %s)", what, ErrLeased, holder, until.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return Lease{}, fmt.Errorf("pgstore: lease of %s: %w", agent, err)
	}
	return le, nil
}

// Renew extends le by ttl if it is still the agent's and unexpired;
// otherwise ErrLost (a lapsed lease is never renewed: Acquire again, for a
// new token).
func (l *Log) Renew(ctx context.Context, le Lease, ttl time.Duration) (Lease, error) {
	err := l.pool.QueryRow(ctx, `
		UPDATE leases SET expires = now() + $4 * interval '1 millisecond'
		WHERE agent = $1 AND owner = $2 AND token = $3 AND expires >= now()
		RETURNING expires`, le.Agent, le.Owner, le.Token, ttl.Milliseconds()).Scan(&le.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("agent %s, token %d: %w", le.Agent, le.Token, ErrLost)
	}
	return le, err
}

// Release gives le up at once (a drain, a clean stop): another daemon may
// take the agent now.
func (l *Log) Release(ctx context.Context, le Lease) error {
	_, err := l.pool.Exec(ctx, `UPDATE leases SET expires = now() - interval '1 millisecond' WHERE agent = $1 AND owner = $2 AND token = $3`,
		le.Agent, le.Owner, le.Token)
	return err
}

// AppendFenced is Append for le's agent, by its owner: in the same
// transaction it checks, holding the lease's row so that no takeover
// commits in between, that le is still the agent's unexpired lease;
// otherwise it writes nothing: ErrFenced.
func (l *Log) AppendFenced(ctx context.Context, le Lease, evs ...event.Event) ([]event.Event, error) {
	for _, e := range evs {
		if e.Agent != le.Agent {
			return nil, fmt.Errorf("pgstore: an event of %s under the lease of %s", e.Agent, le.Agent)
		}
	}
	return l.appendChecked(ctx, evs, func(tx *eventlog.Tx) error { return checkLease(tx, le) })
}

// checkLease holds le's row for the rest of tx (FOR SHARE: a takeover's
// UPDATE waits for tx to end, and tx sees a takeover that committed
// before it) and fails with ErrFenced unless le is still its agent's
// unexpired lease.
func checkLease(tx *eventlog.Tx, le Lease) error {
	return leaseCurrent(tx.QueryRow(currentLease, le.Token, le.Agent), le)
}

// currentLease reads whether a lease (its token, $1) is still its
// agent's ($2) and unexpired, holding the row FOR SHARE.
const currentLease = `SELECT token = $1 AND expires >= now() FROM leases WHERE agent = $2 FOR SHARE`

// leaseCurrent reads checkLease's answer from row.
func leaseCurrent(row interface{ Scan(...any) error }, le Lease) error {
	var current bool
	err := row.Scan(&current)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !current) {
		return fmt.Errorf("agent %s, token %d: %w", le.Agent, le.Token, ErrFenced)
	}
	return err
}

// Fence makes every later write of this log carry le: each transaction
// commits only while le is still its agent's unexpired lease, and
// otherwise writes nothing and fails with ErrFenced. A daemon that holds
// the whole database (the lease of Everything) fences its log so: paused
// or cut off past its lease, it can never write again.
func (l *Log) Fence(le Lease) { l.fence.Store(&le) }

// Holder is the live lease of Everything (a daemon that runs alone on
// the database), nil if none.
func (l *Log) Holder(ctx context.Context) (*Lease, error) {
	le := Lease{Agent: Everything, Live: true}
	err := l.pool.QueryRow(ctx, `SELECT owner, token, expires FROM leases WHERE agent = $1 AND expires >= now()`, Everything).Scan(&le.Owner, &le.Token, &le.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &le, nil
}

// Everything is the lease on the whole database: the one daemon that may
// run agents on it, until agents are leased one by one.
const Everything = "*"

// Inspection is what a read-only look at a database finds (doctor).
type Inspection struct {
	Now     time.Time     // the database's clock
	Skew    time.Duration // the database's clock less this machine's, at the query's midpoint
	Holder  *Lease        // the daemon holding the whole database, nil if none ever did
	Expired bool          // Holder's lease lapsed
	Schema  int64         // the newest migration applied (0: none, not a taosagent database yet)
	// Daemons are those of a cluster that ever registered (serve
	// --cluster), Leases the agents' leases, live or lapsed, Moves the
	// agents' moves under way.
	Daemons []Daemon
	Leases  []Lease
	Moves   map[string]Move
}

// Inspect connects to dsn and reads, writing nothing (no migration), who
// holds the database and the database's clock. A wrong or unreachable
// database is an error naming it, within timeout.
func Inspect(ctx context.Context, dsn string, timeout time.Duration) (Inspection, error) {
	var in Inspection
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return in, fmt.Errorf("the database's address: %w", err)
	}
	cfg.ConnectTimeout = timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return in, fmt.Errorf("cannot reach the database at %s: %w", whereConn(cfg), err)
	}
	defer conn.Close(context.Background())
	t0 := time.Now()
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&in.Now); err != nil {
		return in, fmt.Errorf("the database at %s: %w", whereConn(cfg), err)
	}
	rtt := time.Since(t0)
	in.Skew = in.Now.Sub(t0.Add(rtt / 2))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL AND to_regclass('leases') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return in, err
	}
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&in.Schema); err != nil {
		return in, err
	}
	if in.Schema >= 5 {
		if in.Daemons, err = daemons(ctx, conn); err != nil {
			return in, err
		}
		if in.Leases, err = leases(ctx, conn); err != nil {
			return in, err
		}
	}
	if in.Schema >= 6 {
		if in.Moves, err = moves(ctx, conn); err != nil {
			return in, err
		}
	}
	var le Lease
	err = conn.QueryRow(ctx, `SELECT owner, token, expires, expires < now() FROM leases WHERE agent = $1`, Everything).Scan(&le.Owner, &le.Token, &le.Expires, &in.Expired)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, nil
	}
	if err != nil {
		return in, err
	}
	le.Agent = Everything
	in.Holder = &le
	return in, nil
}
