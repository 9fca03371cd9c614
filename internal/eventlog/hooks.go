package eventlog

import (
	"context"
	"time"
)

// Hook is a webhook that starts agent's turns: its deliveries, once
// verified, are put in Template as data.
type Hook struct {
	ID        string
	Agent     string
	Template  string
	CreatedBy string
	Created   time.Time
}

// CreateHook stores h, for an agent that exists.
func (l *Tables) CreateHook(ctx context.Context, h Hook) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM agents WHERE name=?`, h.Agent).Scan(&n)
		if n == 0 {
			return notFound("agent " + h.Agent)
		}
		_, err := tx.Exec(`INSERT INTO hooks(id, agent, template, created_by, created) VALUES (?,?,?,?,?)`, h.ID, h.Agent, h.Template, h.CreatedBy, ms(h.Created))
		return err
	})
	return err
}

// Hooks lists agent's hooks ("" for every agent's), oldest first.
func (l *Tables) Hooks(ctx context.Context, agent string) ([]Hook, error) {
	rows, err := l.query(ctx, `SELECT id, agent, template, created_by, created FROM hooks WHERE ?='' OR agent=? ORDER BY created, id`, agent, agent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Hook{}
	for rows.Next() {
		var h Hook
		var c int64
		if err := rows.Scan(&h.ID, &h.Agent, &h.Template, &h.CreatedBy, &c); err != nil {
			return nil, err
		}
		h.Created = fromMS(c)
		out = append(out, h)
	}
	return out, rows.Err()
}

// DeleteHook removes agent's hook id.
func (l *Tables) DeleteHook(ctx context.Context, agent, id string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM hooks WHERE id=? AND agent=?`, id, agent)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("hook " + id + " of agent " + agent)
		}
		_, err = tx.Exec(`DELETE FROM hook_deliveries WHERE hook=?`, id)
		return err
	})
	return err
}

// Deliver records hook's delivery of signature and commits its input in
// one transaction. A signature delivered before commits nothing: fresh
// is false (a replay).
func (l *Tables) Deliver(ctx context.Context, hook, signature string, in Input) (_ Input, fresh bool, err error) {
	_, err = l.update(ctx, func(tx *Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM hook_deliveries WHERE hook=? AND signature=?`, hook, signature).Scan(&n); err != nil || n > 0 {
			return err
		}
		var created bool
		var err error
		if in, created, err = addInput(tx, in); err != nil || !created {
			return err
		}
		_, err = tx.Exec(`INSERT INTO hook_deliveries(hook, signature, time, input) VALUES (?,?,?,?)`, hook, signature, ms(in.Created), in.ID)
		fresh = err == nil
		return err
	})
	return in, fresh, err
}
