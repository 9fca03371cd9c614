package control

import (
	"context"
	"fmt"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/render"
)

// wait is a destructive call waiting for a person.
type wait struct {
	agent, session, turn string
	done                 chan verdict // buffered; written once
}

type verdict struct {
	decision, by, message string
}

// MaxApprovalArgs is the largest call, in canonical JSON, a person is
// asked to approve: below it a call is always shown whole, above it it is
// refused before anyone is asked.
const MaxApprovalArgs = 64 << 10

// ask records an approval bound to c (its digest), shows it where every
// approval is shown (GET /v1/approvals, the agent's event stream), and
// waits for a person, for the TTL, or for ctx. Only an approval lets the
// call go on; everything else is a refusal.
func (s *Service) ask(ctx context.Context, c Call, digest string, canon []byte) (id, by string, err error) {
	id = "tap_" + randid.Hex(12)
	w := &wait{done: make(chan verdict, 1)}
	display, args := render.Call(c.Tool, canon, append(s.Keys.All(), s.Secrets...))
	d := event.PermissionAskedData{Approval: id, Tool: c.Tool, Source: "taosagent", Tier: string(c.Tier), Digest: digest,
		Patterns: []string{render.Visible(s.Redact(c.Target))}, Args: args, Display: display}
	if c.Actor.Kind == Agent {
		w.agent = c.Actor.Name
		w.session, w.turn = s.Runner.CurrentTurn(ctx, c.Actor.Name)
		if c.Actor.Session != "" {
			w.session = c.Actor.Session
		}
	} else {
		d.Client = c.Actor.String()
	}
	expires := time.Now().Add(s.ApprovalTTL).UTC().Truncate(time.Millisecond)
	d.Expires = &expires
	e := event.New(w.session, event.PermissionAsked, time.Now(), d)
	e.Agent, e.Turn = w.agent, w.turn
	s.mu.Lock()
	s.waits[id] = w
	s.mu.Unlock()
	if _, err := s.Log.Append(context.WithoutCancel(ctx), e); err != nil {
		s.mu.Lock()
		delete(s.waits, id)
		s.mu.Unlock()
		return "", "", fmt.Errorf("%w: the approval cannot be recorded, so nothing was done", ErrRefused)
	}
	s.Logger.Info("waiting for a person's approval", "approval", id, "tool", c.Tool, "actor", c.Actor.String())
	timer := time.NewTimer(s.ApprovalTTL)
	defer timer.Stop()
	tick := time.NewTicker(s.Progress)
	defer tick.Stop()
	for {
		select {
		case v := <-w.done:
			if api.Decision(v.decision) == api.Once {
				return id, v.by, nil
			}
			msg := fmt.Sprintf("%v: %s rejected this call (approval %s); nothing was changed", ErrRefused, v.by, id)
			if v.message != "" {
				msg += "; their message: " + v.message
			}
			return id, v.by, refusal(msg)
		case <-tick.C:
			if fn, ok := ctx.Value(progressKey{}).(func(string)); ok && fn != nil {
				fn("waiting for a person to approve " + c.Tool + " (approval " + id + ")")
			}
		case <-timer.C:
			s.resolve(id, api.ApprovalExpired, "taosagent", "no decision within "+s.ApprovalTTL.String())
			return id, "", refusal(fmt.Sprintf("%v: no person approved this call within %v (approval %s expired); nothing was changed", ErrRefused, s.ApprovalTTL, id))
		case <-ctx.Done():
			s.resolve(id, api.ApprovalExpired, "taosagent", "the call was cancelled while it waited")
			return id, "", refusal(fmt.Sprintf("%v: the call was cancelled while it waited for approval %s; nothing was changed", ErrRefused, id))
		}
	}
}

type refusalError struct{ msg string }

func (e *refusalError) Error() string { return e.msg }
func (e *refusalError) Unwrap() error { return ErrRefused }

func refusal(msg string) error { return &refusalError{msg} }

// resolve ends the wait of approval id with a decision, records it, and
// reports whether id was waiting: of two answers, exactly one wins.
func (s *Service) resolve(id, decision, by, message string) bool {
	s.mu.Lock()
	w := s.waits[id]
	delete(s.waits, id)
	s.mu.Unlock()
	if w == nil {
		return false
	}
	e := event.New(w.session, event.PermissionResolved, time.Now(), event.PermissionResolvedData{
		Approval: id, Decision: decision, By: by, Message: message})
	e.Agent, e.Turn = w.agent, w.turn
	if _, err := s.Log.Append(context.Background(), e); err != nil {
		s.Logger.Error("record an approval's decision", "approval", id, "err", err)
	}
	w.done <- verdict{decision, by, message}
	return true
}

// Approvals lists approvals in state ("" for all): opencode's permission
// asks and taosagent's own, each with its source.
func (s *Service) Approvals(ctx context.Context, state string) ([]eventlog.Approval, error) {
	if err := api.CheckApprovalState(state); err != nil {
		return nil, Invalidf("%v", err)
	}
	return s.Log.Approvals(ctx, state)
}

// Decide answers approval id for a person. An agent, or anything that
// comes through MCP, is refused: a model can never approve, its own call
// or another's. taosagent's own approvals take "once" or "reject" only.
func (s *Service) Decide(ctx context.Context, a Actor, id, decision, message string) (eventlog.Approval, error) {
	s.init()
	c := Call{Actor: a, Tool: "approval." + decision, Target: id, Args: map[string]string{"decision": decision}}
	if !a.Person() {
		return eventlog.Approval{}, s.Refuse(ctx, c, fmt.Errorf("%w: only a person answers approvals, through the operator's API or the CLI; %s cannot", ErrForbidden, a))
	}
	if err := api.CheckDecision(decision, message); err != nil {
		return eventlog.Approval{}, Invalidf("%v", err)
	}
	var out eventlog.Approval
	err := s.Do(ctx, c, func(ctx context.Context) (string, error) {
		ap, err := s.Log.Approval(ctx, id)
		if err != nil {
			return "", err
		}
		if ap.Source != "taosagent" {
			out, err = s.Runner.Reply(ctx, id, decision, message, a.String())
			return "", err
		}
		if api.Decision(decision) == api.Always {
			return "", Invalidf(`decision: taosagent's destructive actions are approved one call at a time; "always" is not offered`)
		}
		if ap.State != api.ApprovalPending || !s.resolve(id, decision, a.String(), message) {
			if ap, err = s.Log.Approval(ctx, id); err == nil && ap.State == api.ApprovalPending {
				ap.State = "no longer waited for"
			}
			return "", fmt.Errorf("approval %s is already %s: %w", id, ap.State, eventlog.ErrConflict)
		}
		out, err = s.Log.Approval(ctx, id)
		return "", err
	})
	return out, err
}

// Questions lists the requests of opencode's question tool in state (""
// for all).
func (s *Service) Questions(ctx context.Context, state string) ([]eventlog.Question, error) {
	if err := api.CheckQuestionState(state); err != nil {
		return nil, Invalidf("%v", err)
	}
	return s.Log.Questions(ctx, state)
}

// Answer answers question request id for a person, or rejects it. As with
// approvals, an agent or anything that comes through MCP is refused: only
// a person answers what a model asks.
func (s *Service) Answer(ctx context.Context, a Actor, id string, ans api.AnswerRequest) (eventlog.Question, error) {
	s.init()
	verb := "answer"
	if ans.Reject {
		verb = "reject"
	}
	c := Call{Actor: a, Tool: "question." + verb, Target: id}
	if !a.Person() {
		return eventlog.Question{}, s.Refuse(ctx, c, fmt.Errorf("%w: only a person answers an agent's questions, through the operator's API, the CLI or the panel; %s cannot", ErrForbidden, a))
	}
	var out eventlog.Question
	err := s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		out, err = s.Runner.Answer(ctx, id, ans, a.String())
		return "", err
	})
	return out, err
}
