package runner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
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

	attachReq chan attachReq  // to run: start the instance for an attached client
	submit    chan submitReq  // to run, while idle: a new input
	activity  chan struct{}   // to run: an attached client's turn is under way (not idle)
	over      chan overMemory // to run: its instance holds more than its recycle_mb (watchMemory)
	watching  atomic.Bool     // a watchMemory look is under way

	mu  sync.Mutex
	cur shared // under mu
	own owned  // the run goroutine's alone
}

// shared is what of an agent's runner other goroutines read or change
// (a submit, an abort, a reply, the driver's sink), under agentRunner.mu;
// the run goroutine, drv's only writer, reads drv without it.
type shared struct {
	turn     string   // the running turn, "" when idle
	trace    string   // the trace id of the running turn's input
	session  string   // the pinned session
	ended    *turnEnd // the running turn's end
	final    bool     // turn's terminal event was taken
	started  bool     // turn's start is committed
	model    string   // the model the running turn prompts with
	drv      *Driver
	resolved map[string]bool // approvals answered through us
	foreign  string          // a turn a client attached to opencode runs (the TUI), "" if none
	queuedN  uint64          // inputs noted as stored queued (noteQueued)
	// stale are sessions whose turn a restart of the daemon ended while
	// opencode (adopted) may still work on them: aborted in opencode
	// before the next prompt.
	stale []string
	// The instance's place in the line for a slot (noteState): whether it
	// waits in it, when it last left it, and a channel closed (and
	// replaced) at each change.
	inLine      bool
	leftLine    time.Time
	lineChanged chan struct{}
}

// owned is what only the run goroutine touches: its driver's run and
// what it knows of it.
type owned struct {
	drvCancel  context.CancelFunc
	drvDone    chan struct{} // closed when the driver's Run returned
	drvRun     *driverRun
	drvUpdated time.Time     // the agent's Updated as of the driver's spec
	drvSpec    string        // the configKey of the agent the driver runs
	drvVersion string        // the opencode release the driver's instance runs
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
		abort_: make(chan struct{}, 1), done: make(chan struct{}), cur: shared{resolved: map[string]bool{}},
		attachReq: make(chan attachReq), submit: make(chan submitReq), activity: make(chan struct{}, 1),
		over: make(chan overMemory, 1)}
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
	return r.cur.turn
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
	if !r.cur.started {
		return "", ""
	}
	return r.cur.turn, r.cur.trace
}

func (r *agentRunner) driver() *Driver {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.drv
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
		select {
		case o := <-r.over: // between two turns: the next runs on a new instance
			r.recycle(o)
		default:
		}
		if len(queued) > 0 && r.ctx.Err() == nil && !r.attachedBusy() && !r.m.quiet.Load() {
			r.runTurn(queued[0], len(queued) > 1)
			r.watchMemory()
			if r.own.park > 0 {
				select {
				case <-time.After(r.own.park):
				case <-r.ctx.Done():
				}
			}
			continue
		}
		if r.cur.drv != nil {
			idle.Reset(r.m.cfg.IdleTimeout)
		}
		select {
		case req := <-r.attachReq:
			req.reply <- r.attach()
		case o := <-r.over:
			r.recycle(o)
		case <-r.activity: // an attached client's turn: not idle
		case <-r.wake:
		case req := <-r.submit:
			r.submitNow(req)
		case <-r.abort_: // nothing runs
		case <-idle.C:
			r.m.logger.Info("idle: stopping opencode", "agent", r.name)
			r.stopDriver()
		case <-r.own.drvDone:
			r.stopDriver()
		case <-r.ctx.Done():
			return
		}
		idle.Stop()
	}
}

// overMemory is a look at an instance that holds more than its agent's
// recycle_mb.
type overMemory struct {
	pid       int
	held, max int64 // bytes
}

// watchMemory looks, off the run goroutine (a look walks /proc: the
// runner stays ready for the next message), at whether the agent's
// instance holds more than its agent's limits.recycle_mb; if so, the run
// goroutine recycles it between two turns (recycle).
func (r *agentRunner) watchMemory() {
	if r.cur.drv == nil || !r.watching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.watching.Store(false)
		a, err := r.m.log.Agent(r.ctx, r.name)
		if err != nil {
			return
		}
		info, ok := r.m.cfg.Instances.Get(r.name)
		held := r.m.cfg.Instances.Usage(r.name).MemoryBytes
		limit := r.m.EffectiveLimits(a.Limits).RecycleMB << 20
		if ok && held > limit {
			select {
			case r.over <- overMemory{pid: info.PID, held: held, max: limit}:
			default:
			}
		}
	}()
}

// recycle restarts the agent's instance, found over its memory (o), if
// that process still runs: opencode's memory grows with the turns it
// serves (to gigabytes over days, then it hangs: opencode #20695). It runs
// on the run goroutine between two turns, never in one, and never while a
// person's turn runs in the TUI. The instance is stopped now and the next
// turn starts a new one; an instance event ("recycled") says so.
func (r *agentRunner) recycle(o overMemory) {
	if r.cur.drv == nil || r.attachedBusy() || r.ctx.Err() != nil {
		return
	}
	if info, ok := r.m.cfg.Instances.Get(r.name); !ok || info.PID != o.pid {
		return // replaced meanwhile
	}
	msg := fmt.Sprintf("it held %d MiB, over its recycle_mb of %d: restarted between two turns", o.held>>20, o.max>>20)
	r.m.logger.Info("recycling opencode", "agent", r.name, "pid", o.pid, "held_mb", o.held>>20, "recycle_mb", o.max>>20)
	r.m.instanceEvent(r.name, "", event.InstanceData{State: "recycled", PID: o.pid, Message: msg})
	r.stopDriver()
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
	c, err := r.client(r.own.drvRun)
	return attachReply{client: c, session: session, err: err}
}
