package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/taosagent/taosagent/internal/hostid"
)

// HostUID returns agent name's host uid in r, handing it the next one of
// r the first time (or when its uid is outside r, after r moved). A uid
// is never handed out twice: rows outlive their agents (DeleteAgent).
func (l *Tables) HostUID(ctx context.Context, name string, r hostid.Range) (int, error) {
	var uid int
	err := l.queryRow(ctx, `SELECT uid FROM host_uids WHERE agent=? ORDER BY uid DESC LIMIT 1`, name).Scan(&uid)
	if err == nil && r.Contains(uid) {
		return uid, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	_, err = l.update(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(`SELECT uid FROM host_uids WHERE agent=? ORDER BY uid DESC LIMIT 1`, name).Scan(&uid); err == nil && r.Contains(uid) {
			return nil // handed out meanwhile
		}
		var last sql.NullInt64
		if err := tx.QueryRow(`SELECT MAX(uid) FROM host_uids WHERE uid>=? AND uid<?`, r.First, r.First+r.Count).Scan(&last); err != nil {
			return err
		}
		uid = r.First
		if last.Valid {
			uid = int(last.Int64) + 1
		}
		if !r.Contains(uid) {
			return fmt.Errorf("every host uid of %s has been handed out; give serve a new --uid-base", r)
		}
		_, err := tx.Exec(`INSERT INTO host_uids (uid, agent) VALUES (?, ?)`, uid, name)
		return err
	})
	return uid, err
}
