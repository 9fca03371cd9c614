package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
)

// Recovered counts what Recover copied.
type Recovered struct {
	Rows   int // rows of every table
	Events int // of them, events
}

// recoverTables are the tables Recover copies, in an order that keeps
// their references whole. Raw opencode events are a short-lived debugging
// aid and are not recovered.
var recoverTables = []string{"providers", "agents", "inputs", "turns", "events", "retention", "approvals", "questions", "audit"}

// Recover creates a fresh event log at to and copies into it every row
// that the (damaged) database at from still yields, table by table, by
// rowid: a range it cannot read is stepped over one rowid at a time, so a
// damaged page costs only the rows on it. from is only read.
func Recover(ctx context.Context, from, to string) (Recovered, error) {
	var n Recovered
	fresh, err := Open(to)
	if err != nil {
		return n, err
	}
	fresh.Close()
	q := url.Values{}
	q.Add("mode", "ro")
	src, err := sql.Open("sqlite", "file:"+from+"?"+q.Encode())
	if err != nil {
		return n, err
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	dst, err := sql.Open("sqlite", "file:"+to)
	if err != nil {
		return n, err
	}
	defer dst.Close()
	dst.SetMaxOpenConns(1)
	for _, table := range recoverTables {
		rows, err := recoverTable(ctx, src, dst, table)
		n.Rows += rows
		if table == "events" {
			n.Events = rows
		}
		if err != nil {
			return n, fmt.Errorf("%s: %w", table, err)
		}
	}
	return n, nil
}

// recoverTable copies table's readable rows; it fails only when the fresh
// database cannot take them.
func recoverTable(ctx context.Context, src, dst *sql.DB, table string) (int, error) {
	cols, err := columns(ctx, dst, table)
	if err != nil {
		return 0, err
	}
	list := strings.Join(cols, ", ")
	insert := fmt.Sprintf("INSERT OR REPLACE INTO %s(rowid, %s) VALUES (?%s)", table, list, strings.Repeat(", ?", len(cols)))
	var maxID int64
	if err := src.QueryRowContext(ctx, "SELECT COALESCE(MAX(rowid), 0) FROM "+table).Scan(&maxID); err != nil {
		maxID = -1 // unknown: step until a long run of misses
	}
	copied, last, misses := 0, int64(0), 0
	const chunk = 512
	for {
		vals, err := readRows(ctx, src, fmt.Sprintf("SELECT rowid, %s FROM %s WHERE rowid > ? ORDER BY rowid LIMIT %d", list, table, chunk), len(cols)+1, last)
		if n, err := writeRows(ctx, dst, insert, vals); err != nil {
			return copied, err
		} else {
			copied += n
		}
		if len(vals) > 0 {
			last = vals[len(vals)-1][0].(int64)
		}
		if err == nil {
			if len(vals) < chunk {
				return copied, nil
			}
			continue
		}
		// A damaged range: look for the next row that reads, one by one.
		for {
			last++
			if (maxID >= 0 && last > maxID) || (maxID < 0 && misses > 100000) {
				return copied, nil
			}
			row, err := readRows(ctx, src, fmt.Sprintf("SELECT rowid, %s FROM %s WHERE rowid = ?", list, table), len(cols)+1, last)
			if err == nil && len(row) == 1 {
				n, err := writeRows(ctx, dst, insert, row)
				if err != nil {
					return copied, err
				}
				copied += n
				misses = 0
				break
			}
			misses++
		}
	}
}

func columns(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// readRows reads the rows of query, keeping those read before an error.
func readRows(ctx context.Context, db *sql.DB, query string, ncol int, args ...any) ([][]any, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		vals := make([]any, ncol)
		ptrs := make([]any, ncol)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return out, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

func writeRows(ctx context.Context, db *sql.DB, insert string, rows [][]any) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, insert)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r...); err != nil {
			return 0, err
		}
	}
	return len(rows), tx.Commit()
}
