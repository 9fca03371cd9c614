// Package control is the one service every front end of taosagent calls:
// the HTTP API, the MCP server, the CLI and the panel. It holds the rules
// that must not be written twice: who the actor is, which tier an action
// has, when a person must approve it, its audit (the intent before it
// runs, the outcome after, refusals too), snapshots before changes, and
// the limits on what a caller may send. The changes themselves are other
// packages' (catalog: providers and agents; runner: turns; hostops: the
// host's services and files; appgate: the App Builder and its gate); each
// asks for them here, through Do.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/taosagent/taosagent/internal/notify"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/catalog"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/render"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/schedule"
	"github.com/taosagent/taosagent/internal/snapshot"
)

// Kind is who acts.
type Kind string

// The kinds of actor.
const (
	Operator Kind = "operator" // the holder of the operator token
	CLIUser  Kind = "cli"      // a local user of the CLI, by uid
	Agent    Kind = "agent"    // an agent, through its own MCP token
	Recovery Kind = "recovery" // the recovery CLI (doctor, fix)
	// Daemon is taosagent itself, acting on what it observed (a model
	// switch opencode reported, a sync of a key's scope).
	Daemon Kind = "daemon"
	// Webhook is a delivery of one of an agent's webhooks, by its id: an
	// outside sender that knows the hook's secret, never a person.
	Webhook Kind = "webhook"
)

// Channels an actor comes through.
const (
	API   = "api"   // the HTTP API
	MCP   = "mcp"   // the MCP server (HTTP or stdio): a model may be driving
	Local = "local" // the CLI on this machine
	Panel = "panel" // the web panel: a person signed in with the operator token
)

// Actor names who calls, and through what.
type Actor struct {
	Kind    Kind
	Name    string // the agent; the uid of a CLI user; a client's name
	Session string // an agent's opencode session, when known
	Channel string // API, MCP or Local
}

// String is how the audit names a.
func (a Actor) String() string {
	s := string(a.Kind)
	switch a.Kind {
	case Agent:
		s = "agent " + a.Name
	case CLIUser:
		s = "cli uid " + a.Name
	case Webhook:
		s = "webhook " + a.Name
	}
	if a.Channel != "" {
		s += " (" + a.Channel + ")"
	}
	return s
}

// Person reports whether a speaks for a person: only a person answers
// approvals. An agent never does, nor does anything that comes through MCP,
// where a model may be at the wheel.
func (a Actor) Person() bool {
	return a.Kind != Agent && a.Kind != Daemon && a.Kind != Webhook && a.Channel != MCP
}

// Tier is how much an action may change.
type Tier string

// The tiers.
const (
	Read        Tier = "read"        // changes nothing; not audited
	Write       Tier = "write"       // audited; no approval
	Destructive Tier = "destructive" // audited; a person approves each call made through MCP
)

// Actions is the tier of every action the control service runs: the one
// table of them. Its names are those the audit shows: an MCP tool's name
// for the host tools and the App Builder's (mcpserver annotates each tool
// from this table), a dotted name for the API's operations. A call is
// never less than its action's tier; the rule that makes one call more
// raises it (Call.Tier: an agent_update that widens an agent, an agent
// created by an agent), in one place each.
var Actions = map[string]Tier{
	// The MCP tools.
	"status":            Read,
	"logs":              Read,
	"config_show":       Read,
	"agents_list":       Read,
	"agent_events":      Read,
	"audit_recent":      Read,
	"diagnose":          Read,
	"snapshots_list":    Read,
	"config_snapshot":   Write,
	"agent_create":      Destructive, // agent.create, as asked for through MCP
	"agent_update":      Write,
	"agent_restart":     Write,
	"service_restart":   Destructive,
	"containers_list":   Read,
	"container_logs":    Read,
	"container_restart": Destructive,
	"config_write":      Destructive,
	"config_restore":    Destructive,
	"agent_delete":      Destructive,
	"agent_permissions": Destructive,
	"instance_kill":     Destructive,
	"app_new":           Write,
	"app_build":         Write,
	"app_validate":      Read,
	"app_run":           Write,
	"app_submit":        Write,
	"library_list":      Read,
	"library_show":      Read,
	"library_propose":   Write,
	"task_start":        Write,
	"task_status":       Read,
	"task_cancel":       Write,
	// The API's operations (and those the MCP tools above call).
	"provider.create":           Write,
	"schedule.create":           Write,
	"hook.create":               Write,
	"hook.delete":               Write,
	"hook.deliver":              Write,
	"schedule.delete":           Write,
	"schedule.run":              Write,
	"task.start":                Write,
	"notify.create":             Write,
	"notify.delete":             Write,
	"task.cancel":               Write,
	"provider.delete":           Destructive,
	"agent.create":              Write,
	"agent.update":              Write,
	"agent.delete":              Destructive,
	"agent.abort":               Write,
	"agent.attach":              Write,
	"agent.key":                 Write,
	"agent.conversation.new":    Write,
	"agent.conversation.resume": Write,
	"agent.models.sync":         Write,
	"agent.model.switch":        Write,
	"approval.once":             Write,
	"approval.always":           Write,
	"approval.reject":           Write,
	"question.answer":           Write,
	"question.reject":           Write,
	"library.add":               Write,
	"library.sync":              Write,
	"library.propose":           Write,
	"library.accept":            Destructive,
	"library.remove":            Destructive,
	"library.secret":            Write,
	"app.submit":                Write,
	"app.approve":               Write,
	"app.reject":                Write,
	"app.preview":               Write,
	"app.run":                   Write,
	"app.new":                   Write,
	"app.build":                 Write,
	"opencode.reload":           Write,
	"cluster.drain":             Write,
	"cluster.pin":               Write,
	"cluster.move":              Write,
	// What the daemon records of the gateway.
	"gateway.fallback": Write,
	"budget.soft":      Write,
}

// ActionTier is the tier of action name; false if it has none.
func ActionTier(name string) (Tier, bool) {
	t, ok := Actions[name]
	return t, ok
}

// rank orders the tiers.
func (t Tier) rank() int {
	switch t {
	case Read:
		return 0
	case Write:
		return 1
	}
	return 2
}

// tier is c's tier: its action's, or more when c is raised; an action
// without a tier is refused (a call no table names is a mistake, and is
// never run).
func (c Call) tier() (Tier, error) {
	t, ok := Actions[c.Tool]
	if !ok {
		return Destructive, fmt.Errorf("%w: %q is no action of taosagent's", ErrForbidden, c.Tool)
	}
	if c.Tier.rank() > t.rank() {
		t = c.Tier
	}
	return t, nil
}

// Errors of the service beyond the store's and the runner's.
var (
	// ErrForbidden: the actor may never do this (an agent answering an
	// approval, for one).
	ErrForbidden = errors.New("forbidden")
	// ErrRefused: a person rejected the call, or its approval expired, or
	// the audit could not be written. Nothing was changed.
	ErrRefused = errors.New("refused")
	// ErrTooLarge: a text or file beyond the limits.
	ErrTooLarge = errors.New("too large")
	// ErrUpstream: a model provider could not be asked (unreachable, or
	// it refused); nothing was changed.
	ErrUpstream = errors.New("upstream")
)

// Service is the control service. Set the fields, then use it; it is safe
// for concurrent use.
type Service struct {
	Log    eventlog.Store
	Runner *runner.Manager
	// Cluster is the daemon's cluster (serve --cluster), nil when it runs
	// alone.
	Cluster Cluster
	// Scheduler fires the schedules' slots (woken when one is added);
	// ScheduleFloor is the shortest time between a schedule's slots
	// (default schedule.DefaultFloor, a minute; tests lower it).
	Scheduler     *schedule.Scheduler
	ScheduleFloor time.Duration
	// Notifier delivers the notifications (woken when a channel is added);
	// its VAPID public key is what a browser subscribes with.
	Notifier *notify.Notifier
	Catalog  *catalog.Catalog // providers and agents
	Home     string
	Keys     agent.Keys // for redaction: no provider key leaves in a tool's output
	Version  string
	Logger   *slog.Logger
	// Secrets are redacted from every output besides the provider keys
	// (the operator token, for one).
	Secrets []string
	// ApprovalTTL is how long a destructive call waits for a person;
	// expiry is a refusal. Default 10 minutes.
	ApprovalTTL time.Duration
	// Progress is how often a waiting call reports that it still waits
	// (which keeps an MCP client's timeout from firing). Default 5 s.
	Progress time.Duration
	// Deleted, when set, is told of each agent deleted (its MCP token
	// ends with it).
	Deleted func(agent string)
	// DefaultBudget is the budget of an agent created through MCP or by
	// an agent (nil: such creation is refused).
	DefaultBudget *agent.Budget
	// Keyring issues the agents' gateway keys (nil: no gateway).
	Keyring *gateway.Keyring
	// Changed, when set, is told after every change that succeeded (the
	// gateway forgets what it cached of agents, providers and keys).
	Changed func()
	// Scope, when set, lists the models an agent's key may access at its
	// provider (the gateway's Scope): the source of a LiteLLM agent's
	// permitted set.
	Scope func(ctx context.Context, a agent.Agent) ([]string, error)
	// Opencode, when set, switches the daemon to the opencode release its
	// home records (verified), and returns its version.
	Opencode func(ctx context.Context) (version string, err error)
	// Packages installs the npm package of a local MCP server of the
	// Library (npmpkg) when a person adds or accepts its version, so
	// that its first start is quick and a package npm cannot install is
	// refused there; nil: installed at the server's first start.
	Packages func(ctx context.Context, spec string, lock []byte) error

	started  time.Time
	agentMu  sync.Mutex // serializes read-modify-write of agents
	hooks    hookLimits // each webhook's rate
	mu       sync.Mutex
	waits    map[string]*wait
	initOnce sync.Once
}

func (s *Service) init() {
	s.initOnce.Do(func() {
		if s.ApprovalTTL <= 0 {
			s.ApprovalTTL = 10 * time.Minute
		}
		if s.Progress <= 0 {
			s.Progress = 5 * time.Second
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		s.waits = map[string]*wait{}
		s.started = time.Now()
	})
}

// Started is when the service was first used: the daemon's start.
func (s *Service) Started() time.Time {
	s.init()
	return s.started
}

// Call is one action, as the audit and an approval see it.
type Call struct {
	Actor  Actor
	Tool   string // the action (Actions): an MCP tool's name or an API operation ("agent.update")
	Tier   Tier   // "": the action's tier (Actions); more raises this call, less is ignored
	Target string
	Args   any // canonicalized and digested; shown (redacted) to the approver
}

type progressKey struct{}

// WithProgress returns ctx carrying fn, which a call made with it calls
// while it waits for a person (an MCP server reports progress with it, so
// that its client's timeout does not fire).
func WithProgress(ctx context.Context, fn func(msg string)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// ProgressOf is the progress function ctx carries (WithProgress), nil if
// none.
func ProgressOf(ctx context.Context) func(msg string) {
	fn, _ := ctx.Value(progressKey{}).(func(string))
	return fn
}

// Digest is the sha256 of args in canonical JSON (keys sorted, no
// insignificant space): the identity an approval is bound to.
func Digest(args any) (string, []byte) {
	b := render.Canonical(args)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b
}

// Do runs an action for c.Actor: a destructive call through MCP or by an
// agent first waits for a person's approval; then the intent is audited
// (if it cannot be, the action is refused), run runs, and the outcome is
// audited with the snapshot run took, if any. Refusals are audited too.
func (s *Service) Do(ctx context.Context, c Call, run func(ctx context.Context) (snapshot string, err error)) error {
	s.init()
	tier, terr := c.tier()
	c.Tier = tier
	digest, canon := Digest(c.Args)
	e := eventlog.AuditEntry{Actor: Bound(c.Actor.String(), 256), Session: Bound(c.Actor.Session, 128), Action: Bound(c.Tool, 128),
		Tier: string(c.Tier), Target: Bound(s.Redact(c.Target), 512), Digest: digest}
	if terr != nil {
		e.Outcome, e.Detail = api.OutcomeRefused, Bound(terr.Error(), 1024)
		s.audit(ctx, e)
		return terr
	}
	if c.Tier == Destructive && !c.Actor.Person() {
		if len(canon) > MaxApprovalArgs {
			err := Invalidf("arguments: %d bytes; a call a person must approve may have at most %d (64 KiB), so that it can be shown whole", len(canon), MaxApprovalArgs)
			e.Outcome, e.Detail = api.OutcomeRefused, Bound(err.Error(), 1024)
			s.audit(ctx, e)
			return err
		}
		id, by, err := s.ask(ctx, c, digest, canon)
		e.Approval, e.Approver = id, Bound(by, 256)
		if err != nil {
			e.Outcome, e.Detail = api.OutcomeRefused, Bound(s.Redact(err.Error()), 1024)
			s.audit(ctx, e)
			return err
		}
	}
	intent := e
	intent.Phase, intent.Outcome = "intent", api.OutcomePending
	if _, err := s.Log.AuditID(context.WithoutCancel(ctx), intent); err != nil {
		s.Logger.Error("audit: the intent cannot be written; the action is refused", "action", c.Tool, "err", err)
		return fmt.Errorf("%w: the audit cannot be written, so nothing was done", ErrRefused)
	}
	start := time.Now()
	snap, err := run(ctx)
	if err == nil && s.Changed != nil {
		s.Changed()
	}
	e.Phase, e.Snapshot, e.DurationMS, e.Outcome = "outcome", snap, time.Since(start).Milliseconds(), api.OutcomeOK
	if err != nil {
		e.Outcome, e.Detail = outcome(err), Bound(s.Redact(err.Error()), 1024)
	}
	s.audit(ctx, e)
	return err
}

// Refuse audits a call refused before it could run (bad input, a forbidden
// actor) and returns err.
func (s *Service) Refuse(ctx context.Context, c Call, err error) error {
	s.init()
	c.Tier, _ = c.tier()
	digest, _ := Digest(c.Args)
	s.audit(ctx, eventlog.AuditEntry{Actor: Bound(c.Actor.String(), 256), Session: Bound(c.Actor.Session, 128), Action: Bound(c.Tool, 128),
		Tier: string(c.Tier), Target: Bound(s.Redact(c.Target), 512), Digest: digest, Outcome: api.OutcomeRefused, Detail: Bound(s.Redact(err.Error()), 1024)})
	return err
}

func (s *Service) audit(ctx context.Context, e eventlog.AuditEntry) {
	if err := s.Log.Audit(context.WithoutCancel(ctx), e); err != nil {
		s.Logger.Error("audit", "action", e.Action, "err", err)
	}
}

// outcome classifies err: a refusal (the caller's fault, or a person's
// no) or a failure (ours, or the host's).
func outcome(err error) string {
	if agent.IsInvalid(err) || errors.Is(err, runner.ErrInvalid) || errors.Is(err, eventlog.ErrExists) ||
		errors.Is(err, eventlog.ErrNotFound) || errors.Is(err, eventlog.ErrInUse) || errors.Is(err, eventlog.ErrConflict) ||
		errors.Is(err, ErrForbidden) || errors.Is(err, ErrRefused) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, runner.ErrIdle) {
		return api.OutcomeRefused
	}
	return api.OutcomeFailed
}

// Bound cuts s to at most n bytes (on a rune boundary), marking the cut:
// no caller can fill the audit with what it sends.
func Bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
