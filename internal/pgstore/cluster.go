package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/event"
)

// Daemon is one daemon of a cluster, as it last registered (Heartbeat).
type Daemon struct {
	ID       string    `json:"id"`
	Addr     string    `json:"addr,omitempty"`
	Labels   []string  `json:"labels,omitempty"` // "k=v"
	Storage  string    `json:"storage"`          // the storage its agents' directories are on
	Dir      string    `json:"dir"`              // where that storage is mounted: the agents' directory's path
	Slots    int       `json:"slots"`            // the instances it runs at once
	Memory   int64     `json:"memory"`           // bytes free at its last heartbeat
	Draining bool      `json:"draining"`
	Started  time.Time `json:"started"`
	Expires  time.Time `json:"expires"`
	Live     bool      `json:"live"` // registered and renewing (Expires not passed)
}

// Placement is where an agent may run: Pin names a daemon's id or a label
// ("node=gpu-box"), "" any daemon; Storage is the storage its directory
// is on, "" until its first owner.
type Placement struct {
	Agent   string `json:"agent"`
	Pin     string `json:"pin,omitempty"`
	Storage string `json:"storage,omitempty"`
}

// ErrUnknownDaemon: no daemon of that id ever registered.
var ErrUnknownDaemon = errors.New("no such daemon in the cluster")

// Heartbeat registers d, or renews its registration, for ttl on the
// database's clock. Draining is kept as it is (SetDraining sets it);
// Started is set at the first registration after one lapsed.
func (l *Log) Heartbeat(ctx context.Context, d Daemon, ttl time.Duration) error {
	_, err := l.pool.Exec(ctx, `
		INSERT INTO daemons AS d (id, addr, labels, storage, agents, slots, memory, started, expires)
		VALUES ($1, $2, $3, $4, $8, $5, $6, now(), now() + $7 * interval '1 millisecond')
		ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, labels = excluded.labels, storage = excluded.storage, agents = excluded.agents,
			slots = excluded.slots, memory = excluded.memory, expires = excluded.expires,
			started = CASE WHEN d.expires < now() THEN now() ELSE d.started END,
			draining = CASE WHEN d.expires < now() THEN false ELSE d.draining END`,
		d.ID, d.Addr, strings.Join(d.Labels, ","), d.Storage, d.Slots, d.Memory, ttl.Milliseconds(), d.Dir)
	return err
}

// Leave ends d's registration at once (a clean stop).
func (l *Log) Leave(ctx context.Context, id string) error {
	_, err := l.pool.Exec(ctx, `UPDATE daemons SET expires = now() - interval '1 millisecond' WHERE id = $1`, id)
	return err
}

// Daemons lists every daemon that ever registered, live or not, by id.
func (l *Log) Daemons(ctx context.Context) ([]Daemon, error) {
	return daemons(ctx, l.pool)
}

func daemons(ctx context.Context, q querier) ([]Daemon, error) {
	rows, err := q.Query(ctx, `SELECT id, addr, labels, storage, agents, slots, memory, draining, started, expires, expires >= now() FROM daemons ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Daemon
	for rows.Next() {
		var d Daemon
		var labels string
		if err := rows.Scan(&d.ID, &d.Addr, &labels, &d.Storage, &d.Dir, &d.Slots, &d.Memory, &d.Draining, &d.Started, &d.Expires, &d.Live); err != nil {
			return nil, err
		}
		if labels != "" {
			d.Labels = strings.Split(labels, ",")
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// SetDraining marks daemon id draining (its agents move to others between
// their turns, and none is placed on it) or not.
func (l *Log) SetDraining(ctx context.Context, id string, on bool) error {
	tag, err := l.pool.Exec(ctx, `UPDATE daemons SET draining = $2 WHERE id = $1`, id, on)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("%q: %w", id, ErrUnknownDaemon)
	}
	return err
}

// Leases lists the agents' leases (not the database's), with whether each
// is live.
func (l *Log) Leases(ctx context.Context) ([]Lease, error) { return leases(ctx, l.pool) }

func leases(ctx context.Context, q querier) ([]Lease, error) {
	rows, err := q.Query(ctx, `SELECT agent, owner, token, expires, expires >= now() FROM leases WHERE agent NOT LIKE '*%' ORDER BY agent`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var le Lease
		if err := rows.Scan(&le.Agent, &le.Owner, &le.Token, &le.Expires, &le.Live); err != nil {
			return nil, err
		}
		out = append(out, le)
	}
	return out, rows.Err()
}

// Placements lists the agents' placements, by agent.
func (l *Log) Placements(ctx context.Context) (map[string]Placement, error) {
	rows, err := l.pool.Query(ctx, `SELECT agent, pin, storage FROM placements`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Placement{}
	for rows.Next() {
		var p Placement
		if err := rows.Scan(&p.Agent, &p.Pin, &p.Storage); err != nil {
			return nil, err
		}
		out[p.Agent] = p
	}
	return out, rows.Err()
}

// Pin sets where agent may run: a daemon's id, a label "k=v", or "" for
// any daemon.
func (l *Log) Pin(ctx context.Context, agent, pin string) error {
	_, err := l.pool.Exec(ctx, `INSERT INTO placements(agent, pin) VALUES ($1, $2) ON CONFLICT (agent) DO UPDATE SET pin = excluded.pin`, agent, pin)
	return err
}

// SetStorage records, once, the storage agent's directory is on (its
// first owner's); later calls change nothing. It returns the storage
// recorded.
func (l *Log) SetStorage(ctx context.Context, agent, storage string) (string, error) {
	var s string
	err := l.pool.QueryRow(ctx, `
		INSERT INTO placements AS p (agent, storage) VALUES ($1, $2)
		ON CONFLICT (agent) DO UPDATE SET storage = CASE WHEN p.storage = '' THEN excluded.storage ELSE p.storage END
		RETURNING storage`, agent, storage).Scan(&s)
	return s, err
}

// FenceAgents makes every later write of this log that an agent's owner
// alone may make (an event of any kind but a request's: RequestKind) carry
// the writer's lease of that agent, from held: each such event commits
// only while that lease is still its agent's unexpired one, and otherwise
// the write fails with ErrFenced and stores nothing of it. A daemon of a
// cluster fences its log so: paused or cut off past an agent's lease, it
// can never write for that agent again, while it may still store
// requests (a message, a cancel) for any agent.
func (l *Log) FenceAgents(held func(agent string) (Lease, bool)) { l.agentFence.Store(&held) }

// RequestKind reports whether an event of kind k is a request any daemon may
// store for any agent (a message for its inbox, one taken out of it),
// rather than what the agent's owner alone writes (its turns, its
// instance, its approvals).
func RequestKind(k event.Kind) bool { return k == event.InputAccepted || k == event.InputCancelled }

// fenced checks, once per agent per transaction, that this log holds the
// current lease of e's agent, when e is its owner's to write.
func (s *seqs) fenced(ctx context.Context, e event.Event) error {
	if s.held == nil || RequestKind(e.Kind) {
		return nil
	}
	if err, ok := s.checked[e.Agent]; ok {
		return err
	}
	le, ok := (*s.held)(e.Agent)
	var err error
	if !ok {
		err = fmt.Errorf("agent %s: %w (this daemon does not own it)", e.Agent, ErrFenced)
	} else {
		err = leaseCurrent(s.tx.QueryRowContext(ctx, currentLease, le.Token, le.Agent), le)
	}
	if s.checked == nil {
		s.checked = map[string]error{}
	}
	s.checked[e.Agent] = err
	return err
}

// fencedAll is fenced for each of evs: a plain append's events are
// checked before any is stored, so that a fenced one fails its request
// alone, not the others sharing its transaction.
func (s *seqs) fencedAll(ctx context.Context, evs []event.Event) error {
	for _, e := range evs {
		if err := s.fenced(ctx, e); err != nil {
			return err
		}
	}
	return nil
}
