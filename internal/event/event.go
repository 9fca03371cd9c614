// Package event defines taosagent's normalized event: the one vocabulary
// that the codec produces, the event log stores, and every client reads.
//
// The six reply kinds and their data fields are fixed by taOS (DESIGN §4):
// fields may be added, never renamed.
package event

import (
	"encoding/json"
	"slices"
	"time"
)

// Kind names what an event says.
type Kind string

// The reply kinds.
const (
	Delta      Kind = "delta"       // DeltaData: a piece of the answer
	Reasoning  Kind = "reasoning"   // DeltaData: a piece of the model's reasoning
	ToolCall   Kind = "tool_call"   // ToolCallData: once per call id
	ToolResult Kind = "tool_result" // ToolResultData: once per call id
	Final      Kind = "final"       // FinalData: the turn ended normally
	Error      Kind = "error"       // ErrorData: the turn ended in failure
)

// The control kinds.
const (
	InputAccepted      Kind = "input.accepted"   // InputData: stored in the inbox
	InputSteered       Kind = "input.steered"    // InputData: sent into the running turn
	InputCancelled     Kind = "input.cancelled"  // InputData: taken out of the inbox before its turn
	TurnStarted        Kind = "turn.started"     // InputData: a turn began for an input
	Status             Kind = "status"           // StatusData
	PermissionAsked    Kind = "permission.asked" // PermissionAskedData
	PermissionResolved Kind = "permission.resolved"
	QuestionAsked      Kind = "question.asked"
	QuestionResolved   Kind = "question.resolved"
	Usage              Kind = "usage" // UsageData, after each model step
	ModelSwitched      Kind = "model.switched"
	Instance           Kind = "instance" // InstanceData
	Egress             Kind = "egress"   // EgressData: a connection asked of the egress proxy
)

// Kinds is every kind, in the order declared above: the one list of them
// (TestKindsListsEveryKind holds it to the constants).
var Kinds = []Kind{Delta, Reasoning, ToolCall, ToolResult, Final, Error,
	InputAccepted, InputSteered, InputCancelled, TurnStarted, Status, PermissionAsked, PermissionResolved,
	QuestionAsked, QuestionResolved, Usage, ModelSwitched, Instance, Egress}

// Known reports whether k is one of Kinds.
func (k Kind) Known() bool { return slices.Contains(Kinds, k) }

// Terminal reports whether k ends a turn. Every turn ends with exactly one.
func (k Kind) Terminal() bool { return k == Final || k == Error }

// Event is one normalized event. The codec fills Session, Kind, Data and
// Time; the runner adds Agent and Turn; the event log assigns Seq.
type Event struct {
	Seq       int64           `json:"seq"`
	Agent     string          `json:"agent"`
	Session   string          `json:"session"`
	Turn      string          `json:"turn"`
	TraceID   string          `json:"trace_id,omitempty"` // the trace (taOS's) of the message whose turn this is
	Time      time.Time       `json:"time"`
	Kind      Kind            `json:"kind"`
	Data      json.RawMessage `json:"data"`
	Synthetic bool            `json:"synthetic,omitempty"` // learned by reconciling, not seen live
}

// DeltaData is the data of Delta and Reasoning.
type DeltaData struct {
	Text string `json:"text"`
}

// ToolCallData is the data of ToolCall.
type ToolCallData struct {
	CallID string          `json:"call_id"`
	Tool   string          `json:"tool"`
	Input  json.RawMessage `json:"input"`
}

// ToolResultData is the data of ToolResult. Error is empty on success.
type ToolResultData struct {
	CallID     string `json:"call_id"`
	Tool       string `json:"tool"`
	Output     string `json:"output"`
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
}

// UsageData counts tokens and cost, of one step (Usage) or a whole turn
// (inside FinalData).
type UsageData struct {
	Input      int     `json:"input"`
	Output     int     `json:"output"`
	Reasoning  int     `json:"reasoning"`
	CacheRead  int     `json:"cache_read"`
	CacheWrite int     `json:"cache_write"`
	Cost       float64 `json:"cost"`
	// Set on the gateway's count of one call (source "gateway"); the
	// codec's per-step figures, from opencode, have neither.
	Model  string `json:"model,omitempty"`
	Source string `json:"source,omitempty"`
	// Warning, on the gateway's count, says a budget's soft share was
	// passed.
	Warning string `json:"warning,omitempty"`
}

// Add accumulates u into t.
func (t *UsageData) Add(u UsageData) {
	t.Input += u.Input
	t.Output += u.Output
	t.Reasoning += u.Reasoning
	t.CacheRead += u.CacheRead
	t.CacheWrite += u.CacheWrite
	t.Cost += u.Cost
}

// FinalData is the data of Final. Text is the turn's whole answer: its text
// parts in order, separated by a blank line; never reasoning.
type FinalData struct {
	Text  string    `json:"text"`
	Usage UsageData `json:"usage"`
}

// Error codes of ErrorData.
const (
	CodeAborted        = "aborted"          // the turn was aborted
	CodeProviderAuth   = "provider_auth"    // the model provider refused the key
	CodeRateLimited    = "rate_limited"     // the provider said 429
	CodeBudget         = "budget_exceeded"  // the agent's budget at the gateway is spent
	CodeProvider       = "provider_error"   // the provider failed (5xx, bad answer)
	CodeModelNotFound  = "model_not_found"  // the model is not configured
	CodeContext        = "context_overflow" // the conversation no longer fits
	CodeInterrupted    = "interrupted"      // opencode or taosagent went away mid-turn
	CodeOpencode       = "opencode_error"   // anything else opencode reported
	CodeInstanceFailed = "instance_failed"  // the agent's opencode could not be started
)

// ErrorData is the data of Error: a short message fit for a person, never
// a stack trace or a secret.
type ErrorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status,omitempty"` // the provider's HTTP status, when there was one
}

// StatusData is the data of Status.
type StatusData struct {
	State   string `json:"state"` // "busy" or "retry"
	Attempt int    `json:"attempt,omitempty"`
	Message string `json:"message,omitempty"`
	NextMS  int64  `json:"next_ms,omitempty"` // epoch ms of the next retry
}

// PermissionAskedData is the data of PermissionAsked. Approval is the id to
// answer.
type PermissionAskedData struct {
	Approval string          `json:"approval"`
	Tool     string          `json:"tool"`
	CallID   string          `json:"call_id"`
	Patterns []string        `json:"patterns"`
	Always   []string        `json:"always,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Source is who asks: "opencode" (a tool of opencode's; the default
	// when empty) or "taosagent" (one of taosagent's own host tools).
	Source string `json:"source,omitempty"`
	// For taosagent's asks: the exact call the approval is bound to.
	Args json.RawMessage `json:"args,omitempty"` // its arguments, secrets masked
	// Display is the call as a person is shown it (render.Call): whole,
	// secrets masked, every character visible. The CLI and the panel
	// show it as is.
	Display string     `json:"display,omitempty"`
	Digest  string     `json:"digest,omitempty"`  // sha256 of the canonical arguments
	Tier    string     `json:"tier,omitempty"`    // "destructive"
	Client  string     `json:"client,omitempty"`  // who called, when not an agent
	Expires *time.Time `json:"expires,omitempty"` // expiry is a refusal
}

// PermissionResolvedData is the data of PermissionResolved.
type PermissionResolvedData struct {
	Approval string `json:"approval"`
	Decision string `json:"decision"`     // once, always, reject, expired
	By       string `json:"by,omitempty"` // who answered, when known
	Message  string `json:"message,omitempty"`
}

// ModelSwitchedData is the data of ModelSwitched: the model answering an
// agent's calls changed. Source "gateway": the gateway fell back to the
// agent's fallback when its upstream failed. Source "opencode": opencode's
// session moved to another model (a switch made in its TUI); taosagent
// writes a switch within the agent's permitted models back to the agent,
// and refuses (and audits) one outside them.
type ModelSwitchedData struct {
	From   string `json:"from"` // provider/model
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
	Source string `json:"source,omitempty"` // "gateway" or "opencode"
}

// EgressData is the data of Egress: one connection the agent's instance
// asked the daemon's egress proxy for, allowed or refused by its egress
// policy (package egress).
type EgressData struct {
	Method  string `json:"method"` // CONNECT, or the http request's
	Host    string `json:"host"`   // as asked for
	Port    int    `json:"port"`
	Address string `json:"address,omitempty"` // the address dialled
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"` // why it was refused
}

// InputData is the data of InputAccepted, InputSteered, InputCancelled and TurnStarted.
type InputData struct {
	Input    int64  `json:"input"`
	ClientID string `json:"id,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Text     string `json:"text,omitempty"`
	Model    string `json:"model,omitempty"`
	TraceID  string `json:"trace_id,omitempty"`
	// Conversation: on input.accepted, the conversation the message names
	// ("" for the agent's current one); on turn.started, the one the turn
	// runs in (its session, which every event of the turn carries).
	Conversation string `json:"conversation,omitempty"`
	// Schedule: the schedule whose slot sent the message ("" for none).
	Schedule string `json:"schedule,omitempty"`
	// Task: the task the message belongs to ("" for none), handed by the
	// agent From (input.accepted of the receiver), or its result, from the
	// agent that did it (input.accepted of the caller). A message from an
	// agent has less authority than a person's.
	Task string `json:"task,omitempty"`
	From string `json:"from,omitempty"`
}

// QuestionAskedData is the data of QuestionAsked.
type QuestionAskedData struct {
	Question  string          `json:"question"`
	CallID    string          `json:"call_id,omitempty"`
	Questions json.RawMessage `json:"questions"`
}

// QuestionResolvedData is the data of QuestionResolved.
type QuestionResolvedData struct {
	Question string     `json:"question"`
	Answers  [][]string `json:"answers,omitempty"`
	Rejected bool       `json:"rejected,omitempty"`
	// Expired: the request went away unanswered (its turn ended, its
	// opencode stopped); Message says why.
	Expired bool   `json:"expired,omitempty"`
	By      string `json:"by,omitempty"`
	Message string `json:"message,omitempty"`
}

// State is the question's state that d records (api.Question*).
func (d QuestionResolvedData) State() string {
	switch {
	case d.Expired:
		return "expired"
	case d.Rejected:
		return "rejected"
	}
	return "answered"
}

// InstanceData is the data of Instance.
type InstanceData struct {
	State   string `json:"state"` // starting, ready, waiting, crashed, restarted, failed, recycled, stopped
	PID     int    `json:"pid,omitempty"`
	Message string `json:"message,omitempty"`
}

// New makes an event of kind k with data marshalled from v.
func New(session string, k Kind, now time.Time, v any) Event {
	b, err := json.Marshal(v)
	if err != nil {
		// Every data type above marshals; a failure is a programming error.
		panic("event: marshal " + string(k) + ": " + err.Error())
	}
	return Event{Session: session, Kind: k, Time: now, Data: b}
}
