package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// Move is an agent's explicit move to a daemon on other storage (per-node
// directories): asked, then packed by its owner between its turns (the
// archive waits in the database), then unpacked by its target, which ends
// it.
type Move struct {
	Agent  string    `json:"agent"`
	Target string    `json:"target"`
	State  string    `json:"state"` // MoveAsked, MovePacked, MoveFailed
	Source string    `json:"source,omitempty"`
	Dir    string    `json:"dir,omitempty"` // the agents' directory's path on Source
	Size   int64     `json:"size,omitempty"`
	Error  string    `json:"error,omitempty"` // the last attempt's failure
	Asked  time.Time `json:"asked"`
}

// A move's states.
const (
	MoveAsked  = "asked"  // its owner packs it between its turns
	MovePacked = "packed" // its archive waits for its target
	MoveFailed = "failed" // packing failed: nothing moved; asked anew, it is tried again
)

// moveChunk is the size of the parts a move's archive is stored in.
const moveChunk = 1 << 20

// ErrNoMove: the agent has no move in the state asked for.
var ErrNoMove = errors.New("no such move")

// AskMove asks agent's move to the daemon target. A move not packed yet
// (or failed) is asked anew for target; one packed, whose archive waits
// in the database, is sent on to target: the agent is placed there at
// once.
func (l *Log) AskMove(ctx context.Context, agent, target string) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var state string
	err = tx.QueryRow(ctx, `SELECT state FROM moves WHERE agent = $1 FOR UPDATE`, agent).Scan(&state)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = tx.Exec(ctx, `INSERT INTO moves(agent, target) VALUES ($1, $2)`, agent, target)
	case err != nil:
	case state == MovePacked:
		if _, err = tx.Exec(ctx, `UPDATE moves SET target = $2, error = '' WHERE agent = $1`, agent, target); err == nil {
			err = placeOn(ctx, tx, agent, target)
		}
	default:
		_, err = tx.Exec(ctx, `UPDATE moves SET target = $2, state = 'asked', error = '', asked = now() WHERE agent = $1`, agent, target)
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// placeOn pins agent to daemon target and records its directory as on
// target's storage.
func placeOn(ctx context.Context, tx pgx.Tx, agent, target string) error {
	tag, err := tx.Exec(ctx, `
		INSERT INTO placements AS p (agent, pin, storage) SELECT $1, id, storage FROM daemons WHERE id = $2
		ON CONFLICT (agent) DO UPDATE SET pin = excluded.pin, storage = excluded.storage`, agent, target)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("%q: %w", target, ErrUnknownDaemon)
	}
	return err
}

// Moves lists the moves asked and not ended, by agent.
func (l *Log) Moves(ctx context.Context) (map[string]Move, error) { return moves(ctx, l.pool) }

func moves(ctx context.Context, q querier) (map[string]Move, error) {
	rows, err := q.Query(ctx, `SELECT agent, target, state, source, dir, size, error, asked FROM moves`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Move{}
	for rows.Next() {
		var m Move
		if err := rows.Scan(&m.Agent, &m.Target, &m.State, &m.Source, &m.Dir, &m.Size, &m.Error, &m.Asked); err != nil {
			return nil, err
		}
		out[m.Agent] = m
	}
	return out, rows.Err()
}

// Pack stores the archive of le's agent that write writes, and places
// the agent on its move's target (pinned there, its directory on the
// target's storage), in one transaction: all of it, or nothing. le must
// be the agent's current lease at the commit, checked as the fence
// checks it (ErrFenced), and the move asked (ErrNoMove). source and dir name the
// daemon packing and its agents' directory.
func (l *Log) Pack(ctx context.Context, le Lease, source, dir string, write func(io.Writer) error) (Move, error) {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return Move{}, err
	}
	defer tx.Rollback(ctx)
	m := Move{Agent: le.Agent, Source: source, Dir: dir}
	err = tx.QueryRow(ctx, `SELECT target, state, asked FROM moves WHERE agent = $1 FOR UPDATE`, le.Agent).Scan(&m.Target, &m.State, &m.Asked)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && m.State != MoveAsked) {
		return Move{}, fmt.Errorf("agent %s: %w asked", le.Agent, ErrNoMove)
	}
	if err != nil {
		return Move{}, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM move_chunks WHERE agent = $1`, le.Agent); err != nil {
		return Move{}, err
	}
	w := &chunkWriter{ctx: ctx, tx: tx, agent: le.Agent}
	if err := write(w); err != nil {
		return Move{}, err
	}
	if err := w.flush(); err != nil {
		return Move{}, err
	}
	m.State, m.Size = MovePacked, w.size
	// The lease, checked last (its row held to the commit), so that its
	// renewals are not held up while the archive is written.
	if err := leaseCurrent(tx.QueryRow(ctx, currentLease, le.Token, le.Agent), le); err != nil {
		return Move{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE moves SET state = $2, source = $3, dir = $4, size = $5, error = '' WHERE agent = $1`,
		m.Agent, m.State, m.Source, m.Dir, m.Size); err != nil {
		return Move{}, err
	}
	if err := placeOn(ctx, tx, m.Agent, m.Target); err != nil {
		return Move{}, err
	}
	return m, tx.Commit(ctx)
}

// chunkWriter stores what is written to it as a move's chunks.
type chunkWriter struct {
	ctx   context.Context
	tx    pgx.Tx
	agent string
	buf   []byte
	n     int
	size  int64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), moveChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == moveChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO move_chunks(agent, n, data) VALUES ($1, $2, $3)`, w.agent, w.n, w.buf); err != nil {
		return err
	}
	w.n++
	w.size += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// Packed reads agent's packed archive, chunk by chunk.
func (l *Log) Packed(ctx context.Context, agent string) io.Reader {
	return &chunkReader{ctx: ctx, l: l, agent: agent}
}

type chunkReader struct {
	ctx   context.Context
	l     *Log
	agent string
	n     int
	buf   []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		err := r.l.pool.QueryRow(r.ctx, `SELECT data FROM move_chunks WHERE agent = $1 AND n = $2`, r.agent, r.n).Scan(&r.buf)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		r.n++
	}
	k := copy(p, r.buf)
	r.buf = r.buf[k:]
	return k, nil
}

// Moved ends the move of le's agent once its target unpacked it: the
// move and its archive go. le must be the agent's current lease
// (ErrFenced).
func (l *Log) Moved(ctx context.Context, le Lease) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := leaseCurrent(tx.QueryRow(ctx, currentLease, le.Token, le.Agent), le); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM move_chunks WHERE agent = $1`, le.Agent); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM moves WHERE agent = $1`, le.Agent); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// CallOffMove calls off agent's move unless it is packed (its archive
// waits for its target: AskMove sends it elsewhere).
func (l *Log) CallOffMove(ctx context.Context, agent string) error {
	_, err := l.pool.Exec(ctx, `DELETE FROM moves WHERE agent = $1 AND state <> 'packed'`, agent)
	return err
}

// MoveFailed records why agent's move failed. A move asked that could
// not be packed is failed (nothing moved, not tried again until asked
// anew); a packed one stays packed, tried again.
func (l *Log) MoveFailed(ctx context.Context, agent, msg string) error {
	_, err := l.pool.Exec(ctx, `UPDATE moves SET error = $2, state = CASE WHEN state = 'asked' THEN 'failed' ELSE state END WHERE agent = $1`, agent, msg)
	return err
}
