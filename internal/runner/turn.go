package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/randid"
)

// runTurn runs one queued input as a turn and returns when it has ended;
// more says whether other inputs were queued behind it.
func (r *agentRunner) runTurn(in eventlog.Input, more bool) {
	turn, ended := r.beginTurn(in.TraceID)
	defer r.endTurn()
	if r.m.quiet.Load() { // a hand-over began meanwhile (Quiesce sees this turn until here)
		return
	}
	a, err := r.m.log.Agent(r.ctx, r.name)
	if err != nil {
		return // deleted: its inbox was closed with it
	}
	// From here to the turn's end, the cap never stops its instance.
	defer r.holdInstance(more)()
	session, perr := r.prepare(a)
	var gone error // the conversation the message names, no longer in opencode
	if perr == nil && in.Conversation != "" && in.Conversation != session {
		// The message names another of the agent's conversations: the
		// turn runs there, and its events are that session's.
		defer r.setSession(session)
		session = in.Conversation
		r.setSession(session)
		gone = r.checkSession(session)
	}
	if err := r.emitSync(r.turnStarted(in, turn, session)); err != nil {
		// Nothing reaches opencode that is not recorded: the input stays
		// queued, parked until the log takes writes again.
		r.own.park = min(max(2*r.own.park, time.Second), time.Minute)
		r.m.logger.Error("the turn cannot start: its start could not be recorded; retrying later",
			"agent", r.name, "input", in.ID, "retry_in", r.own.park, "err", err)
		return
	}
	r.own.park = 0
	r.markStarted()
	if perr != nil {
		if r.ctx.Err() != nil {
			return // shutting down: the next start reports the interruption
		}
		r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{
			Code: event.CodeInstanceFailed, Message: "the agent's opencode could not be started: " + opencode.Redacted(perr.Error(), r.m.cfg.Keys.All())}), turn))
		r.stopDriver()
		return
	}
	if gone != nil {
		r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{
			Code: event.CodeOpencode, Message: "the turn could not start: " + opencode.Redacted(gone.Error(), r.m.cfg.Keys.All())}), turn))
		return
	}
	r.prompt(a, in, turn, session, ended)
}

// submitReq hands a submission to an idle runner (see submitNow).
type submitReq struct {
	ctx   context.Context
	in    eventlog.Input
	reply chan submitReply // buffered
}

type submitReply struct {
	in      eventlog.Input
	created bool
	err     error
}

// submitNow stores a submission that reached the runner while it was idle.
// When its instance is ready and its session checked on this run, the
// input and its turn's start are committed together and the prompt goes
// out at once: one commit before the prompt instead of two, and no hand-off
// through the inbox. Otherwise the input is queued as usual, for the loop.
// Either way the submitter is answered once the input is committed.
func (r *agentRunner) submitNow(req submitReq) {
	queue := func() {
		in, created, err := r.m.log.AddInput(req.ctx, req.in)
		if err == nil && created {
			r.noteQueued()
		}
		req.reply <- submitReply{in, created, err}
	}
	a, err := r.m.log.Agent(r.ctx, r.name)
	if err != nil {
		queue()
		return
	}
	defer r.holdInstance(false)()
	if !r.warm(a) || r.attachedBusy() || r.m.quiet.Load() || (req.in.Conversation != "" && req.in.Conversation != a.Session) {
		queue()
		return
	}
	turn, ended := r.beginTurn(req.in.TraceID)
	defer r.endTurn()
	if r.m.quiet.Load() { // a hand-over began meanwhile (Quiesce sees this turn until here)
		queue()
		return
	}
	session := a.Session
	in, created, started, startErr, err := r.m.log.AddAndStart(req.ctx, req.in, func(in eventlog.Input) event.Event {
		return r.turnStarted(in, turn, session)
	})
	req.reply <- submitReply{in, created, err}
	if err == nil && created {
		r.m.committed(startErr)
	}
	if startErr != nil {
		// Stored, but its start could not be: the loop tries again, as it
		// would any queued input, and parks it while the log refuses.
		r.m.logger.Warn("the turn could not start with its input; it stays queued", "agent", r.name, "input", in.ID, "err", startErr)
	}
	if !started {
		return // a duplicate, a failure, or others wait ahead: the loop goes on
	}
	r.own.park = 0
	r.markStarted()
	r.prompt(a, in, turn, session, ended)
}

// warm says whether a turn of agent a can be prompted now, as prepare
// would find it: the driver runs the agent as it is, on the current
// release, its stream connected, and a's session was checked on this run.
func (r *agentRunner) warm(a agent.Agent) bool {
	if r.cur.drv == nil || r.own.drvRun.exitErr() != nil || !a.Updated.Equal(r.own.drvUpdated) {
		return false
	}
	if _, v := r.m.cfg.Instances.Release(); v != r.own.drvVersion {
		return false
	}
	return a.Session != "" && a.Session == r.own.verified && r.own.drvRun == r.own.verifiedIn && r.cur.drv.Connected()
}

// beginTurn makes a new turn the running one, not yet started.
func (r *agentRunner) beginTurn(trace string) (string, *turnEnd) {
	turn := randid.ID("turn")
	ended := &turnEnd{done: make(chan struct{})}
	r.mu.Lock()
	select {
	case <-r.abort_: // meant for a turn that ended on its own meanwhile
	default:
	}
	r.cur.turn, r.cur.ended, r.cur.final, r.cur.started, r.cur.trace = turn, ended, false, false, trace
	r.mu.Unlock()
	return turn, ended
}

// markStarted notes that the running turn's start is committed.
func (r *agentRunner) markStarted() {
	r.mu.Lock()
	r.cur.started = true
	r.mu.Unlock()
}

// endTurn leaves no turn running.
func (r *agentRunner) endTurn() {
	r.mu.Lock()
	r.cur.turn, r.cur.started, r.cur.trace = "", false, ""
	r.mu.Unlock()
}

// prompt sends the started turn's input to opencode and serves the turn
// until it ends.
func (r *agentRunner) prompt(a agent.Agent, in eventlog.Input, turn, session string, ended *turnEnd) {
	// The prompt names its model: the input's, else the agent's (a model
	// switched in opencode's TUI answers only after it is written back).
	model := in.Model
	if model == "" {
		model = a.Model
	}
	r.mu.Lock()
	r.cur.model = model
	r.mu.Unlock()
	p := opencode.Prompt{Text: in.Text}
	p.ProviderID, p.ModelID, _ = agent.SplitModel(model)
	if err := r.cur.drv.Prompt(r.ctx, session, p); err != nil && r.ctx.Err() == nil {
		// The driver ends the turn on opencode's refusal; this covers the rest.
		r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{
			Code: event.CodeOpencode, Message: "the prompt could not be sent: " + opencode.Redacted(err.Error(), r.m.cfg.Keys.All())}), turn))
	}
	r.wait(turn, session, ended)
}

// wait serves the running turn until it ends: steers, aborts, and a driver
// that dies under it.
func (r *agentRunner) wait(turn, session string, ended *turnEnd) {
	var abortBy <-chan time.Time
	for {
		select {
		case <-ended.done:
			return
		case <-r.wake:
			r.steer(turn, session)
		case <-r.abort_:
			if abortBy == nil {
				ctx, cancel := context.WithTimeout(r.ctx, r.m.cfg.AbortWait)
				if err := r.cur.drv.Abort(ctx, session); err != nil {
					r.m.logger.Warn("abort", "agent", r.name, "err", err)
				}
				cancel()
				abortBy = time.After(r.m.cfg.AbortWait)
			}
		case <-abortBy:
			// opencode did not settle: restart it, and end the turn here.
			r.m.logger.Warn("abort: opencode did not stop in time; restarting it", "agent", r.name)
			r.stopDriver()
			r.expireAsks(turn, "the turn was aborted")
			r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{Code: event.CodeAborted,
				Message: "the turn was aborted; opencode did not stop in time and was restarted"}), turn))
		case <-r.own.drvDone:
			err := r.own.drvRun.exitErr()
			r.stopDriver()
			r.expireAsks(turn, "opencode stopped")
			msg := "the turn was interrupted: the agent's opencode stopped"
			if err != nil && !errors.Is(err, context.Canceled) {
				msg += ": " + opencode.Redacted(err.Error(), r.m.cfg.Keys.All())
			}
			r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{Code: event.CodeInterrupted, Message: msg}), turn))
		case <-r.ctx.Done():
			return
		}
	}
}

// steer sends the queued steer inputs into the running turn. An input that
// arrives while the turn is already settling waits for a turn of its own.
func (r *agentRunner) steer(turn, session string) {
	queued, err := r.m.log.Inputs(r.ctx, r.name, "queued")
	if err != nil {
		return
	}
	for _, in := range queued {
		if in.Mode != api.ModeSteer || !r.cur.drv.Busy(r.ctx, session) {
			continue
		}
		r.emitSync(withTurn(event.New(session, event.InputSteered, time.Now(), event.InputData{
			Input: in.ID, ClientID: in.ClientID, Mode: in.Mode, Text: in.Text, Model: in.Model, TraceID: in.TraceID}), turn))
		model := in.Model
		if model == "" {
			r.mu.Lock()
			model = r.cur.model
			r.mu.Unlock()
		}
		p := opencode.Prompt{Text: in.Text}
		p.ProviderID, p.ModelID, _ = agent.SplitModel(model)
		if err := r.cur.drv.Prompt(r.ctx, session, p); err != nil {
			r.m.logger.Warn("steer", "agent", r.name, "err", err)
		}
	}
}

// abort asks the run loop to abort the running turn and waits for its end.
func (r *agentRunner) abort(ctx context.Context) (string, error) {
	// Under mu, so that the signal belongs to this turn: a turn whose
	// terminal event is taken has nothing left to abort, and runTurn
	// clears a signal that its turn's end overtook.
	r.mu.Lock()
	turn, ended := r.cur.turn, r.cur.ended
	if turn == "" || r.cur.final {
		r.mu.Unlock()
		return "", ErrIdle
	}
	select {
	case r.abort_ <- struct{}{}:
	default:
	}
	r.mu.Unlock()
	wait := time.NewTimer(r.m.cfg.AbortWait + r.m.cfg.StartWait)
	defer wait.Stop()
	select {
	case <-ended.done:
		if ended.err != nil {
			return turn, fmt.Errorf("the turn's end could not be recorded: %w", ended.err)
		}
		return turn, nil
	case <-wait.C:
		return turn, errors.New("the turn did not end after the abort")
	case <-ctx.Done():
		return turn, ctx.Err()
	}
}

// reply answers an approval through opencode and records who answered.
func (r *agentRunner) reply(ctx context.Context, ap eventlog.Approval, decision, message, by string) (eventlog.Approval, error) {
	r.mu.Lock()
	drv := r.cur.drv
	if drv != nil {
		r.cur.resolved[ap.ID] = true
	}
	r.mu.Unlock()
	if drv == nil {
		return ap, fmt.Errorf("approval %s: its agent's opencode is not running: %w", ap.ID, eventlog.ErrConflict)
	}
	err := drv.ReplyPermission(ctx, ap.ID, decision, message)
	if errors.Is(err, opencode.ErrNotFound) {
		r.mu.Lock()
		delete(r.cur.resolved, ap.ID)
		r.mu.Unlock()
		r.emit(expired(ap, "opencode no longer has this request", time.Now()))
		return ap, fmt.Errorf("approval %s had expired: %w", ap.ID, eventlog.ErrConflict)
	}
	if err != nil {
		r.mu.Lock()
		delete(r.cur.resolved, ap.ID)
		r.mu.Unlock()
		return ap, err
	}
	e := event.New(ap.Session, event.PermissionResolved, time.Now(), event.PermissionResolvedData{
		Approval: ap.ID, Decision: decision, By: by, Message: message})
	e.Turn = ap.Turn
	// Through the log directly: opencode's own echo is what emit drops.
	e.Agent = r.name
	if _, err := r.m.log.Append(context.Background(), e); err != nil {
		return ap, err
	}
	return r.m.log.Approval(ctx, ap.ID)
}
