// Package client is the Go client of taosagent's HTTP API. The CLI and the
// end-to-end tests use it. It imports the API's wire types (api), the event
// vocabulary (event) and the domain types of agents (agent, egress); nothing
// of the daemon's store, runner, supervisor or control service, nor SQLite
// (TestTheClientCarriesNothingOfTheDaemon).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

// Client talks to one daemon.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7077
	Token string
	HTTP  *http.Client // default: no timeout (streams are long)
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

// StatusOf returns the HTTP status of an API error, 0 for other errors.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var r io.Reader
	ct := "application/json"
	if raw, ok := body.(Raw); ok {
		r, ct = bytes.NewReader(raw.Data), raw.ContentType
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// Do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("taosagent daemon at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func decodeError(resp *http.Response) error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		return &Error{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(b))}
	}
	return &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
}

// Health is GET /healthz.
func (c *Client) Health(ctx context.Context) (version string, err error) {
	var h struct{ Status, Version string }
	err = c.Do(ctx, "GET", "/healthz", nil, &h)
	return h.Version, err
}

// Model is a provider's model.
type Model struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	ToolCall  bool   `json:"tool_call"`
	Reasoning bool   `json:"reasoning"`
}

// Provider is a model provider as the API shows it (APIKey only on create).
type Provider struct {
	ID      string  `json:"id"`
	Name    string  `json:"name,omitempty"`
	Kind    string  `json:"kind,omitempty"` // "" (OpenAI-compatible) or "litellm"
	BaseURL string  `json:"base_url"`
	APIKey  string  `json:"api_key,omitempty"`
	Models  []Model `json:"models"`
	Demo    bool    `json:"demo,omitempty"`
	HasKey  bool    `json:"has_key,omitempty"`
}

// Providers lists the providers.
func (c *Client) Providers(ctx context.Context) ([]Provider, error) {
	var out struct{ Providers []Provider }
	err := c.Do(ctx, "GET", "/v1/providers", nil, &out)
	return out.Providers, err
}

// CreateProvider adds a provider.
func (c *Client) CreateProvider(ctx context.Context, p Provider) (Provider, error) {
	var out Provider
	err := c.Do(ctx, "POST", "/v1/providers", p, &out)
	return out, err
}

// DeleteProvider removes a provider.
func (c *Client) DeleteProvider(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/providers/"+url.PathEscape(id), nil, nil)
}

// Agent is an agent as the API shows it (and as it is sent to create
// one). A test holds it to the server's view: every field the server sends
// has its place here.
type Agent struct {
	Name       string            `json:"name"`
	Model      string            `json:"model"`
	Models     []string          `json:"models,omitempty"`
	Prompt     string            `json:"prompt,omitempty"`
	Permission json.RawMessage   `json:"permission,omitempty"`
	Tools      map[string]bool   `json:"tools,omitempty"`
	Limits     *agent.Limits     `json:"limits,omitempty"`
	Budget     *agent.Budget     `json:"budget,omitempty"`
	Fallback   string            `json:"fallback,omitempty"`
	MayRead    []string          `json:"may_read,omitempty"`
	MayTask    []string          `json:"may_task,omitempty"`
	Egress     *egress.Policy    `json:"egress,omitempty"`
	Library    []string          `json:"library,omitempty"` // kind/name@digest
	Workspaces []agent.Workspace `json:"workspaces,omitempty"`
	Workdir    string            `json:"workdir,omitempty"` // a workspace's name
	// UpstreamKey is write-only: the agent's own key at its LiteLLM proxy.
	UpstreamKey    string       `json:"upstream_key,omitempty"`
	HasUpstreamKey bool         `json:"has_upstream_key,omitempty"`
	Builtin        bool         `json:"builtin,omitempty"`
	Session        string       `json:"session,omitempty"`
	Created        time.Time    `json:"created,omitzero"`
	Updated        time.Time    `json:"updated,omitzero"`
	Status         *AgentStatus `json:"status,omitempty"`
}

// AgentStatus is what an agent is doing: the server's type.
type AgentStatus = api.AgentStatus

// Agents lists the agents.
func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	var out struct{ Agents []Agent }
	err := c.Do(ctx, "GET", "/v1/agents", nil, &out)
	return out.Agents, err
}

// Agent returns one agent.
func (c *Client) Agent(ctx context.Context, name string) (Agent, error) {
	var out Agent
	err := c.Do(ctx, "GET", "/v1/agents/"+url.PathEscape(name), nil, &out)
	return out, err
}

// CreateAgent adds an agent.
func (c *Client) CreateAgent(ctx context.Context, a Agent) (Agent, error) {
	a.Status, a.Builtin = nil, false
	var out Agent
	err := c.Do(ctx, "POST", "/v1/agents", a, &out)
	return out, err
}

// UpdateAgent patches an agent with the fields of patch.
func (c *Client) UpdateAgent(ctx context.Context, name string, patch map[string]any) (Agent, error) {
	var out Agent
	err := c.Do(ctx, "PATCH", "/v1/agents/"+url.PathEscape(name), patch, &out)
	return out, err
}

// DeleteAgent removes an agent.
func (c *Client) DeleteAgent(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/v1/agents/"+url.PathEscape(name), nil, nil)
}

// Message is a message for an agent (api.Message).
type Message = api.Message

// Accepted is the answer to a message (api.Accepted).
type Accepted = api.Accepted

// Send puts a message in an agent's inbox.
func (c *Client) Send(ctx context.Context, agent string, m Message) (Accepted, error) {
	var out Accepted
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/messages", m, &out)
	return out, err
}

// Conversation is one of an agent's conversations (api.Conversation).
type Conversation = api.Conversation

// Task is a task one agent handed another.
type Task = api.Task

// Tasks lists the newest tasks agent handed or was handed ("" for all).
func (c *Client) Tasks(ctx context.Context, agent string) ([]Task, error) {
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	err := c.Do(ctx, "GET", "/v1/tasks?agent="+url.QueryEscape(agent), nil, &out)
	return out.Tasks, err
}

// Task returns task id.
func (c *Client) Task(ctx context.Context, id string) (Task, error) {
	var out Task
	err := c.Do(ctx, "GET", "/v1/tasks/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Conversations lists an agent's conversations, the latest first.
func (c *Client) Conversations(ctx context.Context, agent string) ([]Conversation, error) {
	var out struct{ Conversations []Conversation }
	err := c.Do(ctx, "GET", "/v1/agents/"+url.PathEscape(agent)+"/conversations", nil, &out)
	return out.Conversations, err
}

// NewConversation starts the agent on a new conversation at its next turn.
func (c *Client) NewConversation(ctx context.Context, agent string) error {
	return c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/conversations", nil, nil)
}

// Resume makes conversation id the agent's current one.
func (c *Client) Resume(ctx context.Context, agent, id string) error {
	return c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/conversations/"+url.PathEscape(id)+"/resume", nil, nil)
}

// Abort aborts an agent's running turn and returns its id.
func (c *Client) Abort(ctx context.Context, agent string) (string, error) {
	var out struct{ Turn string }
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/abort", nil, &out)
	return out.Turn, err
}

// Event is one stored event, as the API sends it.
type Event struct{ event.Event }

// Field decodes one string field of e's data ("" if absent).
func (e Event) Field(name string) string {
	var m map[string]any
	json.Unmarshal(e.Data, &m)
	switch v := m[name].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Events reads stored events after seq after (kinds filter optional).
func (c *Client) Events(ctx context.Context, agent string, after int64, limit int, kinds ...string) ([]Event, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if len(kinds) > 0 {
		q.Set("kinds", strings.Join(kinds, ","))
	}
	var out struct{ Events []Event }
	err := c.Do(ctx, "GET", "/v1/agents/"+url.PathEscape(agent)+"/events?"+q.Encode(), nil, &out)
	return out.Events, err
}

// Stream follows an agent's events after seq after, calling fn for each in
// order, until fn returns false, ctx ends, or an error. It reconnects with
// Last-Event-ID when the connection drops, so fn sees every event once.
// A "reset" event (retention passed the cursor) is given to fn like others.
func (c *Client) Stream(ctx context.Context, agent string, after int64, fn func(Event) bool) error {
	backoff := 100 * time.Millisecond
	for {
		more, err := c.streamOnce(ctx, agent, &after, fn)
		if !more || ctx.Err() != nil {
			return err
		}
		if s := StatusOf(err); s >= 400 && s < 500 {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *Client) streamOnce(ctx context.Context, agent string, after *int64, fn func(Event) bool) (more bool, err error) {
	req, err := c.request(ctx, "GET", "/v1/agents/"+url.PathEscape(agent)+"/events/stream", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatInt(*after, 10))
	resp, err := c.http().Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return true, decodeError(resp)
	}
	rd := opencode.NewSSEReader(resp.Body, 16<<20)
	for {
		fr, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return true, err
		}
		var e Event
		if fr.Event == "reset" {
			e.Kind, e.Data = "reset", json.RawMessage(fr.Data)
			e.Seq, _ = strconv.ParseInt(fr.ID, 10, 64)
		} else if err := json.Unmarshal(fr.Data, &e); err != nil {
			return false, fmt.Errorf("bad event from the daemon: %w", err)
		}
		*after = e.Seq
		if !fn(e) {
			return false, nil
		}
	}
	return true, io.ErrUnexpectedEOF
}

// Approval is a permission request: opencode's or taosagent's own (Source).
// The server's type: the two cannot drift.
type Approval = api.Approval

// Approvals lists approvals in state ("" for all).
func (c *Client) Approvals(ctx context.Context, state string) ([]Approval, error) {
	var out struct{ Approvals []Approval }
	q := ""
	if state != "" {
		q = "?state=" + url.QueryEscape(state)
	}
	err := c.Do(ctx, "GET", "/v1/approvals"+q, nil, &out)
	return out.Approvals, err
}

// Approve answers an approval: once, always or reject (with a message).
func (c *Client) Approve(ctx context.Context, id, decision, message string) (Approval, error) {
	var out Approval
	err := c.Do(ctx, "POST", "/v1/approvals/"+url.PathEscape(id), api.DecisionRequest{Decision: decision, Message: message}, &out)
	return out, err
}

// Question is a request of opencode's question tool (the server's type).
type Question = api.Question

// Questions lists question requests in state ("" for all).
func (c *Client) Questions(ctx context.Context, state string) ([]Question, error) {
	var out struct{ Questions []Question }
	q := ""
	if state != "" {
		q = "?state=" + url.QueryEscape(state)
	}
	err := c.Do(ctx, "GET", "/v1/questions"+q, nil, &out)
	return out.Questions, err
}

// Answer answers question request id: one list of chosen labels (or text
// of one's own) per question; or, with a.Reject, declines it.
func (c *Client) Answer(ctx context.Context, id string, a api.AnswerRequest) (Question, error) {
	var out Question
	err := c.Do(ctx, "POST", "/v1/questions/"+url.PathEscape(id), a, &out)
	return out, err
}

// AuditEntry is one audit record (the server's type).
type AuditEntry = api.AuditEntry

// Audit lists audit entries.
func (c *Client) Audit(ctx context.Context) ([]AuditEntry, error) {
	var out struct{ Entries []AuditEntry }
	err := c.Do(ctx, "GET", "/v1/audit", nil, &out)
	return out.Entries, err
}

// AuditQuery selects audit entries; empty fields select everything.
type AuditQuery struct {
	Actor   string // actors whose name begins with this
	Tool    string // exactly this action
	Outcome string // pending, ok, refused or failed
	Since   time.Time
	After   int64
	Limit   int
}

// AuditSearch lists the audit entries q selects, oldest first.
func (c *Client) AuditSearch(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	v := url.Values{}
	for k, x := range map[string]string{"actor": q.Actor, "tool": q.Tool, "outcome": q.Outcome} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if q.After > 0 {
		v.Set("after", fmt.Sprint(q.After))
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	var out struct{ Entries []AuditEntry }
	err := c.Do(ctx, "GET", "/v1/audit?"+v.Encode(), nil, &out)
	return out.Entries, err
}

// Attached is how to attach opencode's TUI to an agent's instance.
type Attached struct {
	URL       string `json:"url"`
	Password  string `json:"password"`
	Session   string `json:"session"`
	Directory string `json:"directory"`
}

// Attach starts agent's opencode if needed and returns how to attach to it.
func (c *Client) Attach(ctx context.Context, agent string) (Attached, error) {
	var out Attached
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/attach", nil, &out)
	return out, err
}

// RotateKey issues agent a new gateway key (shown this once).
func (c *Client) RotateKey(ctx context.Context, agent string) (string, error) {
	var out struct{ Key string }
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/key", nil, &out)
	return out.Key, err
}

// UsageRow is the gateway's usage of one agent and model on one day (the
// server's type).
type UsageRow = api.UsageRow

// Usage lists the gateway's usage; empty arguments select everything.
func (c *Client) Usage(ctx context.Context, agent, model, since string) ([]UsageRow, error) {
	v := url.Values{}
	for k, x := range map[string]string{"agent": agent, "model": model, "since": since} {
		if x != "" {
			v.Set(k, x)
		}
	}
	var out struct{ Usage []UsageRow }
	err := c.Do(ctx, "GET", "/v1/usage?"+v.Encode(), nil, &out)
	return out.Usage, err
}

// ModelSync is what a sync of a LiteLLM agent's models found: the server's type.
type ModelSync = api.ModelSync

// SyncModels brings a LiteLLM agent's permitted models up to date with its
// key's scope at the proxy.
func (c *Client) SyncModels(ctx context.Context, name string) (ModelSync, error) {
	var out ModelSync
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(name)+"/models/sync", nil, &out)
	return out, err
}

// Raw is a request body sent as it is, with its content type.
type Raw struct {
	ContentType string
	Data        []byte
}

// App is a package submitted to the gate: the server's type.
type App = api.App

// SubmitApp submits a .taosapp package to the gate and returns its record
// with the pre-gate report.
func (c *Client) SubmitApp(ctx context.Context, data []byte) (App, error) {
	var out App
	err := c.Do(ctx, "POST", "/v1/apps", Raw{ContentType: "application/zip", Data: data}, &out)
	return out, err
}

// DecideApp approves or rejects a pending package.
func (c *Client) DecideApp(ctx context.Context, sha, decision, message string) (App, error) {
	var out App
	err := c.Do(ctx, "POST", "/v1/apps/"+url.PathEscape(sha)+"/decision", api.DecisionRequest{Decision: decision, Message: message}, &out)
	return out, err
}

// Apps lists the submitted packages, newest first.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var out struct{ Apps []App }
	err := c.Do(ctx, "GET", "/v1/apps", nil, &out)
	return out.Apps, err
}

// Schedule is a schedule as the API shows it.
type Schedule = api.Schedule

// ScheduleRequest is a schedule as asked for.
type ScheduleRequest = api.ScheduleRequest

// CreateSchedule gives agent a schedule.
func (c *Client) CreateSchedule(ctx context.Context, agent string, r ScheduleRequest) (Schedule, error) {
	var out Schedule
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/schedules", r, &out)
	return out, err
}

// Schedules lists agent's schedules.
func (c *Client) Schedules(ctx context.Context, agent string) ([]Schedule, error) {
	var out struct{ Schedules []Schedule }
	err := c.Do(ctx, "GET", "/v1/agents/"+url.PathEscape(agent)+"/schedules", nil, &out)
	return out.Schedules, err
}

// DeleteSchedule removes one of agent's schedules.
func (c *Client) DeleteSchedule(ctx context.Context, agent, id string) error {
	return c.Do(ctx, "DELETE", "/v1/agents/"+url.PathEscape(agent)+"/schedules/"+url.PathEscape(id), nil, nil)
}

// RunSchedule sends a schedule's message now.
func (c *Client) RunSchedule(ctx context.Context, agent, id string) (Accepted, error) {
	var out Accepted
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/schedules/"+url.PathEscape(id)+"/run", nil, &out)
	return out, err
}

// Hook is a webhook as the API shows it.
type Hook = api.Hook

// CreateHook gives agent a webhook; the answer holds its secret, once.
func (c *Client) CreateHook(ctx context.Context, agent, template string) (Hook, error) {
	var out Hook
	err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/hooks", api.HookRequest{Template: template}, &out)
	return out, err
}

// Hooks lists agent's webhooks.
func (c *Client) Hooks(ctx context.Context, agent string) ([]Hook, error) {
	var out struct{ Hooks []Hook }
	err := c.Do(ctx, "GET", "/v1/agents/"+url.PathEscape(agent)+"/hooks", nil, &out)
	return out.Hooks, err
}

// DeleteHook removes one of agent's webhooks.
func (c *Client) DeleteHook(ctx context.Context, agent, id string) error {
	return c.Do(ctx, "DELETE", "/v1/agents/"+url.PathEscape(agent)+"/hooks/"+url.PathEscape(id), nil, nil)
}
