package runner

import (
	"context"
	"encoding/json"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
)

// inTurn are the kinds of event that belong to a turn.
var inTurn = map[event.Kind]bool{event.Delta: true, event.Reasoning: true, event.ToolCall: true, event.ToolResult: true,
	event.Final: true, event.Error: true, event.Status: true, event.PermissionAsked: true, event.PermissionResolved: true,
	event.QuestionAsked: true, event.QuestionResolved: true, event.Usage: true}

// emit stores e for the agent: it fills agent and turn, lets only the first
// terminal event of a turn through, and drops opencode's echo of an answer
// given through us. It does not wait for the commit: the log keeps the
// order, groups the commits, and only then shows e to anyone. The driver's
// events take this path.
func (r *agentRunner) emit(e event.Event) { r.store(e, false) }

// emitSync is emit, returning once e is committed: for the runner's own
// events whose projection the runner reads next (turn.started, steers).
func (r *agentRunner) emitSync(e event.Event) error { return r.store(e, true) }

// store stores e; with wait, it returns the commit's error. Each concern
// is one step, in this order, under mu: the turn e belongs to (attribute),
// an attached client's turn (attached), a turn's one end (terminal), the
// echo of an answer given through us (echo); then the commit.
func (r *agentRunner) store(e event.Event, wait bool) error {
	e.Agent = r.name
	r.mu.Lock()
	r.attribute(&e)
	opened, isAttached := r.attached(&e)
	ended, once := r.terminal(e, isAttached)
	keep := once && !r.echo(e)
	r.mu.Unlock()
	if !keep {
		return nil
	}
	err := r.commit(append(opened, e), e, ended, wait)
	if isAttached && e.Kind.Terminal() {
		r.endAttached(e.Turn)
	}
	return err
}

// endAttached ends an attached client's turn in the runner's eyes once its
// terminal event is on its way to the log: a turn the runner starts next
// is stored after that end, never before it.
func (r *agentRunner) endAttached(turn string) {
	r.mu.Lock()
	if r.cur.foreign == turn {
		r.cur.foreign = ""
	}
	r.mu.Unlock()
	select {
	case r.activity <- struct{}{}:
	default:
	}
}

// attribute gives e the running turn and its trace id when e is on the
// pinned session (or on none). The running turn is on the pinned session:
// another session's events (a person's own session in the TUI, a
// subagent's) are not its, and another session's end must not end it.
// Called under mu.
func (r *agentRunner) attribute(e *event.Event) {
	if e.Turn == "" && (e.Session == "" || e.Session == r.cur.session) {
		e.Turn = r.cur.turn
	}
	if e.Turn != "" && e.Turn == r.cur.turn && e.TraceID == "" {
		e.TraceID = r.cur.trace
	}
}

// attached records a turn that a client attached to opencode runs (the
// TUI prompts the pinned session itself) like any other: it opens with a
// turn.started of mode "attached", returned to be stored before e, and
// ends with its terminal event (after which endAttached). It reports
// whether e is such a turn's. Called under mu, after attribute.
func (r *agentRunner) attached(e *event.Event) (opened []event.Event, ok bool) {
	if e.Turn != "" || e.Session == "" || e.Session != r.cur.session || !inTurn[e.Kind] || e.Synthetic {
		return nil, false
	}
	if r.cur.foreign == "" && !e.Kind.Terminal() {
		r.cur.foreign = randid.ID("turn")
		start := withTurn(event.New(e.Session, event.TurnStarted, e.Time, event.InputData{Mode: api.ModeAttached}), r.cur.foreign)
		start.Agent = r.name
		opened = append(opened, start)
	}
	e.Turn = r.cur.foreign
	select {
	case r.activity <- struct{}{}:
	default:
	}
	return opened, true
}

// terminal lets only the first terminal event of the running turn through
// (keep), and returns that turn's end, to be closed once e is committed.
// Called under mu.
func (r *agentRunner) terminal(e event.Event, attached bool) (ended *turnEnd, keep bool) {
	if !e.Kind.Terminal() || e.Turn == "" || attached {
		return nil, true
	}
	if e.Turn != r.cur.turn || r.cur.final {
		return nil, false // a turn ends once
	}
	r.cur.final = true
	return r.cur.ended, true
}

// echo says whether e is opencode's report of an answer given through
// reply or answer, which recorded it already (with who answered). Called
// under mu.
func (r *agentRunner) echo(e event.Event) bool {
	if e.Synthetic {
		return false
	}
	var id string
	switch e.Kind {
	case event.PermissionResolved:
		id = approvalOf(e)
	case event.QuestionResolved:
		var d event.QuestionResolvedData
		json.Unmarshal(e.Data, &d)
		id = d.Question
	default:
		return false
	}
	if !r.cur.resolved[id] {
		return false
	}
	delete(r.cur.resolved, id)
	return true
}

// commit appends evs (the last is e) and then, once committed, ends the
// turn e ends and passes on a model switch made in opencode.
func (r *agentRunner) commit(evs []event.Event, e event.Event, ended *turnEnd, wait bool) error {
	done := func(_ []event.Event, err error) {
		r.m.committed(err)
		if err != nil {
			r.m.logger.Error("store event", "agent", r.name, "kind", e.Kind, "err", err)
		}
		if ended != nil {
			ended.err = err
			close(ended.done) // committed (or failed for good): the turn is over
		}
		if err == nil && e.Kind == event.ModelSwitched && r.m.cfg.OnModelSwitch != nil {
			var d event.ModelSwitchedData
			if json.Unmarshal(e.Data, &d) == nil && d.Source == "opencode" {
				go r.m.cfg.OnModelSwitch(r.name, d.From, d.To)
			}
		}
	}
	if !wait {
		r.m.log.AppendAsync(evs, done)
		return nil
	}
	_, err := r.m.log.Append(context.Background(), evs...)
	done(nil, err)
	return err
}

func approvalOf(e event.Event) string {
	var d event.PermissionResolvedData
	json.Unmarshal(e.Data, &d)
	return d.Approval
}

// turnStarted is the event that starts turn of input in on session, whole:
// it is stored as it is, through store or straight into the log.
func (r *agentRunner) turnStarted(in eventlog.Input, turn, session string) event.Event {
	e := withTurn(event.New(session, event.TurnStarted, time.Now(), event.InputData{
		Input: in.ID, ClientID: in.ClientID, Mode: in.Mode, Text: in.Text, Model: in.Model, TraceID: in.TraceID, Conversation: session, Schedule: in.Schedule, Task: in.Task, From: in.From}), turn)
	e.Agent, e.TraceID = r.name, in.TraceID
	return e
}

func withTurn(e event.Event, turn string) event.Event {
	e.Turn = turn
	return e
}

// expireAsks records every pending approval and question of turn as
// expired.
func (r *agentRunner) expireAsks(turn, why string) {
	if pending, err := r.m.log.Approvals(context.Background(), api.ApprovalPending); err == nil {
		for _, ap := range pending {
			if ap.Agent == r.name && ap.Turn == turn {
				r.emit(expired(ap, why, time.Now()))
			}
		}
	}
	if pending, err := r.m.log.Questions(context.Background(), api.QuestionPending); err == nil {
		for _, q := range pending {
			if q.Agent == r.name && q.Turn == turn {
				r.emit(expiredQuestion(q, why, time.Now()))
			}
		}
	}
}

// expired is the synthetic event that records approval ap as expired, for
// why: the one shape of an expiry taosagent decides (opencode's own is the
// codec's).
func expired(ap eventlog.Approval, why string, at time.Time) event.Event {
	e := event.New(ap.Session, event.PermissionResolved, at, event.PermissionResolvedData{
		Approval: ap.ID, Decision: api.ApprovalExpired, By: "taosagent", Message: why})
	e.Agent, e.Turn, e.Synthetic = ap.Agent, ap.Turn, true
	return e
}
