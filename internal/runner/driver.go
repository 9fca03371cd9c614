// Package runner drives agents' turns. Driver is its core: it owns one
// agent's opencode instance, keeps that instance's event stream open, runs
// the codec, and hands every normalized event, in order, to a sink. The
// Manager layers the inbox, the pinned session and the event log on top:
// one goroutine per agent runs its turns one at a time. It sees the
// supervisor and the event log only through two interfaces (Instances,
// Store; see seam.go), so that runnertest can put an in-process opencode
// under it.
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/reply"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Driver drives one agent's instance. Create it with NewDriver, run it with
// Run; its other methods may be called from any goroutine while it runs.
type Driver struct {
	sup    Instances
	spec   supervisor.Spec
	sink   func(event.Event)
	logger *slog.Logger
	// Silence is the event stream's dead-man window (default 30 s).
	Silence time.Duration
	// Redact lists secrets (every provider's key) that no message of an
	// event may hold; the instance's own provider key is always among them.
	Redact []string
	// Raw, if set, hears every upstream event before it is decoded, on
	// Run's goroutine; it must not block.
	Raw func(opencode.Event)
	// OnReconnect, if set, runs on Run's goroutine after the stream
	// reconnected and the session status was reconciled; emit hands it
	// events for the sink, in order with the rest.
	OnReconnect func(ctx context.Context, c *opencode.Client, emit func(...event.Event))

	cmds chan func(*loopState) // run on Run's goroutine, which owns the codec

	// lose, in tests, simulates a stream that breaks: events it accepts
	// are dropped, and the next event it lets through comes after a
	// reconnect (and so after reconciliation).
	lose func(opencode.Event) bool

	mu          sync.Mutex // guards inst, connected, isConnected, prompting and crashes
	inst        Instance
	connected   chan struct{}   // closed once the current stream is connected
	isConnected bool            // connected is closed
	prompting   map[string]bool // sessions whose prompt is being sent: a crash meanwhile is Prompt's to handle
	crashes     int             // processes that died under the driver
}

// NewDriver returns a Driver for spec's agent. sink receives every event on
// Run's goroutine; it must not block for long.
func NewDriver(sup Instances, spec supervisor.Spec, sink func(event.Event), logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Driver{sup: sup, spec: spec, sink: sink, logger: logger,
		cmds: make(chan func(*loopState)), connected: make(chan struct{})}
}

type loopState struct {
	codec *reply.Codec
	emit  func([]event.Event)
}

// Run starts the instance and drives it until ctx is done. When opencode
// dies, every open turn ends with one error (code "interrupted"), and the
// driver reconnects to the restarted instance.
func (d *Driver) Run(ctx context.Context) error {
	inst, err := d.sup.Ensure(d.spec)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.inst = inst
	d.mu.Unlock()
	codec := reply.New()
	codec.Redact = append([]string{d.spec.Config.Provider.APIKey}, d.Redact...)
	st := &loopState{codec: codec}
	st.emit = func(evs []event.Event) {
		for _, e := range evs {
			d.sink(e)
		}
	}
	for {
		client, gone, err := inst.Current(ctx)
		if err != nil {
			return err
		}
		crashed := d.follow(ctx, inst, client, gone, st)
		// Until the next stream connects, callers wait: a prompt sent now
		// could have its events missed.
		d.mu.Lock()
		if d.isConnected {
			d.connected, d.isConnected = make(chan struct{}), false
		}
		d.mu.Unlock()
		if crashed {
			why := "the turn was interrupted: opencode stopped unexpectedly"
			if inst.Stopping() {
				// Stopped on purpose (idle, the cap, a recycle): the
				// supervisor's stopped event says so; no crash to report.
				why = "the turn was interrupted: its opencode was stopped"
			} else {
				d.sink(event.New("", event.Instance, time.Now(), event.InstanceData{State: "crashed",
					Message: "opencode stopped unexpectedly; restarting it"}))
			}
			d.mu.Lock()
			d.crashes++
			sending := maps.Clone(d.prompting)
			d.mu.Unlock()
			for _, sid := range codec.OpenSessions() {
				if !sending[sid] { // a prompt being sent goes to the next process (Prompt)
					st.emit(codec.Interrupt(sid, event.CodeInterrupted, why, time.Now()))
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// follow reads the stream of the instance's current process (client)
// into the codec until the process is gone (crashed) or ctx ends.
func (d *Driver) follow(ctx context.Context, inst Instance, client *opencode.Client, gone <-chan struct{}, st *loopState) (crashed bool) {
	codec := st.codec
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	events := make(chan opencode.Event, 256)
	reconnects := make(chan int, 4)
	var once sync.Once
	stream := &opencode.Stream{Client: client, Silence: d.Silence, Logger: d.logger,
		OnConnect: func(n int) {
			once.Do(func() {
				d.mu.Lock()
				if !d.isConnected {
					close(d.connected)
					d.isConnected = true
				}
				d.mu.Unlock()
			})
			if n > 1 {
				reconnects <- n
			}
		}}
	sctx, cancel := context.WithCancel(ctx)
	sub := stream.Start(sctx, func(ev opencode.Event) {
		select {
		case events <- ev:
		case <-sctx.Done():
		}
	})
	lost := false
loop:
	for {
		if at, ok := codec.Deadline(); ok {
			timer.Reset(time.Until(at))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case ev := <-events:
			if d.lose != nil {
				if d.lose(ev) {
					lost = true
					continue
				}
				if lost {
					lost = false
					d.reconcile(ctx, client, st)
				}
			}
			inst.Touch()
			if d.Raw != nil {
				d.Raw(ev)
			}
			st.emit(codec.Feed(ev, time.Now()))
			for _, sid := range codec.TakeStops() {
				go func() {
					actx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					if err := client.Abort(actx, sid); err != nil {
						d.logger.Warn("a turn whose budget is spent could not be stopped in opencode", "session", sid, "err", err)
					}
				}()
			}
		case <-timer.C:
			st.emit(codec.Tick(time.Now()))
		case cmd := <-d.cmds:
			cmd(st)
		case <-reconnects:
			d.reconcile(ctx, client, st)
		case <-gone:
			crashed = true
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	sub.Close()
	return crashed
}

// reconcile runs after the stream reconnected: events may have been missed.
// For each session with a turn in progress, opencode's record of its
// messages fills in what the stream lost (as synthetic events), then a turn
// whose session opencode no longer reports busy is let settle.
func (d *Driver) reconcile(ctx context.Context, c *opencode.Client, st *loopState) {
	for _, sid := range st.codec.OpenSessions() {
		msgs, err := c.Messages(ctx, sid)
		if err != nil {
			d.logger.Warn("reconcile messages after reconnect", "session", sid, "err", err)
			continue
		}
		st.emit(st.codec.Reconcile(sid, msgs, time.Now()))
	}
	status, err := c.SessionStatus(ctx)
	if err != nil {
		d.logger.Warn("reconcile after reconnect", "err", err)
		return
	}
	for _, sid := range st.codec.OpenSessions() {
		if _, busy := status[sid]; !busy {
			st.emit(st.codec.Feed(opencode.Event{Type: "session.status",
				Properties: []byte(fmt.Sprintf(`{"sessionID":%q,"status":{"type":"idle"}}`, sid))}, time.Now()))
		}
	}
	if d.OnReconnect != nil {
		d.OnReconnect(ctx, c, func(evs ...event.Event) { st.emit(evs) })
	}
}

// do runs f on Run's goroutine and waits for it.
func (d *Driver) do(ctx context.Context, f func(*loopState)) error {
	done := make(chan struct{})
	select {
	case d.cmds <- func(st *loopState) { f(st); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Client waits until the instance is ready and its event stream connected
// (so nothing a prompt causes can be missed), and returns its client.
func (d *Driver) Client(ctx context.Context) (*opencode.Client, error) {
	for {
		d.mu.Lock()
		inst, connected := d.inst, d.connected
		d.mu.Unlock()
		if inst == nil {
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-connected:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return inst.Client(ctx)
	}
}

// Connected reports, without waiting, whether the instance is ready, not
// being stopped, and its event stream connected: a prompt sent now would
// be taken and followed.
func (d *Driver) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inst != nil && d.isConnected && !d.inst.Stopping()
}

// CreateSession creates an opencode session for the agent.
func (d *Driver) CreateSession(ctx context.Context, title string) (string, error) {
	c, err := d.Client(ctx)
	if err != nil {
		return "", err
	}
	s, err := c.CreateSession(ctx, title)
	return s.ID, err
}

// Prompt sends text to session. A turn is opened first, so that a failure
// opencode reports before it says busy still ends this turn.
func (d *Driver) Prompt(ctx context.Context, sessionID string, p opencode.Prompt) error {
	c, gone, err := d.current(ctx)
	if err != nil {
		return err
	}
	if err := d.do(ctx, func(st *loopState) {
		st.emit(st.codec.Begin(sessionID, time.Now()))
		if p.ModelID != "" {
			st.codec.Expect(sessionID, p.ProviderID+"/"+p.ModelID)
		}
	}); err != nil {
		return err
	}
	d.mu.Lock()
	if d.prompting == nil {
		d.prompting = map[string]bool{}
	}
	d.prompting[sessionID] = true // until the prompt is sent, or given up
	d.mu.Unlock()
	done := func() (crashes int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.prompting, sessionID)
		return d.crashes
	}
	for attempt := 1; ; attempt++ {
		d.mu.Lock()
		crashes := d.crashes
		d.mu.Unlock()
		err = c.PromptAsync(ctx, sessionID, p)
		if err == nil {
			if done() != crashes {
				// It reached a process that died meanwhile: the turn went
				// with it, as a crash ends every turn.
				d.interrupt(ctx, sessionID, event.CodeInterrupted, "the turn was interrupted: opencode stopped unexpectedly")
			}
			return nil
		}
		if attempt == 1 && opencode.Unanswered(err) && d.replaced(ctx, gone) {
			// Its process was gone (a crash not noticed yet): the prompt
			// never reached it, and goes to the one that replaces it.
			d.logger.Info("opencode was gone when prompted; prompting its replacement", "session", sessionID)
			if c, gone, err = d.current(ctx); err == nil {
				continue
			}
		}
		done()
		d.interrupt(ctx, sessionID, event.CodeOpencode, "opencode refused the prompt: "+err.Error())
		return err
	}
}

// replaced waits a little for the process whose end gone reports: true if
// it is gone (its replacement then starts), false if it still runs.
func (d *Driver) replaced(ctx context.Context, gone <-chan struct{}) bool {
	select {
	case <-gone:
		return true
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	return false
}

// interrupt ends session's turn with one error.
func (d *Driver) interrupt(ctx context.Context, sessionID, code, msg string) {
	d.do(ctx, func(st *loopState) {
		st.emit(st.codec.Interrupt(sessionID, code, opencode.Redacted(msg, st.codec.Redact), time.Now()))
	})
}

// current is Client with a channel closed when the client's process is gone.
func (d *Driver) current(ctx context.Context) (*opencode.Client, <-chan struct{}, error) {
	if _, err := d.Client(ctx); err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	inst := d.inst
	d.mu.Unlock()
	return inst.Current(ctx)
}

// Abort aborts session's running turn.
func (d *Driver) Abort(ctx context.Context, sessionID string) error {
	c, err := d.Client(ctx)
	if err != nil {
		return err
	}
	return c.Abort(ctx, sessionID)
}

// ReplyPermission answers a permission request.
func (d *Driver) ReplyPermission(ctx context.Context, id, reply, message string) error {
	c, err := d.Client(ctx)
	if err != nil {
		return err
	}
	return c.ReplyPermission(ctx, id, reply, message)
}

// ReplyQuestion answers question request id (answers), or rejects it.
func (d *Driver) ReplyQuestion(ctx context.Context, id string, answers [][]string, reject bool) error {
	c, err := d.Client(ctx)
	if err != nil {
		return err
	}
	if reject {
		return c.RejectQuestion(ctx, id)
	}
	return c.ReplyQuestion(ctx, id, answers)
}

// PID is the current opencode process, 0 if none.
func (d *Driver) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return 0
	}
	return d.inst.PID()
}

// Busy reports whether session has a turn in progress that has not begun
// to settle: a prompt sent now joins it.
func (d *Driver) Busy(ctx context.Context, sessionID string) bool {
	busy := false
	d.do(ctx, func(st *loopState) { busy = st.codec.Active(sessionID) })
	return busy
}
