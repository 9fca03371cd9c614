package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/taosagent/taosagent/internal/api"
)

// App is a package submitted to the gate.
type App = api.App

// AddApp stores a submitted package's record; an existing one (the same
// bytes) is returned as it is, with created false.
func (l *Tables) AddApp(ctx context.Context, a App) (App, bool, error) {
	created := false
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM apps WHERE sha256=?`, a.SHA256).Scan(&n)
		if n > 0 {
			return nil
		}
		a.Created = now()
		_, err := tx.Exec(`INSERT INTO apps(sha256, app_id, version, state, report, submitted_by, created) VALUES (?,?,?,?,?,?,?)`,
			a.SHA256, a.ID, a.Version, a.State, string(a.Report), a.SubmittedBy, ms(a.Created))
		created = err == nil
		return err
	})
	if err != nil {
		return App{}, false, err
	}
	out, err := l.App(ctx, a.SHA256)
	return out, created, err
}

// DecideApp records a person's decision on a pending package: ErrConflict
// unless it is pending.
func (l *Tables) DecideApp(ctx context.Context, sha, state, by, message string) (App, error) {
	_, err := l.update(ctx, func(tx *Tx) error {
		var cur string
		if err := tx.QueryRow(`SELECT state FROM apps WHERE sha256=?`, sha).Scan(&cur); errors.Is(err, sql.ErrNoRows) {
			return notFound("app package " + sha)
		} else if err != nil {
			return err
		}
		if cur != api.AppPending {
			return fmt.Errorf("app package %s is %s, not pending: %w", sha, cur, ErrConflict)
		}
		_, err := tx.Exec(`UPDATE apps SET state=?, decided_by=?, message=?, decided=? WHERE sha256=?`, state, by, message, ms(now()), sha)
		return err
	})
	if err != nil {
		return App{}, err
	}
	return l.App(ctx, sha)
}

// App returns the package of sha256 sha.
func (l *Tables) App(ctx context.Context, sha string) (App, error) {
	as, err := l.apps(ctx, `WHERE sha256=?`, sha)
	if err != nil {
		return App{}, err
	}
	if len(as) == 0 {
		return App{}, notFound("app package " + sha)
	}
	return as[0], nil
}

// Apps lists the packages, newest first; of one app id if id is not "".
func (l *Tables) Apps(ctx context.Context, id string) ([]App, error) {
	return l.apps(ctx, `WHERE app_id=? OR ?='' ORDER BY created DESC, sha256`, id, id)
}

// ApprovedApp returns the latest approved package of app id.
func (l *Tables) ApprovedApp(ctx context.Context, id string) (App, error) {
	as, err := l.apps(ctx, `WHERE app_id=? AND state='approved' ORDER BY decided DESC LIMIT 1`, id)
	if err != nil {
		return App{}, err
	}
	if len(as) == 0 {
		return App{}, notFound("an approved package of app " + id)
	}
	return as[0], nil
}

func (l *Tables) apps(ctx context.Context, where string, args ...any) ([]App, error) {
	rows, err := l.query(ctx, `SELECT sha256, app_id, version, state, report, submitted_by, decided_by, message, created, decided FROM apps `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []App{}
	for rows.Next() {
		var a App
		var report string
		var created, decided int64
		if err := rows.Scan(&a.SHA256, &a.ID, &a.Version, &a.State, &report, &a.SubmittedBy, &a.DecidedBy, &a.Message, &created, &decided); err != nil {
			return nil, err
		}
		a.Report, a.Created = json.RawMessage(report), fromMS(created)
		if decided > 0 {
			a.Decided = fromMS(decided)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
