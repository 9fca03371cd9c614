package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// requestsChannel is the LISTEN/NOTIFY channel that wakes daemons for
// requests (a new one for an owner, an answered one for its asker); a
// notification only wakes: both sides read the table.
const requestsChannel = "taosagent_requests"

// Request is what only an agent's owner can do, asked through another
// daemon of a cluster (Ask), and its answer.
type Request struct {
	ID     int64
	Agent  string
	Body   []byte // what is asked, as the asker's runner encoded it
	Result []byte // the answer, once done
	Code   string // the error's kind, "" if none
	Error  string // the error's message
}

// ErrUnanswered: the agent's owner did not answer a request in time (it
// died, or is cut off).
var ErrUnanswered = errors.New("the daemon that owns the agent did not answer")

// Ask stores a request for agent's owner and waits, until ctx ends or
// wait passed, for its answer.
func (l *Log) Ask(ctx context.Context, agent string, body []byte, wait time.Duration) (Request, error) {
	r := Request{Agent: agent, Body: body}
	err := l.pool.QueryRow(ctx, `WITH r AS (INSERT INTO requests(agent, body) VALUES ($1, $2) RETURNING id)
		SELECT id, pg_notify($3, '') IS NULL FROM r`, agent, string(body), requestsChannel).Scan(&r.ID, new(bool))
	if err != nil {
		return r, fmt.Errorf("pgstore: a request for %s: %w", agent, err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		woken := l.reqWaker.current()
		var state, result string
		err := l.pool.QueryRow(ctx, `SELECT state, result, code, error FROM requests WHERE id = $1`, r.ID).Scan(&state, &result, &r.Code, &r.Error)
		if err == nil && state == "done" {
			r.Result = []byte(result)
			l.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM requests WHERE id = $1`, r.ID)
			return r, nil
		}
		if err != nil && ctx.Err() == nil {
			return r, fmt.Errorf("pgstore: request %d: %w", r.ID, err)
		}
		select {
		case <-woken:
		case <-time.After(Poll):
		case <-ctx.Done():
			// Not taken yet: withdrawn, so that nobody does it late.
			l.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM requests WHERE id = $1 AND state = 'pending'`, r.ID)
			return r, fmt.Errorf("agent %s: %w within %s", agent, ErrUnanswered, wait)
		}
	}
}

// Take claims the pending requests of the agents mine says this daemon
// owns: each is taken once, by one daemon.
func (l *Log) Take(ctx context.Context, mine func(agent string) bool) ([]Request, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, agent FROM requests WHERE state = 'pending' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	type row struct {
		id    int64
		agent string
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.agent)
	})
	if err != nil {
		return nil, err
	}
	var out []Request
	for _, x := range ids {
		if !mine(x.agent) {
			continue
		}
		r := Request{ID: x.id, Agent: x.agent}
		var body string
		err := l.pool.QueryRow(ctx, `UPDATE requests SET state = 'taken' WHERE id = $1 AND state = 'pending' RETURNING body`, x.id).Scan(&body)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // withdrawn, or another took it
		}
		if err != nil {
			return out, err
		}
		r.Body = []byte(body)
		out = append(out, r)
	}
	return out, nil
}

// Answer records r's answer (its Result, or its Code and Error) and wakes
// its asker.
func (l *Log) Answer(ctx context.Context, r Request) error {
	_, err := l.pool.Exec(ctx, `WITH u AS (UPDATE requests SET state = 'done', result = $2, code = $3, error = $4 WHERE id = $1 RETURNING id)
		SELECT pg_notify($5, '') FROM u`, r.ID, string(r.Result), r.Code, r.Error, requestsChannel)
	return err
}

// RequestsWoken is closed at the next requests' notification (or
// reconnect of the log's LISTEN connection).
func (l *Log) RequestsWoken() <-chan struct{} { return l.reqWaker.current() }
