// Package api holds the wire types of taosagent's HTTP API that the daemon
// and its Go client share: what the daemon's packages answer with, and
// what a client decodes. It imports only the standard library, so a
// client of the API carries nothing of the daemon (no store, no runner,
// no SQLite). The daemon's packages name these types (often through an
// alias in the package that makes them); the JSON shape of each is the
// API's contract (internal/httpapi/openapi.json).
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Approval is a permission request, persisted by taosagent.
type Approval struct {
	ID       string          `json:"id"`
	Source   string          `json:"source"` // opencode | taosagent
	Agent    string          `json:"agent"`
	Turn     string          `json:"turn"`
	Session  string          `json:"session"`
	Seq      int64           `json:"seq"`
	Ask      json.RawMessage `json:"ask"` // the permission.asked data
	State    string          `json:"state"`
	Message  string          `json:"message,omitempty"`
	By       string          `json:"by,omitempty"`
	Created  time.Time       `json:"created"`
	Resolved *time.Time      `json:"resolved,omitempty"`
}

// AuditEntry is one host action or refusal. Detail never holds a secret.
// A host action is recorded twice: its intent (Phase "intent", Outcome
// "pending") before it runs, and its outcome after; other actions once.
type AuditEntry struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Session    string    `json:"session,omitempty"`
	Action     string    `json:"action"` // the tool or operation
	Tier       string    `json:"tier,omitempty"`
	Target     string    `json:"target"`
	Phase      string    `json:"phase,omitempty"`  // intent | outcome
	Outcome    string    `json:"outcome"`          // pending (an intent), ok, refused, failed
	Digest     string    `json:"digest,omitempty"` // sha256 of the canonical arguments
	Approval   string    `json:"approval,omitempty"`
	Approver   string    `json:"approver,omitempty"`
	Snapshot   string    `json:"snapshot,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

// UsageRow is the usage of one agent and model on one day.
type UsageRow struct {
	Agent        string  `json:"agent"`
	Model        string  `json:"model"`
	Day          string  `json:"day"`
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	Cost         float64 `json:"cost"`
}

// App is a package submitted to the gate.
type App struct {
	SHA256      string          `json:"sha256"`
	ID          string          `json:"app_id"`
	Version     string          `json:"version"`
	State       string          `json:"state"` // refused, pending, approved, rejected
	Report      json.RawMessage `json:"report"`
	SubmittedBy string          `json:"submitted_by"`
	DecidedBy   string          `json:"decided_by,omitempty"`
	Message     string          `json:"message,omitempty"`
	Created     time.Time       `json:"created"`
	Decided     time.Time       `json:"decided,omitzero"`
}

// ModelSync is what a sync of an agent's permitted models found.
type ModelSync struct {
	Agent   string   `json:"agent"`
	Model   string   `json:"model"`  // the agent's model after the sync
	Models  []string `json:"models"` // its permitted set after the sync
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed bool     `json:"changed"`
}

// AgentStatus is what an agent's runner is doing.
type AgentStatus struct {
	State string `json:"state"` // stopped, starting, idle, busy, waiting
	// Position is its place in the line for an instance slot (1 is next)
	// while it is waiting.
	Position int    `json:"position,omitempty"`
	Turn     string `json:"turn,omitempty"`
	Queued   int    `json:"queued"`
	Instance string `json:"instance,omitempty"` // the supervisor's state
	PID      int    `json:"pid,omitempty"`
	// Confined says whether the agent's opencode runs in the sandbox
	// (false only under `serve --unconfined`).
	Confined bool `json:"confined"`
	// Usage is what its running instance holds (memory, CPU), the
	// footprint taOS sizes its tiers from; absent when none runs.
	Usage *Usage `json:"usage,omitempty"`
	// Opencode is the opencode version its instance runs, when one runs.
	Opencode string `json:"opencode,omitempty"`
	// LastError is the error that ended its latest failed turn, if any.
	LastError *LastError `json:"last_error,omitempty"`
	// Daemon, in a cluster, is the daemon that runs the agent ("" while
	// none does). A daemon that does not run it shows its state from the
	// store: busy while a turn runs there, stopped otherwise.
	Daemon string `json:"daemon,omitempty"`
}

// Usage is what an instance's processes (opencode, its sandbox and every
// tool it runs) hold now: resident memory and CPU time used so far.
type Usage struct {
	Processes   int   `json:"processes"`
	MemoryBytes int64 `json:"memory_bytes"`
	CPUMillis   int64 `json:"cpu_ms"`
}

// LastError is the error that ended an agent's latest failed turn.
type LastError struct {
	Turn    string    `json:"turn"`
	Time    time.Time `json:"time"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
}

// ErrorBody is the body of every error answer, of the API and the panel:
// {"error":{"code":…,"message":…}}.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers status with the error body of code and msg. It is
// the one writer of error answers.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	var e ErrorBody
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Message is a message for an agent (POST /v1/agents/NAME/messages).
type Message struct {
	Text    string `json:"text"`
	Mode    string `json:"mode,omitempty"` // queue (default) or steer
	ID      string `json:"id,omitempty"`   // idempotency key
	Model   string `json:"model,omitempty"`
	TraceID string `json:"trace_id,omitempty"` // every event of the turn carries it
	// Conversation names the conversation the turn runs in (one of the
	// agent's, GET /v1/agents/{name}/conversations); "" for its current.
	Conversation string `json:"conversation,omitempty"`
}

// Conversation is one of an agent's conversations: an opencode session its
// turns ran in. Its id is that session's id, which every event of its turns
// carries (session); it lasts as long as the agent's opencode data does.
type Conversation struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"` // its first message, shortened
	Created  time.Time `json:"created"`
	LastTurn time.Time `json:"last_turn"`
	Turns    int       `json:"turns"`
	Current  bool      `json:"current"` // where a message that names none goes
}

// ConversationTitle is a conversation's title from its first message: the
// first line, at most 80 characters.
func ConversationTitle(first string) string {
	first = strings.TrimSpace(first)
	if i := strings.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	if r := []rune(first); len(r) > 80 {
		first = string(r[:79]) + "…"
	}
	return first
}

// Accepted is the answer to a message.
type Accepted struct {
	Input     int64  `json:"input"`
	ID        string `json:"id"`
	Seq       int64  `json:"seq"` // of its input.accepted event
	State     string `json:"state"`
	Duplicate bool   `json:"duplicate"`
}

// DecisionRequest is a person's decision on an approval or an app.
type DecisionRequest struct {
	Decision string `json:"decision"`
	Message  string `json:"message,omitempty"`
}

// Message modes: how a message joins an agent's turns.
const (
	ModeQueue    = "queue"    // a turn of its own, after those before it (the default)
	ModeSteer    = "steer"    // into the running turn, if one runs
	ModeAttached = "attached" // a turn a client attached to opencode ran (the TUI's): recorded, never sent
)

// CheckMode returns nil if mode is one a message may have ("" is queue).
// An error reads "field: reason".
func CheckMode(mode string) error {
	switch mode {
	case "", ModeQueue, ModeSteer:
		return nil
	}
	return fmt.Errorf("mode: must be %q or %q", ModeQueue, ModeSteer)
}

// Audit outcomes: an action's intent is pending until its outcome.
const (
	OutcomePending = "pending"
	OutcomeOK      = "ok"
	OutcomeRefused = "refused" // the caller's fault, or a person's no
	OutcomeFailed  = "failed"  // ours, or the host's
)

// CheckOutcome returns nil if o is an outcome ("" is any).
func CheckOutcome(o string) error {
	switch o {
	case "", OutcomePending, OutcomeOK, OutcomeRefused, OutcomeFailed:
		return nil
	}
	return fmt.Errorf("outcome: must be %s, %s, %s or %s", OutcomePending, OutcomeOK, OutcomeRefused, OutcomeFailed)
}

// ScheduleRequest is a schedule as a person asks for it: exactly one of a
// cron expression (in tz, default UTC) and an interval (every, a Go
// duration: "90m").
type ScheduleRequest struct {
	Cron         string `json:"cron,omitempty"`
	TZ           string `json:"tz,omitempty"`
	Every        string `json:"every,omitempty"`
	Message      string `json:"message"`
	Conversation string `json:"conversation,omitempty"` // "" for the agent's current one
	Missed       string `json:"missed,omitempty"`       // once (default): a missed slot runs once, late; skip
	Overlap      string `json:"overlap,omitempty"`      // skip (default): a slot whose previous run goes on is skipped; queue
}

// Schedule is a schedule as the API shows it, with its next three slots.
type Schedule struct {
	ID           string      `json:"id"`
	Agent        string      `json:"agent"`
	Cron         string      `json:"cron,omitempty"`
	TZ           string      `json:"tz,omitempty"`
	Every        string      `json:"every,omitempty"`
	Message      string      `json:"message"`
	Conversation string      `json:"conversation,omitempty"`
	Missed       string      `json:"missed"`
	Overlap      string      `json:"overlap"`
	CreatedBy    string      `json:"created_by"`
	Created      time.Time   `json:"created"`
	LastSlot     time.Time   `json:"last_slot"` // the newest slot fired or passed over (at first, its creation)
	LastInput    int64       `json:"last_input,omitempty"`
	Next         []time.Time `json:"next"`
}

// Task is a task one agent handed another (task_start), as the API shows
// it. State is queued or running while it is open, then done, error or
// cancelled; Result is the receiver's answer (done) or what went wrong.
type Task struct {
	ID           string     `json:"id"`
	From         string     `json:"from"`
	To           string     `json:"to"`
	Text         string     `json:"text"`
	State        string     `json:"state"`
	Input        int64      `json:"input"`          // the receiver's
	Turn         string     `json:"turn,omitempty"` // the receiver's
	Conversation string     `json:"conversation,omitempty"`
	Result       string     `json:"result,omitempty"`
	ResultInput  int64      `json:"result_input,omitempty"` // the caller's
	Created      time.Time  `json:"created"`
	Ended        *time.Time `json:"ended,omitempty"`
}

// Pending is what waits for a person: the frames of /v1/pending/stream.
type Pending struct {
	Approvals int `json:"approvals"`
	Questions int `json:"questions"`
}

// ChannelRequest is a channel for notifications as a person asks for it:
// ntfy (URL, the topic's; Token, optional), a webhook (URL; its signing
// key is made and shown once) or Web Push (Subscription, as the browser's
// PushSubscription.toJSON gives it).
type ChannelRequest struct {
	Kind         string            `json:"kind"`
	URL          string            `json:"url,omitempty"`
	Token        string            `json:"token,omitempty"` // write-only
	Subscription *PushSubscription `json:"subscription,omitempty"`
	Link         string            `json:"link,omitempty"`   // the panel's URL, for the notifications' links
	Agents       []string          `json:"agents,omitempty"` // none: every agent
	Kinds        []string          `json:"kinds,omitempty"`  // none: every kind (approval, question, error, budget)
	Details      bool              `json:"details,omitempty"`
}

// PushSubscription is a browser's Web Push subscription.
type PushSubscription struct {
	Endpoint       string   `json:"endpoint"`
	ExpirationTime *float64 `json:"expirationTime,omitempty"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Channel is a channel for notifications as the API shows it, with how
// its deliveries fare; Secret only in the answer that created a webhook's.
type Channel struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	URL       string     `json:"url"`
	Link      string     `json:"link,omitempty"`
	Agents    []string   `json:"agents"`
	Kinds     []string   `json:"kinds"`
	Details   bool       `json:"details"`
	CreatedBy string     `json:"created_by"`
	Created   time.Time  `json:"created"`
	Secret    string     `json:"secret,omitempty"`
	Pending   int        `json:"pending"`
	Failed    int        `json:"failed"` // given up on, of the newest 100
	LastError string     `json:"last_error,omitempty"`
	LastSent  *time.Time `json:"last_sent,omitempty"`
}

// Hook is an agent's webhook as the API shows it; Secret only in the
// answer that created it.
type Hook struct {
	ID        string    `json:"id"`
	Agent     string    `json:"agent"`
	Template  string    `json:"template"`
	URL       string    `json:"url"` // the path deliveries are posted to
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
	Secret    string    `json:"secret,omitempty"`
}

// HookRequest is a webhook as a person asks for it.
type HookRequest struct {
	Template string `json:"template"`
}

// Cluster is what GET /v1/cluster shows of the daemons sharing a
// PostgreSQL database (serve --cluster) and of who runs which agent.
type Cluster struct {
	Daemon  string          `json:"daemon"` // the daemon that answered
	Daemons []ClusterDaemon `json:"daemons"`
	Agents  []ClusterAgent  `json:"agents"`
}

// ClusterDaemon is one daemon of a cluster, as it last registered.
type ClusterDaemon struct {
	ID       string    `json:"id"` // host:home
	Addr     string    `json:"addr,omitempty"`
	Labels   []string  `json:"labels,omitempty"`
	Storage  string    `json:"storage"` // the storage its agents' directories are on
	Slots    int       `json:"slots"`
	Agents   int       `json:"agents"` // the agents it owns
	Memory   int64     `json:"memory_bytes"`
	Draining bool      `json:"draining"`
	Live     bool      `json:"live"` // renewing its registration
	Expires  time.Time `json:"expires"`
}

// ClusterAgent is where an agent runs: its owner (a live lease), its pin.
type ClusterAgent struct {
	Agent   string       `json:"agent"`
	Owner   string       `json:"owner,omitempty"` // "" while no daemon owns it
	Token   int64        `json:"token,omitempty"` // its lease's fencing token
	Expires time.Time    `json:"expires,omitzero"`
	Pin     string       `json:"pin,omitempty"`     // a daemon's id or a label k=v
	Storage string       `json:"storage,omitempty"` // where its directory is
	Move    *ClusterMove `json:"move,omitempty"`    // its move to other storage, under way
}

// ClusterMove is an agent's move to a daemon on other storage, under
// way: asked (its owner packs its files between its turns), packed (they
// wait in the database for the target) or failed (nothing moved).
type ClusterMove struct {
	To    string    `json:"to"`
	State string    `json:"state"`           // asked, packed, failed
	Bytes int64     `json:"bytes,omitempty"` // the archive's, once packed
	Error string    `json:"error,omitempty"` // the last attempt's failure
	Asked time.Time `json:"asked"`
}

// MoveRequest is POST /v1/agents/{name}/move's body.
type MoveRequest struct {
	Daemon string `json:"daemon"` // the daemon's id (GET /v1/cluster lists them)
}

// Move is POST /v1/agents/{name}/move's answer: the move asked.
type Move struct {
	Agent string `json:"agent"`
	From  string `json:"from,omitempty"` // its owner when asked, "" if none
	To    string `json:"to"`
	// Copy: its files are copied (the target is on other storage); false:
	// a pin moves it (the target shares its directory's storage).
	Copy bool `json:"copy"`
}

// DrainRequest is POST /v1/cluster/drain's body.
type DrainRequest struct {
	Daemon string `json:"daemon,omitempty"` // "" the daemon asked
	Off    bool   `json:"off,omitempty"`    // end the drain
}

// PinRequest is PUT /v1/agents/{name}/pin's body.
type PinRequest struct {
	Pin string `json:"pin"` // a daemon's id, a label k=v, "" any daemon
}
