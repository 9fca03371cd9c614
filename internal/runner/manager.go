package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/reply"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Config configures a Manager.
type Config struct {
	Home        string    // agents live in Home/agents/NAME
	Store       Store     // the event log
	Instances   Instances // the supervisor (Supervised)
	Keys        agent.Keys
	IdleTimeout time.Duration // stop an agent's opencode unused this long; default 10 min
	AbortWait   time.Duration // abort to idle before a restart; default 5 s
	StartWait   time.Duration // instance and session ready; default 2 min
	// MemTotal is the machine's memory, bytes, of which the default of an
	// agent's limits.recycle_mb is a share (supervisor.RecycleDefault);
	// default: /proc/meminfo's.
	MemTotal int64
	// DemoURL is the base URL of the scripted demo provider, "" if none.
	DemoURL string
	// TaosTools, when set, gives an agent whose tools include "taos" the
	// MCP server of taosagent's own tools (with a token of that agent's).
	TaosTools func(agent string) opencode.MCPServer
	// MCPServers, when set, is where agent's opencode reaches its local
	// MCP server name of the Library (the daemon runs it); unset, an
	// agent given one cannot start.
	MCPServers func(agent, name string) opencode.MCPServer
	// ToolModules, when set, is the node_modules directory of the
	// daemon's install of opencode.PluginPackage, which the Library's
	// tools import; unset (or failing), an agent given a tool cannot
	// start.
	ToolModules func() (string, error)
	// Gateway, when set, is how agents reach their models: the gateway's
	// base URL and the agent's own key. The upstream's key is then never
	// written into an agent's config.
	Gateway func(ctx context.Context, agent string) (baseURL, key string, err error)
	// Hooks are what the runner asks of the control service; set them
	// here or with SetHooks, before Start.
	Hooks
	// UIDs, when set, gives each agent's confined instance a host uid of
	// its own from this range (stored, never reused; see hostid).
	UIDs *hostid.Range
	// Predecessor is the daemon this one took the store over from (a
	// failover: its lease lapsed), "" if none: what it left running
	// ends naming it.
	Predecessor string
	// Here, when set, says whether agent runs on this daemon: in a
	// cluster (serve --cluster) an agent runs on the daemon holding its
	// lease, and a daemon that does not only stores what comes for it (a
	// message's input, which its owner picks up). Unset, every agent runs
	// here.
	Here func(agent string) bool
	// Elsewhere names the daemon that runs agent, for an error.
	Elsewhere func(agent string) string
	// Forward, when set, carries what only agent's owner can do to it and
	// returns its answer (forward.go); unset, that is refused here.
	Forward func(ctx context.Context, agent string, body []byte) (result []byte, code, msg string, err error)
	Logger  *slog.Logger
}

// Hooks are what the runner asks of the layer above it (the control
// service, which holds the runner: control.Service.WatchRunner sets them).
type Hooks struct {
	// Sync, when set, brings an agent's permitted models up to date with
	// its upstream (a LiteLLM key's scope) before its opencode starts, and
	// returns the agent as it then is.
	Sync func(ctx context.Context, agent string) (agent.Agent, error)
	// OnModelSwitch, when set, is told (on a goroutine of its own) when
	// opencode reports that an agent's session changed model: a switch
	// made in the TUI, to be written back or refused.
	OnModelSwitch func(agent, from, to string)
}

// SetHooks sets m's hooks; call it before Start.
func (m *Manager) SetHooks(h Hooks) { m.cfg.Hooks = h }

// Manager runs every agent's turns: one runner goroutine per agent, started
// on the agent's first input. Its methods are safe for concurrent use.
type Manager struct {
	cfg    Config
	log    Store
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	runners map[string]*agentRunner
	stale   map[string][]string // sessions to abort before an agent's next turn (Start), by agent

	logProblem atomic.Pointer[string] // why the last commit failed; nil once one succeeds
	quiet      atomic.Bool            // no turn starts (Quiesce)
	keep       atomic.Bool            // Close leaves the instances running (Quiesce)
}

// committed notes how a commit of the runners' events went.
func (m *Manager) committed(err error) {
	if err == nil {
		if m.logProblem.Load() != nil {
			m.logProblem.Store(nil)
		}
		return
	}
	msg := "the event log cannot be written: " + err.Error()
	m.logProblem.Store(&msg)
}

// Problem says what keeps the daemon from working normally, "" if nothing:
// today, an event log that refuses writes (turns then wait, parked).
func (m *Manager) Problem() string {
	if p := m.logProblem.Load(); p != nil {
		return *p
	}
	return ""
}

// Errors of the Manager beyond the store's.
var (
	ErrIdle    = errors.New("the agent has no running turn")
	ErrInvalid = errors.New("invalid")
	// ErrElsewhere: the agent runs on another daemon of the cluster,
	// which alone can do this (a conflict: ask that daemon).
	ErrElsewhere = fmt.Errorf("the agent runs on another daemon: %w", eventlog.ErrConflict)
)

// New returns a Manager; call Start.
func New(cfg Config) *Manager {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.AbortWait <= 0 {
		cfg.AbortWait = 5 * time.Second
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MemTotal <= 0 {
		cfg.MemTotal, _, _ = supervisor.Meminfo()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, log: cfg.Store, logger: cfg.Logger, ctx: ctx, cancel: cancel,
		runners: map[string]*agentRunner{}}
	// From now on, before any instance is started or adopted: every
	// state an instance reports is an event.
	cfg.Instances.OnState(m.onState)
	return m
}

// Start recovers from whatever a crash left, then runs queued inputs, for
// the agents that run here (Config.Here). Turns left running end with an
// interrupted error; their approvals and questions expire. Both are
// recorded as synthetic events.
func (m *Manager) Start(ctx context.Context) error {
	return m.recover(ctx, m.here, m.cfg.Predecessor)
}

// Take starts running agent name here, once this daemon took it (its
// lease) in a cluster: what its last owner left is recovered as Start
// recovers it, naming predecessor ("" or this daemon: a restart), and its
// queued inputs run.
func (m *Manager) Take(ctx context.Context, name, predecessor string) error {
	return m.recover(ctx, func(a string) bool { return a == name }, predecessor)
}

// Drop stops running agent name here (its runner, then its opencode):
// this daemon lost it or gave it up in a cluster. A turn it ran is left
// as it is, for its next owner to end.
func (m *Manager) Drop(name string) { m.Forget(name) }

// Busy reports whether agent name has a turn running here or inputs
// queued: a drain moves it only between its turns.
func (m *Manager) Busy(ctx context.Context, name string) bool {
	if r := m.existing(name); r != nil && r.startedTurn() != "" {
		return true
	}
	q, err := m.log.Inputs(ctx, name, "queued")
	return err != nil || len(q) > 0
}

// Wake tells agent name's runner, if the agent runs here, to look at its
// inbox: an input another daemon stored for it.
func (m *Manager) Wake(name string) {
	if m.here(name) {
		m.runner(name).poke()
	}
}

// here reports whether agent name runs on this daemon (Config.Here).
func (m *Manager) here(name string) bool { return m.cfg.Here == nil || m.cfg.Here(name) }

// elsewhere is the error for what only agent name's own daemon can do.
func (m *Manager) elsewhere(name string) error {
	who := "another daemon of the cluster"
	if m.cfg.Elsewhere != nil {
		if d := m.cfg.Elsewhere(name); d != "" {
			who = "the daemon " + d
		}
	}
	return fmt.Errorf("agent %s runs on %s; ask it there: %w", name, who, ErrElsewhere)
}

// recover is Start's, and Take's, for the agents only says.
func (m *Manager) recover(ctx context.Context, only func(string) bool, predecessor string) error {
	turns, err := m.log.RunningTurns(ctx)
	if err != nil {
		return err
	}
	turns = slices.DeleteFunc(turns, func(t eventlog.Turn) bool { return !only(t.Agent) })
	pending, err := m.log.Approvals(ctx, api.ApprovalPending)
	if err != nil {
		return err
	}
	pending = slices.DeleteFunc(pending, func(a eventlog.Approval) bool { return !only(a.Agent) })
	now := time.Now()
	stopped := "taosagent stopped"
	if predecessor != "" {
		stopped = "the daemon " + predecessor + " stopped holding the store, and this daemon took over (a failover)"
	}
	var evs []event.Event
	for _, ap := range pending {
		evs = append(evs, expired(ap, stopped+" while this approval was pending", now))
	}
	asked, err := m.log.Questions(ctx, api.QuestionPending)
	if err != nil {
		return err
	}
	asked = slices.DeleteFunc(asked, func(q eventlog.Question) bool { return !only(q.Agent) })
	for _, q := range asked {
		evs = append(evs, expiredQuestion(q, stopped+" while this question was pending", now))
	}
	stale := map[string][]string{} // sessions of adopted instances to abort, by agent
	for _, t := range turns {
		msg := "the turn was interrupted: " + stopped + " while it ran"
		if _, adopted := m.cfg.Instances.Get(t.Agent); adopted {
			// Its opencode goes on, but the turn's model stream went with
			// the daemon (the gateway): the turn ends here, what opencode
			// did that the dead daemon never logged is recorded first, and
			// opencode is told to stop it.
			msg = "the turn was interrupted: taosagent restarted while it ran; the agent's opencode was kept, what it did meanwhile is recorded from its own messages, and nothing of this turn is sent to the model again"
			missed, err := m.recoverCut(ctx, t)
			if err != nil {
				m.logger.Warn("what opencode did while taosagent was down could not be read", "agent", t.Agent, "turn", t.ID, "err", err)
				stale[t.Agent] = append(stale[t.Agent], t.Session) // aborted before its next turn
			}
			for _, e := range missed {
				e.Agent, e.Turn, e.TraceID = t.Agent, t.ID, t.TraceID
				evs = append(evs, e)
			}
		}
		e := event.New(t.Session, event.Error, now, event.ErrorData{Code: event.CodeInterrupted, Message: msg})
		e.Agent, e.Turn, e.TraceID, e.Synthetic = t.Agent, t.ID, t.TraceID, true
		evs = append(evs, e)
	}
	if len(evs) > 0 {
		if _, err := m.log.Append(ctx, evs...); err != nil {
			return err
		}
		m.logger.Info("recovered after a crash", "turns", len(turns), "approvals", len(pending))
	}
	m.mu.Lock()
	if m.stale == nil {
		m.stale = map[string][]string{}
	}
	maps.Copy(m.stale, stale) // each runner takes its own when it is made
	m.mu.Unlock()
	agents, err := m.log.Agents(ctx)
	if err != nil {
		return err
	}
	for _, a := range agents {
		if !only(a.Name) {
			continue
		}
		if q, _ := m.log.Inputs(ctx, a.Name, "queued"); len(q) > 0 {
			m.runner(a.Name).poke()
		}
		if _, adopted := m.cfg.Instances.Get(a.Name); adopted {
			// Taken over from the earlier run: its runner follows it
			// (its events, its idle stop) as if it had started it.
			go m.Attach(m.ctx, a.Name)
		}
	}
	return nil
}

// recoverCut stops, in the adopted opencode, the turn t that a restart of
// the daemon cut, and returns what opencode's own messages hold of it that
// the log does not (reply.Missed). The abort comes first, so that opencode
// sends nothing of the turn to the model again; its messages are read once
// it has settled (idle), so that a tool it stopped shows as ended.
func (m *Manager) recoverCut(ctx context.Context, t eventlog.Turn) ([]event.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, recoverWait)
	defer cancel()
	c, err := m.cfg.Instances.Client(ctx, t.Agent)
	if err != nil {
		return nil, err
	}
	if err := c.Abort(ctx, t.Session); err != nil {
		return nil, err
	}
	// opencode keeps a question of an aborted turn pending; the log
	// expires it (Start), and opencode is told it will not be answered.
	if qs, err := c.Questions(ctx); err == nil {
		for _, q := range qs {
			if q.SessionID == t.Session {
				c.RejectQuestion(ctx, q.ID)
			}
		}
	}
	for {
		st, err := c.SessionStatus(ctx)
		if err != nil {
			return nil, err
		}
		if s, busy := st[t.Session]; !busy || s.Type == "idle" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	msgs, err := c.Messages(ctx, t.Session)
	if err != nil {
		return nil, err
	}
	logged, err := m.log.TurnEvents(ctx, t.Agent, t.ID)
	if err != nil {
		return nil, err
	}
	return reply.Missed(t.Session, msgs, logged, t.Started, time.Now()), nil
}

// recoverWait bounds recoverCut for one turn: the daemon's start waits on
// it.
const recoverWait = 15 * time.Second

// Close stops every runner and its opencode, and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	rs := m.runners
	m.runners = map[string]*agentRunner{}
	m.mu.Unlock()
	for _, r := range rs {
		<-r.done
	}
}

// Quiesce prepares a hand-over to the next daemon (a planned restart): no
// turn starts from now on (inputs are still accepted, and queued), the
// running turns are waited for until ctx ends, and Close will leave every
// instance running, for the next daemon to adopt. It returns ctx's error
// if turns still ran then (they end as a restart ends them).
func (m *Manager) Quiesce(ctx context.Context) error {
	m.quiet.Store(true)
	m.keep.Store(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if m.running() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d turns still running: %w", m.running(), ctx.Err())
		case <-t.C:
		}
	}
}

// running counts the turns running now, a person's in the TUI included.
func (m *Manager) running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.runners {
		r.mu.Lock()
		if r.cur.turn != "" || r.cur.foreign != "" {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// runner returns the runner of name, starting it.
func (m *Manager) runner(name string) *agentRunner {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.runners[name]
	if r == nil {
		r = newAgentRunner(m, name)
		r.cur.stale = m.stale[name]
		delete(m.stale, name)
		m.runners[name] = r
		if m.ctx.Err() == nil {
			go r.run()
		} else {
			close(r.done)
		}
	}
	return r
}

func (m *Manager) existing(name string) *agentRunner {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runners[name]
}

// Submission is a message for an agent.
type Submission struct {
	Text     string
	Mode     string // api.ModeQueue (default) or api.ModeSteer
	ClientID string // idempotency key; generated when empty
	Model    string // provider/model for this turn; must be permitted
	TraceID  string // the caller's trace: every event of the turn carries it
	// Conversation is one of the agent's conversations (Conversations)
	// for the turn to run in; "" for its current one.
	Conversation string
}

// Submit puts s in name's inbox. created is false when s.ClientID was
// already used (the first input is returned).
func (m *Manager) Submit(ctx context.Context, name string, s Submission) (eventlog.Input, bool, error) {
	a, err := m.log.Agent(ctx, name)
	if err != nil {
		return eventlog.Input{}, false, err
	}
	if err := api.CheckMode(s.Mode); err != nil {
		return eventlog.Input{}, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if s.Mode == "" {
		s.Mode = api.ModeQueue
	}
	if s.Model != "" && !a.Permits(s.Model) {
		return eventlog.Input{}, false, fmt.Errorf("%w: model %q is not permitted for agent %q (permitted: %v)", ErrInvalid, s.Model, name, a.Models)
	}
	if s.Conversation != "" {
		if s.Mode == api.ModeSteer {
			return eventlog.Input{}, false, fmt.Errorf("%w: conversation: a steer joins the running turn, in its conversation; name none", ErrInvalid)
		}
		if err := m.hasConversation(ctx, name, s.Conversation); err != nil {
			return eventlog.Input{}, false, err
		}
	}
	if s.ClientID == "" {
		s.ClientID = randid.ID("in")
	}
	in := eventlog.Input{Agent: name, ClientID: s.ClientID, Text: s.Text, Mode: s.Mode, Model: s.Model, TraceID: s.TraceID, Conversation: s.Conversation}
	if !m.here(name) {
		// Stored for its owner, whose cluster keeper picks it up (a steer
		// then joins the turn running there, or starts one).
		return m.log.AddInput(ctx, in)
	}
	r := m.runner(name)
	// An idle runner takes the input itself (and may start its turn in the
	// same commit); a busy one finds it in its inbox.
	req := submitReq{ctx: ctx, in: in, reply: make(chan submitReply, 1)}
	select {
	case r.submit <- req:
		select {
		case rep := <-req.reply:
			return rep.in, rep.created, rep.err
		case <-ctx.Done():
			return eventlog.Input{}, false, ctx.Err()
		}
	default:
	}
	in, created, err := m.log.AddInput(ctx, in)
	if err == nil && created {
		r.noteQueued()
		r.poke()
	}
	return in, created, err
}

// Queued tells agent name's runner that an input was added to its inbox
// straight through the store (a schedule's slot).
func (m *Manager) Queued(name string) {
	if !m.here(name) {
		return // its owner picks it up
	}
	r := m.runner(name)
	r.noteQueued()
	r.poke()
}

// hasConversation is nil if id is one of agent name's conversations, else
// an ErrInvalid naming the field.
func (m *Manager) hasConversation(ctx context.Context, name, id string) error {
	cs, err := m.log.Conversations(ctx, name)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.ID == id {
			return nil
		}
	}
	return fmt.Errorf("%w: conversation: agent %s has no conversation %q (GET /v1/agents/%s/conversations lists them)", ErrInvalid, name, id, name)
}

// Resume makes conversation id, one of agent name's, its current one: a
// message that names none goes there from its next turn on.
func (m *Manager) Resume(ctx context.Context, name, id string) error {
	if err := m.hasConversation(ctx, name, id); err != nil {
		return err
	}
	return m.log.SetSession(ctx, name, id)
}

// Abort aborts name's running turn and waits until it has ended: opencode
// is given AbortWait to settle, else it is restarted. Queued inputs stay.
func (m *Manager) Abort(ctx context.Context, name string) (turn string, err error) {
	if _, err := m.log.Agent(ctx, name); err != nil {
		return "", err
	}
	if !m.here(name) {
		var turn string
		err := m.forward(ctx, name, Forwarded{Kind: "abort"}, &turn)
		return turn, err
	}
	r := m.existing(name)
	if r == nil {
		return "", ErrIdle
	}
	return r.abort(ctx)
}

// Reply answers approval id for a person (by) through opencode, and records
// the answer. A request opencode no longer knows is recorded as expired and
// reported as a conflict.
func (m *Manager) Reply(ctx context.Context, id, decision, message, by string) (eventlog.Approval, error) {
	if err := api.CheckDecision(decision, message); err != nil {
		return eventlog.Approval{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ap, err := m.log.Approval(ctx, id)
	if err != nil {
		return ap, err
	}
	if ap.State != api.ApprovalPending {
		return ap, fmt.Errorf("approval %s is already %s: %w", id, ap.State, eventlog.ErrConflict)
	}
	if !m.here(ap.Agent) {
		err := m.forward(ctx, ap.Agent, Forwarded{Kind: "approval", ID: id, Decision: decision, Message: message, By: by}, &ap)
		return ap, err
	}
	r := m.existing(ap.Agent)
	if r == nil {
		return ap, fmt.Errorf("approval %s: its agent is not running: %w", id, eventlog.ErrConflict)
	}
	return r.reply(ctx, ap, decision, message, by)
}

// AgentStatus is what a runner is doing (api.AgentStatus).
type AgentStatus = api.AgentStatus

// Status reports name's runner.
func (m *Manager) Status(ctx context.Context, name string) AgentStatus {
	st := AgentStatus{State: "stopped", Confined: m.cfg.Instances.Confined()}
	if q, err := m.log.Inputs(ctx, name, "queued"); err == nil {
		st.Queued = len(q)
	}
	if m.cfg.Elsewhere != nil {
		st.Daemon = m.cfg.Elsewhere(name)
	}
	if !m.here(name) {
		// Run by another daemon of the cluster: what the store says.
		if ts, err := m.log.RunningTurns(ctx); err == nil {
			for _, t := range ts {
				if t.Agent == name {
					st.State, st.Turn = "busy", t.ID
				}
			}
		}
		if le, ok, err := m.log.LastError(ctx, name); err == nil && ok {
			st.LastError = &le
		}
		return st
	}
	in, running := m.cfg.Instances.Get(name)
	if running {
		st.Instance, st.PID, st.Opencode = string(in.State), in.PID, in.Version
		if u := m.cfg.Instances.Usage(name); u.Processes > 0 {
			st.Usage = &u
		}
		st.State = "idle"
		if in.State == supervisor.Starting {
			st.State = "starting"
		}
	}
	if r := m.existing(name); r != nil {
		if t := r.startedTurn(); t != "" {
			st.State, st.Turn = "busy", t
		}
	}
	if running && in.State == supervisor.Waiting {
		st.State, st.Position = "waiting", in.Position // its turn waits for a slot under --max-running
	}
	if le, ok, err := m.log.LastError(ctx, name); err == nil && ok {
		st.LastError = &le
	}
	return st
}

// Attached is what a client needs to attach to an agent's opencode
// itself (opencode's TUI): the instance's loopback URL and password, the
// pinned session and the project directory. Turns it runs there are
// recorded in the event log like any other.
type Attached struct {
	URL       string `json:"url"`
	Password  string `json:"password"`
	Session   string `json:"session"`
	Directory string `json:"directory"`
}

// Attach starts agent name's opencode if needed and returns how to attach
// to it.
func (m *Manager) Attach(ctx context.Context, name string) (Attached, error) {
	if _, err := m.log.Agent(ctx, name); err != nil {
		return Attached{}, err
	}
	if !m.here(name) {
		return Attached{}, m.elsewhere(name)
	}
	r := m.runner(name)
	req := attachReq{reply: make(chan attachReply, 1)}
	select {
	case r.attachReq <- req:
	case <-ctx.Done():
		return Attached{}, ctx.Err()
	}
	select {
	case rep := <-req.reply:
		if rep.err != nil {
			return Attached{}, rep.err
		}
		return Attached{URL: rep.client.BaseURL, Password: rep.client.Password, Session: rep.session, Directory: rep.client.Directory}, nil
	case <-ctx.Done():
		return Attached{}, ctx.Err()
	}
}

// CurrentTurn returns the session and the turn agent name is running, ""
// when it runs none.
func (m *Manager) CurrentTurn(ctx context.Context, name string) (session, turn string) {
	if r := m.existing(name); r != nil {
		turn = r.startedTurn()
	}
	if a, err := m.log.Agent(ctx, name); err == nil {
		session = a.Session
	}
	return session, turn
}

// TurnEvent is an event of kind about agent name, made outside its
// runner (by the gateway): it belongs to the turn the agent runs, if any,
// with that turn's session and trace id.
func (m *Manager) TurnEvent(ctx context.Context, name string, kind event.Kind, data any) event.Event {
	var turn, trace, session string
	if r := m.existing(name); r != nil {
		turn, trace = r.startedTurnTrace()
	}
	if a, err := m.log.Agent(ctx, name); err == nil {
		session = a.Session
	}
	e := event.New(session, kind, time.Now(), data)
	e.Agent, e.Turn, e.TraceID = name, turn, trace
	return e
}

// MaxRunning is the cap on instances running at once (0: none).
func (m *Manager) MaxRunning() int { return m.cfg.Instances.MaxRunning() }

// StopInstance stops agent name's opencode; it starts afresh at the
// agent's next turn. A turn it runs ends interrupted. It reports whether an
// instance was running.
func (m *Manager) StopInstance(name string) bool {
	_, running := m.cfg.Instances.Get(name)
	m.cfg.Instances.Stop(name)
	return running
}

// Forget stops name's runner and opencode: the agent was deleted or
// changed; a changed agent starts afresh on its next input.
func (m *Manager) Forget(name string) {
	m.mu.Lock()
	r := m.runners[name]
	delete(m.runners, name)
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
	m.cfg.Instances.Stop(name)
	m.cfg.Instances.SetQueued(name, false)
}

// spec is how agent a's opencode runs.
func (m *Manager) spec(ctx context.Context, a agent.Agent) (supervisor.Spec, error) {
	pid, mid, _ := agent.SplitModel(a.Model)
	p, err := m.log.Provider(ctx, pid)
	if err != nil {
		return supervisor.Spec{}, err
	}
	key, err := m.cfg.Keys.Get(pid)
	if err != nil {
		return supervisor.Spec{}, fmt.Errorf("provider %s: its key cannot be read", pid)
	}
	base := p.BaseURL
	if p.Demo {
		if m.cfg.DemoURL == "" {
			return supervisor.Spec{}, errors.New("the demo provider is switched off")
		}
		base, key = m.cfg.DemoURL, "demo-key-not-secret"
	}
	if key == "" {
		key = "none" // a local provider without keys; the SDK wants one
	}
	if m.cfg.Gateway != nil {
		if base, key, err = m.cfg.Gateway(ctx, a.Name); err != nil {
			return supervisor.Spec{}, fmt.Errorf("the agent's gateway key: %w", err)
		}
	}
	prov := opencode.Provider{ID: p.ID, Name: p.Name, BaseURL: base, APIKey: key}
	for _, full := range a.Models {
		if _, id, _ := agent.SplitModel(full); id != "" {
			if pm, ok := p.Model(id); ok {
				prov.Models = append(prov.Models, opencode.Model{ID: pm.ID, Name: pm.Name, ToolCall: pm.ToolCall,
					Reasoning: pm.Reasoning, Context: pm.Context, Output: pm.Output})
			}
		}
	}
	tools := map[string]bool{}
	for t, on := range a.Tools {
		if t != agent.TaosTools {
			tools[t] = on
		}
	}
	cfg := opencode.Config{Provider: prov, Model: mid, SmallModel: mid, Permission: a.Permission, Tools: tools, Questions: true,
		Agent: opencode.Agent{Name: "taosagent", Description: "taosagent agent " + a.Name, Prompt: a.Prompt}}
	if a.Tools[agent.TaosTools] && m.cfg.TaosTools != nil {
		cfg.MCP = map[string]opencode.MCPServer{agent.TaosTools: m.cfg.TaosTools(a.Name)}
	}
	if err := m.mcpServers(a, &cfg); err != nil {
		return supervisor.Spec{}, err
	}
	if err := cfg.Validate(); err != nil {
		return supervisor.Spec{}, err
	}
	h := home.Home{Dir: m.cfg.Home}
	files, err := libraryFiles(h, a.Library)
	if err != nil {
		return supervisor.Spec{}, err
	}
	sp := supervisor.Spec{Name: a.Name, Dir: h.Agent(a.Name), RunDir: h.Instance(a.Name), Config: cfg, Files: files, Instructions: library.Instructions(files),
		Limits: SandboxLimits(m.EffectiveLimits(a.Limits)), Binds: Binds(a)}
	if w := a.WorkspaceAt(a.Workdir); w != nil {
		sp.Workdir = w.Dst()
	}
	if hasTools(a) {
		if m.cfg.ToolModules == nil {
			return supervisor.Spec{}, fmt.Errorf("the agent's tools need %s, which this daemon cannot give", opencode.PluginPackage)
		}
		if sp.Modules, err = m.cfg.ToolModules(); err != nil {
			return supervisor.Spec{}, fmt.Errorf("the agent's tools need %s: %w", opencode.PluginPackage, err)
		}
	}
	if m.cfg.UIDs != nil {
		uid, err := m.log.HostUID(ctx, a.Name, *m.cfg.UIDs)
		if err != nil {
			return supervisor.Spec{}, err
		}
		sp.UID, sp.GID = uid, uid
	}
	return sp, nil
}

// hasTools reports whether a is given a tool of the Library.
func hasTools(a agent.Agent) bool {
	for _, ref := range a.Library {
		if p, err := library.ParseRef(ref); err == nil && p.Kind == library.Tool {
			return true
		}
	}
	return false
}

// Binds are a's workspaces as its sandbox binds them.
func Binds(a agent.Agent) []sandbox.Bind {
	var out []sandbox.Bind
	for _, w := range a.Workspaces {
		out = append(out, sandbox.Bind{Src: w.Path, Dst: w.Dst(), RW: w.RW()})
	}
	return out
}

// mcpServers names in cfg the local MCP servers of the Library that a is
// given, each where the daemon serves it.
func (m *Manager) mcpServers(a agent.Agent, cfg *opencode.Config) error {
	for _, ref := range a.Library {
		p, err := library.ParseRef(ref)
		if err != nil || p.Kind != library.MCP {
			continue
		}
		if m.cfg.MCPServers == nil {
			return fmt.Errorf("the agent's MCP server %s runs only on a confined daemon running as root (each server has a host uid of its own and is reached at the agent's door)", p.Name)
		}
		if p.Name == agent.TaosTools {
			return fmt.Errorf("the agent's MCP server %s: the name is taosagent's own tools'", p.Name)
		}
		if cfg.MCP == nil {
			cfg.MCP = map[string]opencode.MCPServer{}
		}
		cfg.MCP[p.Name] = m.cfg.MCPServers(a.Name, p.Name)
	}
	return nil
}

// libraryFiles renders the Library items pinned in refs as files of the
// instance's config directory (library.Render), each version read and
// checked again.
func libraryFiles(h home.Home, refs []string) (map[string][]byte, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	store := library.Store{Dir: h.Library()}
	files := map[string][]byte{}
	for _, ref := range refs {
		p, err := library.ParseRef(ref)
		if err != nil {
			return nil, err
		}
		it, err := store.Version(p.Kind, p.Name, p.Digest)
		if err != nil {
			return nil, fmt.Errorf("the agent's library item %s: %w", ref, err)
		}
		rendered, err := library.Render(it)
		if err != nil {
			return nil, err
		}
		maps.Copy(files, rendered)
	}
	return files, nil
}

// EffectiveLimits returns l (nil: all defaults) with every zero field set
// to its default: the limits an agent's instance runs under. The sandbox's
// defaults; recycle_mb's is a share of the machine's memory
// (supervisor.RecycleDefault).
func (m *Manager) EffectiveLimits(l *agent.Limits) agent.Limits {
	var out agent.Limits
	if l != nil {
		out = *l
	}
	if out.RecycleMB == 0 {
		out.RecycleMB = supervisor.RecycleDefault(m.cfg.MemTotal, m.cfg.Instances.MaxRunning()) >> 20
	}
	d := sandbox.DefaultServiceLimits()
	if out.MemoryMB == 0 {
		out.MemoryMB = d.Memory >> 20
	}
	if out.Processes == 0 {
		out.Processes = d.Processes
	}
	if out.FileSizeMB == 0 {
		out.FileSizeMB = d.FileSize >> 20
	}
	if out.TmpMB == 0 {
		out.TmpMB = d.Tmp >> 20
	}
	return out
}

// SandboxLimits returns l as the sandbox's limits.
func SandboxLimits(l agent.Limits) sandbox.ServiceLimits {
	return sandbox.ServiceLimits{Memory: l.MemoryMB << 20, Processes: l.Processes, FileSize: l.FileSizeMB << 20, Tmp: l.TmpMB << 20}
}

// onState turns the supervisor's reports into instance events, stored in
// the order reported like every other event (a slow reader is reset and
// resumes by cursor; nothing is dropped). Crashes are reported by the
// driver, with the turn they interrupt.
func (m *Manager) onState(name string, st supervisor.State, pid int, err error) {
	if st == supervisor.Crashed {
		return
	}
	d := event.InstanceData{State: string(st), PID: pid}
	if err != nil && (st == supervisor.Failed || st == supervisor.Waiting) {
		d.Message = opencode.Redacted(err.Error(), m.cfg.Keys.All())
	}
	turn := ""
	if r := m.existing(name); r != nil {
		turn = r.currentTurn()
		r.noteState(st)
	}
	m.instanceEvent(name, turn, d)
}

// instanceEvent stores an instance event of agent name (of turn, "" for
// none), in order with the others, without waiting for the commit.
func (m *Manager) instanceEvent(name, turn string, d event.InstanceData) {
	e := event.New("", event.Instance, time.Now(), d)
	e.Agent, e.Turn = name, turn
	m.log.AppendAsync([]event.Event{e}, func(_ []event.Event, err error) {
		if err != nil && !errors.Is(err, eventlog.ErrClosed) {
			m.logger.Error("store instance event", "agent", name, "state", d.State, "err", err)
		}
	})
}
