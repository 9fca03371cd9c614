package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/render"
	"github.com/taosagent/taosagent/internal/reply"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// agentRunner runs one agent's turns, one at a time, from its inbox. Its
// run goroutine owns the driver; other goroutines talk to it through wake
// and abortCh, and read the current turn under mu.
type agentRunner struct {
	m      *Manager
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	abort_ chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	turn     string   // the running turn, "" when idle
	trace    string   // the trace id of the running turn's input
	session  string   // the pinned session
	ended    *turnEnd // the running turn's end
	final    bool     // turn's terminal event was taken
	started  bool     // turn's start is committed
	drv      *Driver
	resolved map[string]bool // approvals answered through us
	foreign  string          // a turn a client attached to opencode runs (the TUI), "" if none
	queuedN  uint64          // inputs noted as stored queued (noteQueued)

	attachReq chan attachReq // to run: start the instance for an attached client
	submit    chan submitReq // to run, while idle: a new input
	activity  chan struct{}  // to run: an attached client's turn is under way (not idle)

	// Owned by run.
	drvCancel  context.CancelFunc
	drvDone    chan struct{} // closed when the driver's Run returned
	drvRun     *driverRun
	drvUpdated time.Time     // the agent's Updated as of the driver's spec
	drvSpec    string        // the configKey of the agent the driver runs
	drvVersion string        // the opencode release the driver's instance runs
	model      string        // the model the running turn prompts with
	park       time.Duration // wait before the next turn: its start could not be recorded
	verified   string        // the pinned session, known to exist in opencode …
	verifiedIn *driverRun    // … as of this driver run
}

// turnEnd is how a turn ended: err is set before done is closed, and is
// the commit error of its terminal event, if that failed.
type turnEnd struct {
	done chan struct{}
	err  error
}

// driverRun is one run of a driver: err is set before done is closed.
type driverRun struct {
	done chan struct{}
	err  error // why Run returned, nil when it was stopped
}

// exitErr is why the driver stopped on its own, nil while it runs.
func (d *driverRun) exitErr() error {
	select {
	case <-d.done:
		return d.err
	default:
		return nil
	}
}

func newAgentRunner(m *Manager, name string) *agentRunner {
	ctx, cancel := context.WithCancel(m.ctx)
	return &agentRunner{m: m, name: name, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		abort_: make(chan struct{}, 1), done: make(chan struct{}), resolved: map[string]bool{},
		attachReq: make(chan attachReq), submit: make(chan submitReq), activity: make(chan struct{}, 1)}
}

// attachReq asks the run goroutine for the agent's instance and session.
type attachReq struct {
	reply chan attachReply
}

type attachReply struct {
	client  *opencode.Client
	session string
	err     error
}

func (r *agentRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *agentRunner) currentTurn() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.turn
}

// startedTurn is the running turn once its start is committed: what a
// client may be shown (durable before visible), "" otherwise.
func (r *agentRunner) startedTurn() string {
	turn, _ := r.startedTurnTrace()
	return turn
}

// startedTurnTrace is the started turn and its trace id.
func (r *agentRunner) startedTurnTrace() (turn, trace string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return "", ""
	}
	return r.turn, r.trace
}

func (r *agentRunner) driver() *Driver {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drv
}

func (r *agentRunner) run() {
	defer close(r.done)
	defer r.stopDriver()
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		queued, err := r.inbox()
		if err != nil && r.ctx.Err() == nil {
			r.m.logger.Error("read inbox", "agent", r.name, "err", err)
		}
		// A person's turn on the pinned session (the TUI's) goes first: a
		// turn started under it would be given its events and its end.
		if len(queued) > 0 && r.ctx.Err() == nil && !r.attachedBusy() {
			r.runTurn(queued[0], len(queued) > 1)
			if r.park > 0 {
				select {
				case <-time.After(r.park):
				case <-r.ctx.Done():
				}
			}
			continue
		}
		if r.drv != nil {
			idle.Reset(r.m.cfg.IdleTimeout)
		}
		select {
		case req := <-r.attachReq:
			req.reply <- r.attach()
		case <-r.activity: // an attached client's turn: not idle
		case <-r.wake:
		case req := <-r.submit:
			r.submitNow(req)
		case <-r.abort_: // nothing runs
		case <-idle.C:
			r.m.logger.Info("idle: stopping opencode", "agent", r.name)
			r.stopDriver()
		case <-r.drvDone:
			r.stopDriver()
		case <-r.ctx.Done():
			return
		}
		idle.Stop()
	}
}

// attach starts the agent's instance and pins its session, as a turn
// would, for a client that attaches to opencode itself (the TUI).
func (r *agentRunner) attach() attachReply {
	a, err := r.m.log.Agent(r.ctx, r.name)
	if err != nil {
		return attachReply{err: err}
	}
	session, err := r.prepare(a)
	if err != nil {
		return attachReply{err: err}
	}
	c, err := r.client(r.drvRun)
	return attachReply{client: c, session: session, err: err}
}

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

// store stores e; with wait, it returns the commit's error.
func (r *agentRunner) store(e event.Event, wait bool) error {
	e.Agent = r.name
	r.mu.Lock()
	// The running turn is on the pinned session: another session's events
	// (a person's own session in the TUI, a subagent's) are not its, and
	// another session's end must not end it.
	if e.Turn == "" && (e.Session == "" || e.Session == r.session) {
		e.Turn = r.turn
	}
	if e.Turn != "" && e.Turn == r.turn && e.TraceID == "" {
		e.TraceID = r.trace
	}
	// A turn that a client attached to opencode runs (the TUI prompts
	// the pinned session itself) is recorded like any other: it opens
	// with a turn.started of mode "attached" and ends with its terminal
	// event.
	var opened []event.Event
	attached := e.Turn == "" && e.Session != "" && e.Session == r.session && inTurn[e.Kind] && !e.Synthetic
	if attached {
		if r.foreign == "" && !e.Kind.Terminal() {
			r.foreign = randid.ID("turn")
			opened = append(opened, withTurn(event.New(e.Session, event.TurnStarted, e.Time, event.InputData{Mode: "attached"}), r.foreign))
			for i := range opened {
				opened[i].Agent = r.name
			}
		}
		e.Turn = r.foreign
		if e.Kind.Terminal() {
			r.foreign = ""
		}
		select {
		case r.activity <- struct{}{}:
		default:
		}
	}
	var ended *turnEnd
	if e.Kind.Terminal() && e.Turn != "" && !attached {
		if e.Turn != r.turn || r.final {
			r.mu.Unlock()
			return nil // a turn ends once
		}
		r.final, ended = true, r.ended
	}
	if e.Kind == event.PermissionResolved && !e.Synthetic {
		if id := approvalOf(e); r.resolved[id] {
			delete(r.resolved, id)
			r.mu.Unlock()
			return nil
		}
	}
	r.mu.Unlock()
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
		r.m.log.AppendAsync(append(opened, e), done)
		return nil
	}
	_, err := r.m.log.Append(context.Background(), append(opened, e)...)
	done(nil, err)
	return err
}

func approvalOf(e event.Event) string {
	var d event.PermissionResolvedData
	json.Unmarshal(e.Data, &d)
	return d.Approval
}

// runTurn runs one queued input as a turn and returns when it has ended;
// more says whether other inputs were queued behind it.
func (r *agentRunner) runTurn(in eventlog.Input, more bool) {
	turn, ended := r.beginTurn(in.TraceID)
	defer r.endTurn()
	a, err := r.m.log.Agent(r.ctx, r.name)
	if err != nil {
		return // deleted: its inbox was closed with it
	}
	// From here to the turn's end, the cap never stops its instance.
	defer r.holdInstance(more)()
	session, perr := r.prepare(a)
	if err := r.emitSync(r.turnStarted(in, turn, session)); err != nil {
		// Nothing reaches opencode that is not recorded: the input stays
		// queued, parked until the log takes writes again.
		r.park = min(max(2*r.park, time.Second), time.Minute)
		r.m.logger.Error("the turn cannot start: its start could not be recorded; retrying later",
			"agent", r.name, "input", in.ID, "retry_in", r.park, "err", err)
		return
	}
	r.park = 0
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
	if !r.warm(a) || r.attachedBusy() {
		queue()
		return
	}
	turn, ended := r.beginTurn(req.in.TraceID)
	defer r.endTurn()
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
	r.park = 0
	r.markStarted()
	r.prompt(a, in, turn, session, ended)
}

// warm says whether a turn of agent a can be prompted now, as prepare
// would find it: the driver runs the agent as it is, on the current
// release, its stream connected, and a's session was checked on this run.
func (r *agentRunner) warm(a agent.Agent) bool {
	if r.drv == nil || r.drvRun.exitErr() != nil || !a.Updated.Equal(r.drvUpdated) {
		return false
	}
	if _, v := r.m.cfg.Sup.Release(); v != r.drvVersion {
		return false
	}
	return a.Session != "" && a.Session == r.verified && r.drvRun == r.verifiedIn && r.drv.Connected()
}

// attachedBusy says whether a client attached to opencode (the TUI) runs a
// turn of its own on the pinned session: its events are coming in and its
// end is not yet stored.
func (r *agentRunner) attachedBusy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.foreign != ""
}

// holdInstance keeps the agent's instance from being stopped for the cap
// until the returned function is called. That function first tells the
// supervisor whether input waits for a turn after this one (more, or any
// noted meanwhile), so that the instance a turn leaves idle is stopped for
// a waiting agent only if no other idle instance of an agent without input
// could be. It reads nothing: a message sent as a turn ends finds the
// runner idle as soon as it can.
func (r *agentRunner) holdInstance(more bool) (release func()) {
	r.mu.Lock()
	n := r.queuedN
	r.mu.Unlock()
	rel := r.m.cfg.Sup.Hold(r.name)
	return func() {
		r.markQueued(n, more)
		rel()
	}
}

// inbox returns the agent's queued inputs and tells the supervisor whether
// any wait. An input noted meanwhile (noteQueued) keeps the agent marked.
func (r *agentRunner) inbox() ([]eventlog.Input, error) {
	r.mu.Lock()
	n := r.queuedN
	r.mu.Unlock()
	queued, err := r.m.log.Inputs(r.ctx, r.name, "queued")
	if err != nil {
		return nil, err
	}
	r.markQueued(n, len(queued) > 0)
	return queued, nil
}

// markQueued tells the supervisor whether the agent has input waiting, as
// learned since the n-th noted input; a later one noted meanwhile keeps
// the agent marked.
func (r *agentRunner) markQueued(n uint64, queued bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queuedN == n {
		r.m.cfg.Sup.SetQueued(r.name, queued)
	}
}

// noteQueued marks the agent as having input waiting: an input was just
// stored queued.
func (r *agentRunner) noteQueued() {
	r.mu.Lock()
	r.queuedN++
	r.m.cfg.Sup.SetQueued(r.name, true)
	r.mu.Unlock()
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
	r.turn, r.ended, r.final, r.started, r.trace = turn, ended, false, false, trace
	r.mu.Unlock()
	return turn, ended
}

// markStarted notes that the running turn's start is committed.
func (r *agentRunner) markStarted() {
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
}

// endTurn leaves no turn running.
func (r *agentRunner) endTurn() {
	r.mu.Lock()
	r.turn, r.started, r.trace = "", false, ""
	r.mu.Unlock()
}

// turnStarted is the event that starts turn of input in on session, whole:
// it is stored as it is, through store or straight into the log.
func (r *agentRunner) turnStarted(in eventlog.Input, turn, session string) event.Event {
	e := withTurn(event.New(session, event.TurnStarted, time.Now(), event.InputData{
		Input: in.ID, ClientID: in.ClientID, Mode: in.Mode, Text: in.Text, Model: in.Model, TraceID: in.TraceID}), turn)
	e.Agent, e.TraceID = r.name, in.TraceID
	return e
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
	r.model = model
	r.mu.Unlock()
	p := opencode.Prompt{Text: in.Text}
	p.ProviderID, p.ModelID, _ = agent.SplitModel(model)
	if err := r.drv.Prompt(r.ctx, session, p); err != nil && r.ctx.Err() == nil {
		// The driver ends the turn on opencode's refusal; this covers the rest.
		r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{
			Code: event.CodeOpencode, Message: "the prompt could not be sent: " + opencode.Redacted(err.Error(), r.m.cfg.Keys.All())}), turn))
	}
	r.wait(turn, session, ended)
}

// configKey is what of agent a its opencode's config is made of: a change
// of it needs a fresh instance. Its model (named by every prompt), its
// budget and fallback (the gateway's), its session and times are not.
func configKey(a agent.Agent) string {
	a.Model, a.Budget, a.Fallback, a.Session = "", nil, "", ""
	a.Created, a.Updated = time.Time{}, time.Time{}
	a.UpstreamKey, a.HasUpstreamKey = "", false
	b, _ := json.Marshal(a)
	return string(b)
}

func withTurn(e event.Event, turn string) event.Event {
	e.Turn = turn
	return e
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
				if err := r.drv.Abort(ctx, session); err != nil {
					r.m.logger.Warn("abort", "agent", r.name, "err", err)
				}
				cancel()
				abortBy = time.After(r.m.cfg.AbortWait)
			}
		case <-abortBy:
			// opencode did not settle: restart it, and end the turn here.
			r.m.logger.Warn("abort: opencode did not stop in time; restarting it", "agent", r.name)
			r.stopDriver()
			r.expireApprovals(turn, "the turn was aborted")
			r.emit(withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{Code: event.CodeAborted,
				Message: "the turn was aborted; opencode did not stop in time and was restarted"}), turn))
		case <-r.drvDone:
			err := r.drvRun.exitErr()
			r.stopDriver()
			r.expireApprovals(turn, "opencode stopped")
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
		if in.Mode != "steer" || !r.drv.Busy(r.ctx, session) {
			continue
		}
		r.emitSync(withTurn(event.New(session, event.InputSteered, time.Now(), event.InputData{
			Input: in.ID, ClientID: in.ClientID, Mode: in.Mode, Text: in.Text, Model: in.Model, TraceID: in.TraceID}), turn))
		model := in.Model
		if model == "" {
			r.mu.Lock()
			model = r.model
			r.mu.Unlock()
		}
		p := opencode.Prompt{Text: in.Text}
		p.ProviderID, p.ModelID, _ = agent.SplitModel(model)
		if err := r.drv.Prompt(r.ctx, session, p); err != nil {
			r.m.logger.Warn("steer", "agent", r.name, "err", err)
		}
	}
}

// expireApprovals records every pending approval of turn as expired.
func (r *agentRunner) expireApprovals(turn, why string) {
	pending, err := r.m.log.Approvals(context.Background(), api.ApprovalPending)
	if err != nil {
		return
	}
	for _, ap := range pending {
		if ap.Agent == r.name && ap.Turn == turn {
			e := event.New(ap.Session, event.PermissionResolved, time.Now(), event.PermissionResolvedData{
				Approval: ap.ID, Decision: api.ApprovalExpired, By: "taosagent", Message: why})
			e.Turn, e.Synthetic = turn, true
			r.emit(e)
		}
	}
}

// abort asks the run loop to abort the running turn and waits for its end.
func (r *agentRunner) abort(ctx context.Context) (string, error) {
	// Under mu, so that the signal belongs to this turn: a turn whose
	// terminal event is taken has nothing left to abort, and runTurn
	// clears a signal that its turn's end overtook.
	r.mu.Lock()
	turn, ended := r.turn, r.ended
	if turn == "" || r.final {
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
	drv := r.drv
	if drv != nil {
		r.resolved[ap.ID] = true
	}
	r.mu.Unlock()
	if drv == nil {
		return ap, fmt.Errorf("approval %s: its agent's opencode is not running: %w", ap.ID, eventlog.ErrConflict)
	}
	err := drv.ReplyPermission(ctx, ap.ID, decision, message)
	if errors.Is(err, opencode.ErrNotFound) {
		r.mu.Lock()
		delete(r.resolved, ap.ID)
		r.mu.Unlock()
		e := event.New(ap.Session, event.PermissionResolved, time.Now(), event.PermissionResolvedData{
			Approval: ap.ID, Decision: api.ApprovalExpired, By: "taosagent", Message: "opencode no longer has this request"})
		e.Turn, e.Synthetic = ap.Turn, true
		r.emit(e)
		return ap, fmt.Errorf("approval %s had expired: %w", ap.ID, eventlog.ErrConflict)
	}
	if err != nil {
		r.mu.Lock()
		delete(r.resolved, ap.ID)
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

// prepare makes sure the driver runs the agent's current spec, its instance
// is ready, and the pinned session exists; it returns the session.
func (r *agentRunner) prepare(a agent.Agent) (string, error) {
	var c *opencode.Client
	var run *driverRun
	for attempt := 1; ; attempt++ {
		if r.drv != nil && r.drvRun.exitErr() == nil && !a.Updated.Equal(r.drvUpdated) {
			// The agent changed. Only a change of its config needs a fresh
			// instance: every prompt names its model, so a change of model
			// alone (a switch made in the TUI, written back) does not stop
			// an instance a person may be attached to.
			if configKey(a) != r.drvSpec {
				r.stopDriver()
			} else {
				r.drvUpdated = a.Updated
			}
		}
		if r.drv != nil && r.drvRun.exitErr() != nil {
			// Its instance was stopped meanwhile (idle, or to make room
			// under the cap).
			r.stopDriver()
		}
		if _, v := r.m.cfg.Sup.Release(); r.drv != nil && v != r.drvVersion {
			// The operator switched opencode releases (an upgrade or a
			// rollback): this agent moves to it now, between two turns.
			r.m.logger.Info("the agent moves to another opencode release", "agent", r.name, "from", r.drvVersion, "to", v)
			r.stopDriver()
		}
		if r.drv == nil {
			if err := r.startDriver(a); err != nil {
				return a.Session, err
			}
		}
		var err error
		run = r.drvRun
		c, err = r.client(run)
		if err == nil {
			break
		}
		if errors.Is(err, supervisor.ErrStopped) && attempt < 3 && r.ctx.Err() == nil {
			r.stopDriver()
			r.m.logger.Info("the agent's instance was stopped before its turn; starting it again", "agent", r.name)
			continue
		}
		return a.Session, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.m.cfg.StartWait)
	defer cancel()
	if a.Session != "" && a.Session == r.verified && run == r.verifiedIn {
		return a.Session, nil // checked on this driver run already
	}
	if a.Session != "" {
		if _, err := c.GetSession(ctx, a.Session); err == nil {
			r.verified, r.verifiedIn = a.Session, run
			r.setSession(a.Session)
			return a.Session, nil
		} else if !errors.Is(err, opencode.ErrNotFound) {
			return a.Session, err
		}
	}
	s, err := c.CreateSession(ctx, "taosagent "+a.Name)
	if err != nil {
		return "", err
	}
	if err := r.m.log.SetSession(ctx, a.Name, s.ID); err != nil {
		return "", err
	}
	r.setSession(s.ID)
	r.verified, r.verifiedIn = s.ID, run
	return s.ID, nil
}

func (r *agentRunner) setSession(s string) {
	r.mu.Lock()
	r.session = s
	r.mu.Unlock()
}

// client waits for the driver of run to be ready, at most StartWait.
func (r *agentRunner) client(run *driverRun) (*opencode.Client, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.m.cfg.StartWait)
	defer cancel()
	go func() {
		select {
		case <-run.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := r.drv.Client(ctx)
	if err != nil {
		if exit := run.exitErr(); exit != nil {
			return nil, exit
		} else if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("opencode was not ready within %s", r.m.cfg.StartWait)
		}
		return nil, err
	}
	return c, nil
}

func (r *agentRunner) startDriver(a agent.Agent) error {
	if r.m.cfg.Sync != nil {
		// The agent's permitted models are brought up to date with what
		// its upstream key may access before its opencode is configured.
		if synced, err := r.m.cfg.Sync(r.ctx, a.Name); err == nil {
			a = synced
		} else {
			r.m.logger.Warn("the agent's models could not be synced; starting with those it has", "agent", a.Name, "err", err)
		}
	}
	spec, err := r.m.spec(r.ctx, a)
	if err != nil {
		return err
	}
	d := NewDriver(r.m.cfg.Sup, spec, r.emit, r.m.logger)
	d.Redact = r.m.cfg.Keys.All()
	secrets := append([]string{spec.Config.Provider.APIKey}, d.Redact...)
	d.Raw = func(ev opencode.Event) {
		r.m.log.AddRaw(eventlog.Raw{Agent: r.name, Time: time.Now(), Type: ev.Type, Body: render.RedactedBytes(ev.Raw, secrets)})
	}
	d.OnReconnect = r.reconcile
	ctx, cancel := context.WithCancel(r.ctx)
	run := &driverRun{done: make(chan struct{})}
	r.drvCancel, r.drvDone, r.drvRun, r.drvUpdated, r.drvSpec = cancel, run.done, run, a.Updated, configKey(a)
	_, r.drvVersion = r.m.cfg.Sup.Release()
	r.mu.Lock()
	r.drv = d
	r.mu.Unlock()
	go func() {
		err := d.Run(ctx)
		if ctx.Err() == nil {
			run.err = err
		}
		close(run.done)
	}()
	return nil
}

// stopDriver stops the driver and the agent's opencode; no-op if none runs.
func (r *agentRunner) stopDriver() {
	if r.drvCancel == nil {
		return
	}
	r.drvCancel()
	r.m.cfg.Sup.Stop(r.name)
	<-r.drvDone
	r.mu.Lock()
	r.drv = nil
	foreign, session := r.foreign, r.session
	r.foreign = ""
	r.mu.Unlock()
	if foreign != "" {
		// An attached client's turn that opencode's stop cut short ends
		// here, so that it does not hold the agent's inbox.
		e := withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{Code: event.CodeInterrupted,
			Message: "the turn was interrupted: the agent's opencode stopped"}), foreign)
		e.Agent = r.name
		r.m.log.AppendAsync([]event.Event{e}, func(_ []event.Event, err error) { r.m.committed(err) })
	}
	r.drvCancel, r.drvDone, r.drvRun = nil, nil, nil
}

// reconcile runs after the event stream reconnected: approvals we hold as
// pending that opencode no longer has expired while we were away; asks we
// never saw are recorded now. Both as synthetic events.
func (r *agentRunner) reconcile(ctx context.Context, c *opencode.Client, emit func(...event.Event)) {
	theirs, err := c.Permissions(ctx)
	if err != nil {
		r.m.logger.Warn("reconcile permissions", "agent", r.name, "err", err)
		return
	}
	ours, err := r.m.log.Approvals(ctx, api.ApprovalPending)
	if err != nil {
		return
	}
	open := map[string]bool{}
	for _, ap := range ours {
		if ap.Agent == r.name {
			open[ap.ID] = true
		}
	}
	live := map[string]bool{}
	now := time.Now()
	for _, p := range theirs {
		live[p.ID] = true
		if !open[p.ID] {
			e := event.New(p.SessionID, event.PermissionAsked, now, reply.PermissionAsked(p))
			e.Synthetic = true
			emit(e)
		}
	}
	for _, ap := range ours {
		if ap.Agent == r.name && !live[ap.ID] {
			e := event.New(ap.Session, event.PermissionResolved, now, event.PermissionResolvedData{
				Approval: ap.ID, Decision: api.ApprovalExpired, By: "taosagent", Message: "opencode no longer has this request"})
			e.Turn, e.Synthetic = ap.Turn, true
			emit(e)
		}
	}
}
