package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/taosagent/taosagent/internal/event"
)

// Task is a task one agent (From) handed another (To): the receiver's
// input, and once it ended, its result, sent to the caller as an input of
// its own.
type Task struct {
	ID           string
	From         string
	To           string
	Text         string // as the caller gave it
	Conversation string // the caller's, where the result goes ("" its current one)
	Input        int64  // the receiver's
	// State is open until the task ends: done, error or cancelled.
	State string
	// InputState and Turn are the receiver's input's (queued, running,
	// done, cancelled; "" when it is gone with its agent) and its turn.
	InputState  string
	Turn        string
	Result      string
	ResultInput int64 // the caller's input that carried the result (0: none)
	Created     time.Time
	Ended       time.Time // zero while open
}

// Task states.
const (
	TaskOpen      = "open"
	TaskDone      = "done"
	TaskError     = "error"
	TaskCancelled = "cancelled"
)

const taskCols = `t.id, t.from_agent, t.to_agent, t.text, t.conversation, t.input, t.state, COALESCE(i.state, ''), COALESCE(i.turn, ''),
	t.result, t.result_input, t.created, t.ended`

// StartTask stores t, open, with its input for the receiver (in, its
// Task and From set to t's) in one transaction.
func (l *Tables) StartTask(ctx context.Context, t Task, in Input) (Task, Input, error) {
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM agents WHERE name=?`, t.From).Scan(&n)
		if n == 0 {
			return notFound("agent " + t.From)
		}
		in.Agent, in.Task, in.From = t.To, t.ID, t.From
		var err error
		if in, _, err = addInput(tx, in); err != nil {
			return err
		}
		t.Input, t.State, t.InputState, t.Created = in.ID, TaskOpen, in.State, in.Created
		_, err = tx.Exec(`INSERT INTO tasks(id, from_agent, to_agent, text, conversation, input, state, created) VALUES (?,?,?,?,?,?,?,?)`,
			t.ID, t.From, t.To, t.Text, t.Conversation, t.Input, t.State, ms(t.Created))
		return err
	})
	return t, in, err
}

// Tasks lists the tasks agent handed or was handed ("" for every
// agent's), newest first, at most limit.
func (l *Tables) Tasks(ctx context.Context, agent string, limit int) ([]Task, error) {
	if agent == "" {
		return l.tasks(ctx, `ORDER BY t.created DESC, t.id LIMIT ?`, limit)
	}
	return l.tasks(ctx, `WHERE t.from_agent=? OR t.to_agent=? ORDER BY t.created DESC, t.id LIMIT ?`, agent, agent, limit)
}

// OpenTasks lists the tasks not ended yet, oldest first.
func (l *Tables) OpenTasks(ctx context.Context) ([]Task, error) {
	return l.tasks(ctx, `WHERE t.state='open' ORDER BY t.created, t.id`)
}

// Task returns task id.
func (l *Tables) Task(ctx context.Context, id string) (Task, error) {
	ts, err := l.tasks(ctx, `WHERE t.id=?`, id)
	if err != nil {
		return Task{}, err
	}
	if len(ts) == 0 {
		return Task{}, notFound("task " + id)
	}
	return ts[0], nil
}

func (l *Tables) tasks(ctx context.Context, where string, args ...any) ([]Task, error) {
	rows, err := l.query(ctx, `SELECT `+taskCols+` FROM tasks t LEFT JOIN inputs i ON i.id=t.input `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		var t Task
		var created, ended int64
		if err := rows.Scan(&t.ID, &t.From, &t.To, &t.Text, &t.Conversation, &t.Input, &t.State, &t.InputState, &t.Turn,
			&t.Result, &t.ResultInput, &created, &ended); err != nil {
			return nil, err
		}
		t.Created = fromMS(created)
		if ended != 0 {
			t.Ended = fromMS(ended)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// EndTask ends open task id with state and result and, when res is not
// nil, commits res (the result, for the caller: its Agent, Task and From
// set from the task) in the same transaction; the caller gone, no input
// is made. A task ended before is left as it is: ended is false.
func (l *Tables) EndTask(ctx context.Context, id, state, result string, res *Input) (_ Task, ended bool, err error) {
	_, err = l.update(ctx, func(tx *Tx) error {
		var from, to, st string
		if err := tx.QueryRow(`SELECT from_agent, to_agent, state FROM tasks WHERE id=?`, id).Scan(&from, &to, &st); errors.Is(err, sql.ErrNoRows) {
			return notFound("task " + id)
		} else if err != nil || st != TaskOpen {
			return err
		}
		var resID int64
		if res != nil {
			in := *res
			in.Agent, in.Task, in.From = from, id, to
			in, _, err := addInput(tx, in)
			switch {
			case errors.Is(err, ErrNotFound): // the caller was deleted
			case err != nil:
				return err
			default:
				resID = in.ID
			}
		}
		_, err := tx.Exec(`UPDATE tasks SET state=?, result=?, result_input=?, ended=? WHERE id=?`, state, result, resID, ms(now()), id)
		ended = err == nil
		return err
	})
	if err != nil {
		return Task{}, false, err
	}
	t, err := l.Task(ctx, id)
	return t, ended, err
}

// CancelInput takes agent's input id out of its inbox, if it is still
// queued there (an input.cancelled event): cancelled says whether it was.
func (l *Tables) CancelInput(ctx context.Context, agent string, id int64) (cancelled bool, err error) {
	_, err = l.update(ctx, func(tx *Tx) error {
		var st, task, from string
		err := tx.QueryRow(`SELECT state, task, from_agent FROM inputs WHERE id=? AND agent=?`, id, agent).Scan(&st, &task, &from)
		if errors.Is(err, sql.ErrNoRows) || st != "queued" {
			return nil
		} else if err != nil {
			return err
		}
		e := event.New("", event.InputCancelled, now(), event.InputData{Input: id, Task: task, From: from})
		e.Agent = agent
		_, err = tx.Append(e)
		cancelled = err == nil
		return err
	})
	return cancelled, err
}
