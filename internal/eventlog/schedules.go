package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Schedule is a schedule as stored: when it fires is the schedule
// package's (Cron in TZ, or Every from Created); the store keeps which
// slot it reached, so that no slot fires twice.
type Schedule struct {
	ID           string
	Agent        string
	Cron         string
	TZ           string
	Every        time.Duration
	Message      string
	Conversation string
	Missed       string // once, skip
	Overlap      string // skip, queue
	CreatedBy    string
	Created      time.Time
	// LastSlot is the newest slot fired or passed over: no slot at or
	// before it fires again. It starts at Created.
	LastSlot time.Time
	// LastInput is the input of the newest slot fired (0: none yet).
	LastInput int64
}

const scheduleCols = `id, agent, cron, tz, every_ms, message, conversation, missed, overlap, created_by, created, last_slot, last_input`

// CreateSchedule stores s, for an agent that exists.
func (l *Tables) CreateSchedule(ctx context.Context, s Schedule) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM agents WHERE name=?`, s.Agent).Scan(&n)
		if n == 0 {
			return notFound("agent " + s.Agent)
		}
		_, err := tx.Exec(`INSERT INTO schedules(`+scheduleCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			s.ID, s.Agent, s.Cron, s.TZ, s.Every.Milliseconds(), s.Message, s.Conversation, s.Missed, s.Overlap, s.CreatedBy, ms(s.Created), ms(s.LastSlot), 0)
		return err
	})
	return err
}

// Schedules lists agent's schedules ("" for every agent's), oldest first.
func (l *Tables) Schedules(ctx context.Context, agent string) ([]Schedule, error) {
	q, args := `SELECT `+scheduleCols+` FROM schedules ORDER BY created, id`, []any{}
	if agent != "" {
		q, args = `SELECT `+scheduleCols+` FROM schedules WHERE agent=? ORDER BY created, id`, []any{agent}
	}
	rows, err := l.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Schedule{}
	for rows.Next() {
		var s Schedule
		var every, created, last int64
		if err := rows.Scan(&s.ID, &s.Agent, &s.Cron, &s.TZ, &every, &s.Message, &s.Conversation, &s.Missed, &s.Overlap, &s.CreatedBy, &created, &last, &s.LastInput); err != nil {
			return nil, err
		}
		s.Every, s.Created, s.LastSlot = time.Duration(every)*time.Millisecond, fromMS(created), fromMS(last)
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteSchedule removes agent's schedule id; its slots' inputs stay.
func (l *Tables) DeleteSchedule(ctx context.Context, agent, id string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM schedules WHERE id=? AND agent=?`, id, agent)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("schedule " + id + " of agent " + agent)
		}
		_, err = tx.Exec(`DELETE FROM schedule_slots WHERE schedule=?`, id)
		return err
	})
	return err
}

// FireSlot commits slot of schedule id as fired, with its one input in
// (its ClientID the pair's key), in one transaction. A slot fired before
// (or a schedule gone) commits nothing: fired is false. The schedule's
// LastSlot moves to slot (never back).
func (l *Tables) FireSlot(ctx context.Context, id string, slot time.Time, in Input) (_ Input, fired bool, err error) {
	_, err = l.update(ctx, func(tx *Tx) error {
		var last int64
		if err := tx.QueryRow(`SELECT last_slot FROM schedules WHERE id=?`, id).Scan(&last); errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM schedule_slots WHERE schedule=? AND slot=?`, id, ms(slot)).Scan(&n); err != nil || n > 0 {
			return err
		}
		var created bool
		var err error
		if in, created, err = addInput(tx, in); err != nil {
			return err
		}
		if !created {
			return nil
		}
		if _, err := tx.Exec(`INSERT INTO schedule_slots(schedule, slot, input) VALUES (?,?,?)`, id, ms(slot), in.ID); err != nil {
			return err
		}
		_, err = tx.Exec(`UPDATE schedules SET last_slot=CASE WHEN last_slot > ? THEN last_slot ELSE ? END, last_input=? WHERE id=?`, ms(slot), ms(slot), in.ID, id)
		fired = err == nil
		return err
	})
	return in, fired, err
}

// PassSlot records that schedule id passed over every slot up to slot
// (missed, or skipped while its previous run went on): none of them fires.
func (l *Tables) PassSlot(ctx context.Context, id string, slot time.Time) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`UPDATE schedules SET last_slot=CASE WHEN last_slot > ? THEN last_slot ELSE ? END WHERE id=?`, ms(slot), ms(slot), id)
		return err
	})
	return err
}

// InputState is the state of agent's input id ("" when there is none).
func (l *Tables) InputState(ctx context.Context, agent string, id int64) (string, error) {
	var st string
	err := l.queryRow(ctx, `SELECT state FROM inputs WHERE id=? AND agent=?`, id, agent).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return st, err
}
