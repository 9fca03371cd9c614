package eventlog

import (
	"encoding/json"
	"fmt"

	"github.com/taosagent/taosagent/internal/event"
)

// project applies e to the tables that are views of the log.
func project(t *Tx, e event.Event) error {
	ms := e.Time.UnixMilli()
	var err error
	switch e.Kind {
	case event.TurnStarted:
		var d event.InputData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: turn.started: %w", err)
		}
		if _, err = t.Exec(`INSERT INTO turns(id, agent, input, session, state, started) VALUES (?,?,?,?,'running',?)`,
			e.Turn, e.Agent, d.Input, e.Session, ms); err == nil {
			_, err = t.Exec(`UPDATE inputs SET state='running', turn=? WHERE id=?`, e.Turn, d.Input)
		}
	case event.InputCancelled:
		var d event.InputData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: input.cancelled: %w", err)
		}
		_, err = t.Exec(`UPDATE inputs SET state='cancelled' WHERE id=? AND state='queued'`, d.Input)
	case event.InputSteered:
		var d event.InputData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: input.steered: %w", err)
		}
		_, err = t.Exec(`UPDATE inputs SET state='steered', turn=? WHERE id=?`, e.Turn, d.Input)
	case event.Final, event.Error:
		if e.Turn == "" {
			return nil
		}
		errSeq := int64(0)
		if e.Kind == event.Error {
			errSeq = e.Seq
		}
		if _, err = t.Exec(`UPDATE turns SET state=?, ended=?, error_seq=? WHERE id=? AND state='running'`, string(e.Kind), ms, errSeq, e.Turn); err == nil {
			_, err = t.Exec(`UPDATE inputs SET state='done' WHERE turn=? AND state='running'`, e.Turn)
		}
	case event.PermissionAsked:
		var d event.PermissionAskedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: permission.asked: %w", err)
		}
		src := d.Source
		if src == "" {
			src = "opencode"
		}
		_, err = t.Exec(`INSERT INTO approvals(id, agent, turn, session, seq, ask, state, created, source) VALUES (?,?,?,?,?,?,'pending',?,?) ON CONFLICT DO NOTHING`,
			d.Approval, e.Agent, e.Turn, e.Session, e.Seq, string(e.Data), ms, src)
	case event.PermissionResolved:
		var d event.PermissionResolvedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: permission.resolved: %w", err)
		}
		_, err = t.Exec(`UPDATE approvals SET state=?, by=?, message=?, resolved=? WHERE id=? AND state='pending'`,
			d.Decision, d.By, d.Message, ms, d.Approval)
	case event.QuestionAsked:
		var d event.QuestionAskedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: question.asked: %w", err)
		}
		_, err = t.Exec(`INSERT INTO questions(id, agent, turn, session, seq, call_id, questions, state, created) VALUES (?,?,?,?,?,?,?,'pending',?) ON CONFLICT DO NOTHING`,
			d.Question, e.Agent, e.Turn, e.Session, e.Seq, d.CallID, string(d.Questions), ms)
	case event.QuestionResolved:
		var d event.QuestionResolvedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("eventlog: question.resolved: %w", err)
		}
		answers := ""
		if len(d.Answers) > 0 {
			b, _ := json.Marshal(d.Answers)
			answers = string(b)
		}
		_, err = t.Exec(`UPDATE questions SET state=?, answers=?, by=?, message=?, resolved=? WHERE id=? AND state='pending'`,
			d.State(), answers, d.By, d.Message, ms, d.Question)
	}
	return err
}
