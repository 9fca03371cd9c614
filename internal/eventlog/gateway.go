package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/taosagent/taosagent/internal/api"
)

// SetAgentKey records hash as agent's gateway key; the previous one stops
// working.
func (l *Tables) SetAgentKey(ctx context.Context, agent, hash string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO agent_keys(agent, hash, created) VALUES (?,?,?)
			ON CONFLICT(agent) DO UPDATE SET hash=excluded.hash, created=excluded.created`, agent, hash, ms(now()))
		return err
	})
	return err
}

// AgentKey returns the hash of agent's gateway key ("" if it has none).
func (l *Tables) AgentKey(ctx context.Context, agent string) (string, error) {
	var h string
	err := l.queryRow(ctx, `SELECT hash FROM agent_keys WHERE agent=?`, agent).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// AgentOfKey returns the agent whose gateway key hashes to hash.
func (l *Tables) AgentOfKey(ctx context.Context, hash string) (string, error) {
	var a string
	err := l.queryRow(ctx, `SELECT agent FROM agent_keys WHERE hash=?`, hash).Scan(&a)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("key")
	}
	return a, err
}

// UsageRow is the usage of one agent and model on one day.
type UsageRow = api.UsageRow

// AddUsage adds one call's usage to its agent, model and day.
func (l *Tables) AddUsage(ctx context.Context, agent, model string, at time.Time, in, out int64, cost float64) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO usage(agent, model, day, requests, input_tokens, output_tokens, cost) VALUES (?,?,?,1,?,?,?)
			ON CONFLICT(agent, model, day) DO UPDATE SET requests=usage.requests+1, input_tokens=usage.input_tokens+excluded.input_tokens,
			output_tokens=usage.output_tokens+excluded.output_tokens, cost=usage.cost+excluded.cost`,
			agent, model, at.UTC().Format(time.DateOnly), in, out, cost)
		return err
	})
	return err
}

// Usage lists usage rows of agent and model ("" for all) from day since on
// ("" for all), by day, agent and model.
func (l *Tables) Usage(ctx context.Context, agent, model, since string) ([]UsageRow, error) {
	rows, err := l.query(ctx, `SELECT agent, model, day, requests, input_tokens, output_tokens, cost FROM usage
		WHERE (agent=? OR ?='') AND (model=? OR ?='') AND day >= ? ORDER BY day, agent, model`, agent, agent, model, model, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []UsageRow{}
	for rows.Next() {
		var u UsageRow
		if err := rows.Scan(&u.Agent, &u.Model, &u.Day, &u.Requests, &u.InputTokens, &u.OutputTokens, &u.Cost); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// UsageSince sums agent's tokens (in and out) and cost from day since
// (YYYY-MM-DD) on.
func (l *Tables) UsageSince(ctx context.Context, agent, since string) (tokens int64, cost float64, err error) {
	err = l.queryRow(ctx, `SELECT COALESCE(SUM(input_tokens+output_tokens),0), COALESCE(SUM(cost),0) FROM usage WHERE agent=? AND day >= ?`,
		agent, since).Scan(&tokens, &cost)
	return tokens, cost, err
}
