package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
)

// Channel is a person's channel for notifications, as stored; its secrets
// are the home's.
type Channel struct {
	ID        string
	Kind      string // ntfy, webhook, webpush
	URL       string
	Link      string   // the panel's URL, for links
	Agents    []string // empty: every agent
	Kinds     []string // empty: every kind
	Details   bool     // what was asked, or the error, leaves the box too
	CreatedBy string
	Created   time.Time
}

// Notification is one notification for one channel: enqueued once per
// (channel, source), delivered at least once.
type Notification struct {
	ID        string
	Channel   string
	Source    string // what it tells of (event:SEQ)
	Kind      string
	Agent     string
	Title     string
	Body      string
	Ref       string // the approval's or question's id
	State     string // pending, sent, failed
	Attempts  int
	NextAt    time.Time
	LastError string
	Created   time.Time
	Sent      time.Time
}

// CreateChannel stores c.
func (l *Tables) CreateChannel(ctx context.Context, c Channel) error {
	agents, _ := json.Marshal(nonNil(c.Agents))
	kinds, _ := json.Marshal(nonNil(c.Kinds))
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO notify_channels(id, kind, url, link, agents, kinds, details, created_by, created) VALUES (?,?,?,?,?,?,?,?,?)`,
			c.ID, c.Kind, c.URL, c.Link, string(agents), string(kinds), c.Details, c.CreatedBy, ms(c.Created))
		return err
	})
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Channels lists the channels, oldest first.
func (l *Tables) Channels(ctx context.Context) ([]Channel, error) {
	rows, err := l.query(ctx, `SELECT id, kind, url, link, agents, kinds, details, created_by, created FROM notify_channels ORDER BY created, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Channel{}
	for rows.Next() {
		var c Channel
		var agents, kinds string
		var created int64
		if err := rows.Scan(&c.ID, &c.Kind, &c.URL, &c.Link, &agents, &kinds, &c.Details, &c.CreatedBy, &created); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(agents), &c.Agents)
		json.Unmarshal([]byte(kinds), &c.Kinds)
		c.Created = fromMS(created)
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteChannel removes channel id and what it had still to deliver.
func (l *Tables) DeleteChannel(ctx context.Context, id string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM notify_channels WHERE id=?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("channel " + id)
		}
		_, err = tx.Exec(`DELETE FROM notifications WHERE channel=?`, id)
		return err
	})
	return err
}

// NotifyCursor is the seq up to which the notifier read the log; ok is
// false before its first read.
func (l *Tables) NotifyCursor(ctx context.Context) (seq int64, ok bool, err error) {
	err = l.queryRow(ctx, `SELECT seq FROM notify_cursor WHERE id=1`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return seq, err == nil, err
}

// Enqueue stores ns, each once per (channel, source) (a repeat is left
// out), and moves the notifier's cursor to cursor, in one transaction.
func (l *Tables) Enqueue(ctx context.Context, cursor int64, ns []Notification) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		for _, n := range ns {
			if _, err := tx.Exec(`INSERT INTO notifications(id, channel, source, kind, agent, title, body, ref, state, next_at, created)
				VALUES (?,?,?,?,?,?,?,?,'pending',?,?) ON CONFLICT(channel, source) DO NOTHING`,
				n.ID, n.Channel, n.Source, n.Kind, n.Agent, n.Title, n.Body, n.Ref, ms(n.Created), ms(n.Created)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(`INSERT INTO notify_cursor(id, seq) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET seq=CASE WHEN excluded.seq > notify_cursor.seq THEN excluded.seq ELSE notify_cursor.seq END`, cursor)
		return err
	})
	return err
}

const notificationCols = `id, channel, source, kind, agent, title, body, ref, state, attempts, next_at, last_error, created, sent`

// DueNotifications lists the pending notifications due at now, oldest
// first, at most limit.
func (l *Tables) DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error) {
	return l.notifications(ctx, `WHERE state='pending' AND next_at<=? ORDER BY next_at, id LIMIT ?`, ms(now), limit)
}

// Notifications lists channel's newest notifications ("" for every
// channel's), at most limit.
func (l *Tables) Notifications(ctx context.Context, channel string, limit int) ([]Notification, error) {
	if channel == "" {
		return l.notifications(ctx, `ORDER BY created DESC, id LIMIT ?`, limit)
	}
	return l.notifications(ctx, `WHERE channel=? ORDER BY created DESC, id LIMIT ?`, channel, limit)
}

func (l *Tables) notifications(ctx context.Context, where string, args ...any) ([]Notification, error) {
	rows, err := l.query(ctx, `SELECT `+notificationCols+` FROM notifications `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Notification{}
	for rows.Next() {
		var n Notification
		var next, created, sent int64
		if err := rows.Scan(&n.ID, &n.Channel, &n.Source, &n.Kind, &n.Agent, &n.Title, &n.Body, &n.Ref, &n.State, &n.Attempts,
			&next, &n.LastError, &created, &sent); err != nil {
			return nil, err
		}
		n.NextAt, n.Created = fromMS(next), fromMS(created)
		if sent != 0 {
			n.Sent = fromMS(sent)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// NotificationSent records notification id as delivered at at.
func (l *Tables) NotificationSent(ctx context.Context, id string, at time.Time) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`UPDATE notifications SET state='sent', attempts=attempts+1, sent=?, last_error='' WHERE id=? AND state='pending'`, ms(at), id)
		return err
	})
	return err
}

// NotificationFailed records a failed attempt at notification id: tried
// again at next, or, final, given up (failed).
func (l *Tables) NotificationFailed(ctx context.Context, id, why string, next time.Time, final bool) error {
	state := "pending"
	if final {
		state = "failed"
	}
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`UPDATE notifications SET state=?, attempts=attempts+1, next_at=?, last_error=? WHERE id=? AND state='pending'`, state, ms(next), why, id)
		return err
	})
	return err
}
