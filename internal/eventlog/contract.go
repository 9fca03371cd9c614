package eventlog

import (
	"context"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/hostid"
)

// The event log's contract, as the views its consumers take: each
// consumer names the views it needs (or narrower interfaces of its own,
// as runner.Store), never *Log, so that a second backend (PostgreSQL, for
// several daemons) plugs in without touching them. *Log, over SQLite, is
// the one implementation today; storetest.Run is the conformance suite
// every implementation passes.

// Events is the log itself: an event is durable before anyone sees it,
// every event has a sequence number greater than all before it, and a
// reader resumes by cursor (a cursor the log cannot follow gets a Reset
// record first).
type Events interface {
	Append(ctx context.Context, evs ...event.Event) ([]event.Event, error)
	AppendAsync(evs []event.Event, then func([]event.Event, error))
	AddRaw(raws ...Raw)
	Head() int64
	Floor() int64
	Subscribe(agent string, after int64, explicit bool, kinds ...event.Kind) (Subscription, error)
	Subscribers() (int, <-chan struct{})
	Scan(ctx context.Context, q Query, fn func(Record) error) error
	RecentTurnsStart(ctx context.Context, agent string, n int) (int64, error)
	FollowTurn(ctx context.Context, in Input, quiet time.Duration, idle func(turn string) error, each func(turn string, evs []TurnEvent) (done bool)) error
	Prune(ctx context.Context, before, rawBefore time.Time) (int64, error)
}

// Inbox is the agents' inputs and turns, projected from the events.
type Inbox interface {
	AddInput(ctx context.Context, in Input) (Input, bool, error)
	AddAndStart(ctx context.Context, in Input, start func(Input) event.Event) (_ Input, created, started bool, startErr, err error)
	Inputs(ctx context.Context, agent, state string) ([]Input, error)
	InputOfTrace(ctx context.Context, agent, trace string) (Input, error)
	RunningTurns(ctx context.Context) ([]Turn, error)
	TurnEvents(ctx context.Context, agent, turn string) ([]event.Event, error)
	LastError(ctx context.Context, agent string) (LastError, bool, error)
	TurnCounts(ctx context.Context) ([]TurnCount, error)
	Conversations(ctx context.Context, agent string) ([]Conversation, error)
}

// Catalog is the providers and agents as stored (their rules are the
// catalog package's).
type Catalog interface {
	CreateProvider(ctx context.Context, p agent.Provider) error
	Providers(ctx context.Context) ([]agent.Provider, error)
	Provider(ctx context.Context, id string) (agent.Provider, error)
	DeleteProvider(ctx context.Context, id string) error
	CreateAgent(ctx context.Context, a agent.Agent) (agent.Agent, error)
	UpdateAgent(ctx context.Context, a agent.Agent) (agent.Agent, error)
	SetSession(ctx context.Context, name, session string) error
	DeleteAgent(ctx context.Context, name string) error
	Agents(ctx context.Context) ([]agent.Agent, error)
	Agent(ctx context.Context, name string) (agent.Agent, error)
	HostUID(ctx context.Context, name string, r hostid.Range) (int, error)
}

// Approvals is opencode's permission requests and its question tool's
// requests, projected from the events.
type Approvals interface {
	Approvals(ctx context.Context, state string) ([]Approval, error)
	Approval(ctx context.Context, id string) (Approval, error)
	Questions(ctx context.Context, state string) ([]Question, error)
	Question(ctx context.Context, id string) (Question, error)
}

// AuditTrail is the audit: what was done on the host, by whom.
type AuditTrail interface {
	Audit(ctx context.Context, e AuditEntry) error
	AuditID(ctx context.Context, e AuditEntry) (int64, error)
	AuditEntries(ctx context.Context, after int64, limit int) ([]AuditEntry, error)
	AuditSearch(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// Metering is the gateway's: the agents' keys and what they used.
type Metering interface {
	SetAgentKey(ctx context.Context, agent, hash string) error
	AgentKey(ctx context.Context, agent string) (string, error)
	AgentOfKey(ctx context.Context, hash string) (string, error)
	AddUsage(ctx context.Context, agent, model string, at time.Time, in, out int64, cost float64) error
	Usage(ctx context.Context, agent, model, since string) ([]UsageRow, error)
	UsageSince(ctx context.Context, agent, since string) (tokens int64, cost float64, err error)
}

// AppStore is the App Builder's gate: packages submitted and decided.
type AppStore interface {
	AddApp(ctx context.Context, a App) (App, bool, error)
	DecideApp(ctx context.Context, sha, state, by, message string) (App, error)
	App(ctx context.Context, sha string) (App, error)
	Apps(ctx context.Context, id string) ([]App, error)
	ApprovedApp(ctx context.Context, id string) (App, error)
}

// Schedules is the agents' schedules and the slots they fired: a slot
// fires at most once, its one input committed with it.
type Schedules interface {
	CreateSchedule(ctx context.Context, s Schedule) error
	Schedules(ctx context.Context, agent string) ([]Schedule, error)
	DeleteSchedule(ctx context.Context, agent, id string) error
	FireSlot(ctx context.Context, id string, slot time.Time, in Input) (_ Input, fired bool, err error)
	PassSlot(ctx context.Context, id string, slot time.Time) error
	InputState(ctx context.Context, agent string, id int64) (string, error)
}

// Hooks is the agents' webhooks and the deliveries they took: a
// delivery's signature starts at most one turn.
type Hooks interface {
	CreateHook(ctx context.Context, h Hook) error
	Hooks(ctx context.Context, agent string) ([]Hook, error)
	DeleteHook(ctx context.Context, agent, id string) error
	Deliver(ctx context.Context, hook, signature string, in Input) (_ Input, fresh bool, err error)
}

// Tasks is the tasks agents hand each other: each one's input, and its
// end with its result's input, each committed once.
type Tasks interface {
	StartTask(ctx context.Context, t Task, in Input) (Task, Input, error)
	Tasks(ctx context.Context, agent string, limit int) ([]Task, error)
	OpenTasks(ctx context.Context) ([]Task, error)
	Task(ctx context.Context, id string) (Task, error)
	EndTask(ctx context.Context, id, state, result string, res *Input) (_ Task, ended bool, err error)
	CancelInput(ctx context.Context, agent string, id int64) (cancelled bool, err error)
}

// Notifications is the channels a person is told on and the outbox: each
// notification enqueued once per (channel, source) with the notifier's
// cursor, and delivered at least once.
type Notifications interface {
	CreateChannel(ctx context.Context, c Channel) error
	Channels(ctx context.Context) ([]Channel, error)
	DeleteChannel(ctx context.Context, id string) error
	NotifyCursor(ctx context.Context) (seq int64, ok bool, err error)
	Enqueue(ctx context.Context, cursor int64, ns []Notification) error
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error)
	Notifications(ctx context.Context, channel string, limit int) ([]Notification, error)
	NotificationSent(ctx context.Context, id string, at time.Time) error
	NotificationFailed(ctx context.Context, id, why string, next time.Time, final bool) error
}

// Store is the whole contract.
type Store interface {
	Events
	Inbox
	Catalog
	Approvals
	AuditTrail
	Metering
	AppStore
	Schedules
	Hooks
	Tasks
	Notifications
	// QuickCheck reports what is damaged in the store, nothing when sound.
	QuickCheck(ctx context.Context) ([]string, error)
	Close() error
}

var _ Store = (*Log)(nil)
