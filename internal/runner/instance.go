package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/render"
	"github.com/taosagent/taosagent/internal/reply"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// attachedBusy says whether a client attached to opencode (the TUI) runs a
// turn of its own on the pinned session: its events are coming in and its
// end is not yet stored.
func (r *agentRunner) attachedBusy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.foreign != ""
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
	n := r.cur.queuedN
	r.mu.Unlock()
	rel := r.m.cfg.Instances.Hold(r.name)
	return func() {
		r.markQueued(n, more)
		rel()
	}
}

// inbox returns the agent's queued inputs and tells the supervisor whether
// any wait. An input noted meanwhile (noteQueued) keeps the agent marked.
func (r *agentRunner) inbox() ([]eventlog.Input, error) {
	r.mu.Lock()
	n := r.cur.queuedN
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
	if r.cur.queuedN == n {
		r.m.cfg.Instances.SetQueued(r.name, queued)
	}
}

// noteQueued marks the agent as having input waiting: an input was just
// stored queued.
func (r *agentRunner) noteQueued() {
	r.mu.Lock()
	r.cur.queuedN++
	r.m.cfg.Instances.SetQueued(r.name, true)
	r.mu.Unlock()
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

// prepare makes sure the driver runs the agent's current spec, its instance
// is ready, and the pinned session exists; it returns the session.
func (r *agentRunner) prepare(a agent.Agent) (string, error) {
	var c *opencode.Client
	var run *driverRun
	for attempt := 1; ; attempt++ {
		if r.cur.drv != nil && r.own.drvRun.exitErr() == nil && !a.Updated.Equal(r.own.drvUpdated) {
			// The agent changed. Only a change of its config needs a fresh
			// instance: every prompt names its model, so a change of model
			// alone (a switch made in the TUI, written back) does not stop
			// an instance a person may be attached to.
			if configKey(a) != r.own.drvSpec {
				r.stopDriver()
			} else {
				r.own.drvUpdated = a.Updated
			}
		}
		if r.cur.drv != nil && r.own.drvRun.exitErr() != nil {
			// Its instance was stopped meanwhile (idle, or to make room
			// under the cap).
			r.stopDriver()
		}
		if _, v := r.m.cfg.Instances.Release(); r.cur.drv != nil && v != r.own.drvVersion {
			// The operator switched opencode releases (an upgrade or a
			// rollback): this agent moves to it now, between two turns.
			r.m.logger.Info("the agent moves to another opencode release", "agent", r.name, "from", r.own.drvVersion, "to", v)
			r.stopDriver()
		}
		if r.cur.drv == nil {
			if err := r.startDriver(a); err != nil {
				return a.Session, err
			}
		}
		var err error
		run = r.own.drvRun
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
	r.abortStale(ctx, c)
	if a.Session != "" && a.Session == r.own.verified && run == r.own.verifiedIn {
		return a.Session, nil // checked on this driver run already
	}
	if a.Session != "" {
		if _, err := c.GetSession(ctx, a.Session); err == nil {
			r.own.verified, r.own.verifiedIn = a.Session, run
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
	r.own.verified, r.own.verifiedIn = s.ID, run
	return s.ID, nil
}

// abortStale aborts in opencode the sessions whose turns a restart of the
// daemon ended (Manager.Start), so that an adopted opencode stops working
// on them before it is prompted again; nothing of theirs reaches the
// model again.
func (r *agentRunner) abortStale(ctx context.Context, c *opencode.Client) {
	r.mu.Lock()
	stale := r.cur.stale
	r.cur.stale = nil
	r.mu.Unlock()
	for _, sid := range stale {
		if err := c.Abort(ctx, sid); err != nil {
			r.m.logger.Warn("abort a turn the restart ended", "agent", r.name, "session", sid, "err", err)
		}
	}
}

// checkSession is nil if opencode still has session id (a conversation a
// message names), through the instance prepare just readied.
func (r *agentRunner) checkSession(id string) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.m.cfg.StartWait)
	defer cancel()
	c, err := r.client(r.own.drvRun)
	if err != nil {
		return err
	}
	if _, err := c.GetSession(ctx, id); errors.Is(err, opencode.ErrNotFound) {
		return fmt.Errorf("its conversation %s is no longer in its opencode's data", id)
	} else if err != nil {
		return err
	}
	return nil
}

func (r *agentRunner) setSession(s string) {
	r.mu.Lock()
	r.cur.session = s
	r.mu.Unlock()
}

// client waits for the driver of run to be ready: as long as its instance
// waits in line for a slot (the line is served in order: it gets one),
// then at most StartWait from the later of this call and its leaving the
// line.
func (r *agentRunner) client(run *driverRun) (*opencode.Client, error) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	var late atomic.Bool
	go func() {
		from := time.Now()
		for {
			r.mu.Lock()
			inLine, left, changed := r.cur.inLine, r.cur.leftLine, r.lineChanged()
			r.mu.Unlock()
			deadline := time.NewTimer(time.Until(latest(from, left).Add(r.m.cfg.StartWait)))
			if inLine {
				deadline.Stop() // no start under way: no deadline
			}
			select {
			case <-run.done:
				cancel()
			case <-ctx.Done():
			case <-changed:
				deadline.Stop()
				continue
			case <-deadline.C:
				late.Store(true)
				cancel()
			}
			deadline.Stop()
			return
		}
	}()
	c, err := r.cur.drv.Client(ctx)
	if err != nil {
		if exit := run.exitErr(); exit != nil {
			return nil, exit
		} else if late.Load() {
			return nil, fmt.Errorf("opencode was not ready within %s", r.m.cfg.StartWait)
		}
		return nil, err
	}
	return c, nil
}

// noteState follows the agent's instance's place in the line for a slot
// (see client): in it from Waiting until it starts, is ready or fails.
// Stopped and Crashed are left out: they may be an earlier process's,
// told after its successor went into the line (a stop for the cap ends
// on its own goroutine).
func (r *agentRunner) noteState(st supervisor.State) {
	if st == supervisor.Stopped || st == supervisor.Crashed {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	inLine := st == supervisor.Waiting
	if inLine == r.cur.inLine {
		return
	}
	if r.cur.inLine {
		r.cur.leftLine = time.Now()
	}
	r.cur.inLine = inLine
	if r.cur.lineChanged != nil {
		close(r.cur.lineChanged)
		r.cur.lineChanged = nil
	}
}

// lineChanged is a channel closed at the next change of the instance's
// place in the line; r.mu held.
func (r *agentRunner) lineChanged() chan struct{} {
	if r.cur.lineChanged == nil {
		r.cur.lineChanged = make(chan struct{})
	}
	return r.cur.lineChanged
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
	d := NewDriver(r.m.cfg.Instances, spec, r.emit, r.m.logger)
	d.Redact = r.m.cfg.Keys.All()
	secrets := append([]string{spec.Config.Provider.APIKey}, d.Redact...)
	d.Raw = func(ev opencode.Event) {
		r.m.log.AddRaw(eventlog.Raw{Agent: r.name, Time: time.Now(), Type: ev.Type, Body: render.RedactedBytes(ev.Raw, secrets)})
	}
	d.OnReconnect = r.reconcile
	ctx, cancel := context.WithCancel(r.ctx)
	run := &driverRun{done: make(chan struct{})}
	r.own.drvCancel, r.own.drvDone, r.own.drvRun, r.own.drvUpdated, r.own.drvSpec = cancel, run.done, run, a.Updated, configKey(a)
	_, r.own.drvVersion = r.m.cfg.Instances.Release()
	r.mu.Lock()
	r.cur.drv = d
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
	if r.own.drvCancel == nil {
		return
	}
	r.own.drvCancel()
	if !r.m.keep.Load() {
		r.m.cfg.Instances.Stop(r.name)
	}
	<-r.own.drvDone
	r.mu.Lock()
	r.cur.drv = nil
	foreign, session := r.cur.foreign, r.cur.session
	r.cur.foreign = ""
	r.mu.Unlock()
	if foreign != "" {
		// An attached client's turn that opencode's stop cut short ends
		// here, so that it does not hold the agent's inbox.
		e := withTurn(event.New(session, event.Error, time.Now(), event.ErrorData{Code: event.CodeInterrupted,
			Message: "the turn was interrupted: the agent's opencode stopped"}), foreign)
		e.Agent = r.name
		r.m.log.AppendAsync([]event.Event{e}, func(_ []event.Event, err error) { r.m.committed(err) })
	}
	r.own.drvCancel, r.own.drvDone, r.own.drvRun = nil, nil, nil
}

// reconcile runs after the event stream reconnected: approvals we hold as
// pending that opencode no longer has expired while we were away; asks we
// never saw are recorded now. Both as synthetic events. Questions the same
// (reconcileQuestions).
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
			emit(expired(ap, "opencode no longer has this request", now))
		}
	}
	r.reconcileQuestions(ctx, c, emit)
}
