package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
)

// Answer answers question request id for a person (by) through opencode,
// or rejects it, and records the answer with who gave it. The answers are
// checked against what was asked first (ErrInvalid). A request that is no
// longer pending, or that opencode no longer knows (then recorded as
// expired), is a conflict.
func (m *Manager) Answer(ctx context.Context, id string, a api.AnswerRequest, by string) (eventlog.Question, error) {
	q, err := m.log.Question(ctx, id)
	if err != nil {
		return q, err
	}
	if err := api.CheckAnswer(q.Questions, a); err != nil {
		return q, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if q.State != api.QuestionPending {
		return q, fmt.Errorf("question %s is already %s: %w", id, q.State, eventlog.ErrConflict)
	}
	if !m.here(q.Agent) {
		err := m.forward(ctx, q.Agent, Forwarded{Kind: "answer", ID: id, Answer: &a, By: by}, &q)
		return q, err
	}
	r := m.existing(q.Agent)
	if r == nil {
		return q, fmt.Errorf("question %s: its agent is not running: %w", id, eventlog.ErrConflict)
	}
	return r.answer(ctx, q, a, by)
}

// answer gives opencode a person's answer to q, and records it (opencode's
// own report of it is then dropped as an echo).
func (r *agentRunner) answer(ctx context.Context, q eventlog.Question, a api.AnswerRequest, by string) (eventlog.Question, error) {
	r.mu.Lock()
	drv := r.cur.drv
	if drv != nil {
		r.cur.resolved[q.ID] = true
	}
	r.mu.Unlock()
	if drv == nil {
		return q, fmt.Errorf("question %s: its agent's opencode is not running: %w", q.ID, eventlog.ErrConflict)
	}
	forget := func() {
		r.mu.Lock()
		delete(r.cur.resolved, q.ID)
		r.mu.Unlock()
	}
	err := drv.ReplyQuestion(ctx, q.ID, a.Answers, a.Reject)
	if errors.Is(err, opencode.ErrNotFound) {
		forget()
		r.emit(expiredQuestion(q, "opencode no longer has this question", time.Now()))
		return q, fmt.Errorf("question %s had expired: %w", q.ID, eventlog.ErrConflict)
	}
	if err != nil {
		forget()
		return q, err
	}
	e := event.New(q.Session, event.QuestionResolved, time.Now(), event.QuestionResolvedData{
		Question: q.ID, Answers: a.Answers, Rejected: a.Reject, By: by})
	e.Agent, e.Turn = r.name, q.Turn
	// Through the log directly: opencode's own echo is what emit drops.
	if _, err := r.m.log.Append(context.Background(), e); err != nil {
		return q, err
	}
	return r.m.log.Question(ctx, q.ID)
}

// expiredQuestion is the synthetic event that records question q as
// expired, for why.
func expiredQuestion(q eventlog.Question, why string, at time.Time) event.Event {
	e := event.New(q.Session, event.QuestionResolved, at, event.QuestionResolvedData{
		Question: q.ID, Expired: true, By: "taosagent", Message: why})
	e.Agent, e.Turn, e.Synthetic = q.Agent, q.Turn, true
	return e
}

// reconcileQuestions runs after the event stream reconnected, as
// reconcile does for approvals: a question we hold as pending that
// opencode no longer has expired while we were away; one opencode holds
// that we never saw is recorded now (synthetic); one opencode still holds
// that we recorded as over (its turn ended, a restart cut it) is rejected
// in opencode, so that nothing waits on it unseen.
func (r *agentRunner) reconcileQuestions(ctx context.Context, c *opencode.Client, emit func(...event.Event)) {
	theirs, err := c.Questions(ctx)
	if err != nil {
		r.m.logger.Warn("reconcile questions", "agent", r.name, "err", err)
		return
	}
	live := map[string]bool{}
	now := time.Now()
	for _, q := range theirs {
		live[q.ID] = true
		ours, err := r.m.log.Question(ctx, q.ID)
		switch {
		case errors.Is(err, eventlog.ErrNotFound):
			d := event.QuestionAskedData{Question: q.ID, Questions: q.Questions}
			if q.Tool != nil {
				d.CallID = q.Tool.CallID
			}
			e := event.New(q.SessionID, event.QuestionAsked, now, d)
			e.Synthetic = true
			emit(e)
		case err == nil && ours.State != api.QuestionPending:
			if err := c.RejectQuestion(ctx, q.ID); err != nil && !errors.Is(err, opencode.ErrNotFound) {
				r.m.logger.Warn("reject a question that is over", "agent", r.name, "question", q.ID, "err", err)
			}
		}
	}
	pending, err := r.m.log.Questions(ctx, api.QuestionPending)
	if err != nil {
		return
	}
	for _, q := range pending {
		if q.Agent == r.name && !live[q.ID] {
			emit(expiredQuestion(q, "opencode no longer has this question", now))
		}
	}
}
