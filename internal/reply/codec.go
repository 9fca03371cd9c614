// Package reply is the codec: it turns one opencode instance's events into
// taosagent's normalized events (package event).
//
// opencode's stream is awkward in ways the codec absorbs so that nothing
// downstream has to:
//   - message.part.delta says field "text" for reasoning too; a delta is
//     classified by the type of its part, learned from message.part.updated,
//     and reasoning never reaches delta or final;
//   - the user's own prompt comes back as parts too; only parts of
//     assistant messages are answered;
//   - a tool part repeats running many times; tool_call and tool_result are
//     emitted once per call id;
//   - idle arrives repeatedly and final updates can follow it, and one can
//     come late, after the next prompt, before opencode takes that up: it
//     ends a begun turn only when nothing else came for MaxWait; an unknown
//     model is reported twice, the second time with a stack trace;
//   - a model switch (made in opencode's TUI, say) is no event of its own
//     in 1.18: the next prompt names another model, and the assistant
//     message that answers it carries it. The codec emits one
//     model.switched (source "opencode") when the model that answers a
//     session changes (a prompt on a model that does not exist answers
//     nothing, and is no switch).
//
// A turn ends exactly once, with final or error, after idle has settled:
// when every assistant message of the turn is complete and no tool is
// pending, plus a short grace period, or at the latest MaxWait after idle.
// The codec keeps no clock of its own: the caller passes the time with every
// Feed and calls Tick when Deadline passes, which makes replays exact.
package reply

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/render"
)

// KnownVersions are the opencode releases whose events the codec was built
// and tested against (captures and golden files). Another release is used
// only after a scripted turn through the codec proves its events are
// understood (taosagent setup --opencode).
var KnownVersions = []string{"1.18.33"}

// Defaults for Codec's settling.
const (
	DefaultGrace   = 150 * time.Millisecond
	DefaultMaxWait = 3 * time.Second
)

// Bounds on what the codec remembers of one session.
const (
	maxRoles        = 4096
	maxPendingParts = 256
)

// Codec normalizes the events of one opencode instance. It is not safe for
// concurrent use: one goroutine (the instance's reader) owns it.
type Codec struct {
	// Grace is how long a complete turn waits after its last event before
	// it ends; MaxWait is how long after idle an incomplete one may wait.
	Grace, MaxWait time.Duration
	// Redact lists secret values (provider keys) that must never appear in
	// an error message; each is replaced by "[redacted]".
	Redact []string

	sessions map[string]*session
	stops    []string // sessions whose opencode must be stopped retrying
}

// TakeStops returns (and forgets) the sessions whose turn has ended while
// opencode keeps retrying it, which the caller aborts in opencode: a call
// refused because the agent's budget is spent is retried by opencode as a
// 429 (for as long as the reset is away), but it ends the turn at once.
func (c *Codec) TakeStops() []string {
	s := c.stops
	c.stops = nil
	return s
}

// New returns a Codec with the default settling times.
func New() *Codec {
	return &Codec{Grace: DefaultGrace, MaxWait: DefaultMaxWait}
}

type session struct {
	id      string
	roles   map[string]string          // message id → "user" | "assistant"
	parts   map[string]*part           // part id → what is known of it
	pending map[string][]opencode.Part // message id of unknown role → its part updates
	turn    *turn                      // nil when no turn is open
	closed  string                     // the last assistant message of the last turn closed
	model   string                     // provider/model the session is on, "" until known
}

type part struct {
	typ       string
	messageID string
	sent      []byte // text already emitted as delta or reasoning
	full      string // the last full text opencode reported
}

type turn struct {
	from   string // the turn's first user message, once seen
	idle   bool
	idleAt time.Time
	// earlyIdle is when an idle came to a begun turn before opencode took
	// it up (no busy, no answer, no error yet): most likely the previous
	// loop's, late. It ends the turn only MaxWait later, when nothing came.
	earlyIdle time.Time
	lastAt    time.Time
	messages  map[string]bool // assistant message id → completed
	textParts []string        // text part ids in order of appearance
	calls     map[string]*call
	asked     []string // permission and question ids asked and not yet answered
	usage     event.UsageData
	err       *event.ErrorData // from session.error: wins
	msgErr    *event.ErrorData // from an assistant message's info.error
	state     string           // last status emitted: "busy", "retry N"
}

type call struct {
	tool      string
	announced bool
	done      bool
}

func (c *Codec) grace() time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return DefaultGrace
}

func (c *Codec) maxWait() time.Duration {
	if c.MaxWait > 0 {
		return c.MaxWait
	}
	return DefaultMaxWait
}

func (c *Codec) session(id string) *session {
	if c.sessions == nil {
		c.sessions = map[string]*session{}
	}
	s := c.sessions[id]
	if s == nil {
		s = &session{id: id, roles: map[string]string{}, parts: map[string]*part{}, pending: map[string][]opencode.Part{}}
		c.sessions[id] = s
	}
	return s
}

// Open reports whether session has a turn in progress.
func (c *Codec) Open(sessionID string) bool {
	s := c.sessions[sessionID]
	return s != nil && s.turn != nil
}

// Active reports whether session has a turn in progress that has not yet
// gone idle.
func (c *Codec) Active(sessionID string) bool {
	s := c.sessions[sessionID]
	return s != nil && s.turn != nil && !s.turn.idle
}

// Begin opens a turn for session, as when the caller has just prompted it:
// a failure reported before opencode says busy is then attributed to it. A
// settling turn of the session ends first; an active one is kept.
func (c *Codec) Begin(sessionID string, now time.Time) []event.Event {
	s := c.session(sessionID)
	var out []event.Event
	if s.turn != nil && s.turn.idle {
		out = c.close(s, now, out)
	}
	if s.turn == nil {
		s.turn = newTurn(now)
	}
	return out
}

func newTurn(now time.Time) *turn {
	return &turn{lastAt: now, messages: map[string]bool{}, calls: map[string]*call{}}
}

// Expect records the model (provider/model) session is prompted with, as
// when the caller prompts it naming its model: a message on another model
// after it is a switch. It emits nothing.
func (c *Codec) Expect(sessionID, model string) {
	if model != "" {
		c.session(sessionID).model = model
	}
}

// switched notes that s is on model m, emitting model.switched when that
// is a change from the model it was known to be on.
func (c *Codec) switched(s *session, providerID, modelID string, now time.Time, out []event.Event) []event.Event {
	if providerID == "" || modelID == "" {
		return out
	}
	m := providerID + "/" + modelID
	if s.model != "" && s.model != m {
		out = append(out, event.New(s.id, event.ModelSwitched, now, event.ModelSwitchedData{
			From: s.model, To: m, Reason: "opencode's session changed model", Source: "opencode"}))
	}
	s.model = m
	return out
}

// Deadline is the earliest time at which Tick will end a turn; ok is false
// when no turn is settling.
func (c *Codec) Deadline() (at time.Time, ok bool) {
	for _, s := range c.sessions {
		if d, has := c.deadline(s.turn); has && (!ok || d.Before(at)) {
			at, ok = d, true
		}
	}
	return at, ok
}

func (c *Codec) deadline(t *turn) (time.Time, bool) {
	if t != nil && !t.idle && !t.earlyIdle.IsZero() {
		return t.earlyIdle.Add(c.maxWait()), true
	}
	if t == nil || !t.idle {
		return time.Time{}, false
	}
	if t.complete() {
		return t.lastAt.Add(c.grace()), true
	}
	return t.idleAt.Add(c.maxWait()), true
}

func (t *turn) complete() bool {
	for _, done := range t.messages {
		if !done {
			return false
		}
	}
	for _, cl := range t.calls {
		if !cl.done {
			return false
		}
	}
	return true
}

// Tick ends every turn whose settling deadline is not after now.
func (c *Codec) Tick(now time.Time) []event.Event {
	var out []event.Event
	for _, s := range c.sessions {
		if d, ok := c.deadline(s.turn); ok && !d.After(now) {
			out = c.close(s, now, out)
		}
	}
	return out
}

// Interrupt ends the open turn of session (every open turn when session is
// "") with an error of the given code, as when opencode died mid-turn. Tool
// calls left without a result get one saying so.
func (c *Codec) Interrupt(sessionID, code, message string, now time.Time) []event.Event {
	var out []event.Event
	for _, s := range c.sessions {
		if s.turn == nil || (sessionID != "" && s.id != sessionID) {
			continue
		}
		s.turn.err = &event.ErrorData{Code: code, Message: message}
		out = c.close(s, now, out)
	}
	return out
}

// close ends s's turn with its one terminal event.
func (c *Codec) close(s *session, now time.Time, out []event.Event) []event.Event {
	t := s.turn
	if t == nil {
		return out
	}
	for id, cl := range t.calls {
		if cl.announced && !cl.done {
			out = append(out, event.New(s.id, event.ToolResult, now, event.ToolResultData{
				CallID: id, Tool: cl.tool, Error: "the tool call did not finish: the turn ended first"}))
		}
	}
	// opencode keeps an abandoned ask pending after an abort; it can no
	// longer matter, so it is declared expired.
	for _, id := range t.asked {
		if strings.HasPrefix(id, "que_") {
			out = append(out, event.New(s.id, event.QuestionResolved, now, event.QuestionResolvedData{Question: id, Expired: true,
				Message: "its turn ended unanswered"}))
			continue
		}
		out = append(out, event.New(s.id, event.PermissionResolved, now, event.PermissionResolvedData{Approval: id, Decision: api.ApprovalExpired}))
	}
	switch {
	case t.err != nil:
		out = append(out, event.New(s.id, event.Error, now, *t.err))
	case t.msgErr != nil:
		out = append(out, event.New(s.id, event.Error, now, *t.msgErr))
	default:
		var texts []string
		for _, id := range t.textParts {
			if p := s.parts[id]; p != nil {
				txt := p.full
				if len(p.sent) > len(txt) {
					txt = string(p.sent)
				}
				if strings.TrimSpace(txt) != "" {
					texts = append(texts, txt)
				}
			}
		}
		out = append(out, event.New(s.id, event.Final, now, event.FinalData{Text: strings.Join(texts, "\n\n"), Usage: t.usage}))
	}
	for id, p := range s.parts {
		if _, ok := t.messages[p.messageID]; ok {
			delete(s.parts, id)
		}
	}
	for id := range t.messages {
		delete(s.roles, id)
		if id > s.closed { // opencode's message ids ascend
			s.closed = id
		}
	}
	s.turn = nil
	return out
}

// Reconcile brings the session's open turn up to date with opencode's own
// record of the session (GET /session/{id}/message, oldest first), for
// when events may have been missed, as across a reconnect of the stream.
// The turn's messages are fed as if they had streamed; only what was not
// emitted yet comes out (text past what was sent, tool calls and results
// not yet seen, the usage of steps not yet seen), every event marked
// Synthetic. Messages of earlier turns are left alone: the turn's messages
// start at its first user message if the codec saw it, else after the last
// message of the turn the codec closed last, else at the last user message.
func (c *Codec) Reconcile(sessionID string, msgs []opencode.Message, now time.Time) []event.Event {
	s := c.sessions[sessionID]
	if s == nil || s.turn == nil {
		return nil
	}
	start := -1
	for i, m := range msgs {
		if s.turn.from != "" && m.Info.ID == s.turn.from {
			start = i
			break
		}
	}
	for i := len(msgs) - 1; start < 0 && s.closed != "" && i >= 0; i-- {
		if msgs[i].Info.ID == s.closed {
			start = i + 1
		}
	}
	for i := len(msgs) - 1; start < 0 && i >= 0; i-- {
		if msgs[i].Info.Role == "user" {
			start = i
		}
	}
	var out []event.Event
	for _, m := range msgs[max(start, 0):] {
		if m.Info.SessionID != sessionID {
			continue
		}
		out = c.message(m.Info, now, out)
		for _, p := range m.Parts {
			if p.ID != "" && p.MessageID == m.Info.ID {
				out = c.partUpdated(s, p, now, out)
			}
		}
	}
	for i := range out {
		out[i].Synthetic = true
	}
	return out
}

// Feed consumes one event observed at now and returns the normalized events
// it yields, in order. Turns whose deadline passed are ended first. Events
// of unknown types and undecodable properties yield nothing.
//
// It is long: one case per opencode event type, the codec's whole mapping in
// one switch.
func (c *Codec) Feed(ev opencode.Event, now time.Time) []event.Event {
	out := c.Tick(now)
	switch ev.Type {
	case "message.updated":
		var p struct {
			Info opencode.MessageInfo `json:"info"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.Info.SessionID != "" {
			out = c.message(p.Info, now, out)
		}
	case "message.part.updated":
		var p struct {
			Part opencode.Part `json:"part"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.Part.SessionID != "" && p.Part.ID != "" {
			s := c.session(p.Part.SessionID)
			c.touch(s, now)
			out = c.partUpdated(s, p.Part, now, out)
		}
	case "message.part.delta":
		var p struct {
			SessionID string `json:"sessionID"`
			MessageID string `json:"messageID"`
			PartID    string `json:"partID"`
			Field     string `json:"field"`
			Delta     string `json:"delta"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.Field == "text" && p.SessionID != "" {
			s := c.session(p.SessionID)
			c.touch(s, now)
			out = c.delta(s, p.MessageID, p.PartID, p.Delta, now, out)
		}
	case "session.status":
		var p struct {
			SessionID string          `json:"sessionID"`
			Status    opencode.Status `json:"status"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.SessionID != "" {
			out = c.status(c.session(p.SessionID), p.Status, now, out)
		}
	case "session.idle":
		var p struct {
			SessionID string `json:"sessionID"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.SessionID != "" {
			c.idle(c.session(p.SessionID), now)
		}
	case "session.error":
		var p struct {
			SessionID string                 `json:"sessionID"`
			Error     *opencode.MessageError `json:"error"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.SessionID != "" {
			s := c.session(p.SessionID)
			c.touch(s, now)
			if s.turn != nil && s.turn.err == nil {
				e := c.classify(p.Error)
				s.turn.err = &e
			}
		}
	case "permission.asked":
		var p opencode.PermissionRequest
		if json.Unmarshal(ev.Properties, &p) == nil && p.ID != "" {
			c.ask(p.SessionID, p.ID)
			out = append(out, event.New(p.SessionID, event.PermissionAsked, now, PermissionAsked(p)))
		}
	case "permission.replied":
		var p struct {
			SessionID string `json:"sessionID"`
			RequestID string `json:"requestID"`
			Reply     string `json:"reply"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.RequestID != "" {
			c.answered(p.SessionID, p.RequestID)
			out = append(out, event.New(p.SessionID, event.PermissionResolved, now,
				event.PermissionResolvedData{Approval: p.RequestID, Decision: p.Reply}))
		}
	case "question.asked":
		var p opencode.QuestionRequest
		if json.Unmarshal(ev.Properties, &p) == nil && p.ID != "" {
			d := event.QuestionAskedData{Question: p.ID, Questions: p.Questions}
			if p.Tool != nil {
				d.CallID = p.Tool.CallID
			}
			c.ask(p.SessionID, p.ID)
			out = append(out, event.New(p.SessionID, event.QuestionAsked, now, d))
		}
	case "question.replied", "question.rejected":
		var p struct {
			SessionID string     `json:"sessionID"`
			RequestID string     `json:"requestID"`
			Answers   [][]string `json:"answers"`
		}
		if json.Unmarshal(ev.Properties, &p) == nil && p.RequestID != "" {
			c.answered(p.SessionID, p.RequestID)
			out = append(out, event.New(p.SessionID, event.QuestionResolved, now, event.QuestionResolvedData{
				Question: p.RequestID, Answers: p.Answers, Rejected: ev.Type == "question.rejected"}))
		}
	}
	return out
}

// ask records a request of the session's open turn awaiting an answer.
func (c *Codec) ask(sessionID, id string) {
	if s := c.sessions[sessionID]; s != nil && s.turn != nil && !contains(s.turn.asked, id) {
		s.turn.asked = append(s.turn.asked, id)
	}
}

// answered forgets an answered request.
func (c *Codec) answered(sessionID, id string) {
	if s := c.sessions[sessionID]; s != nil && s.turn != nil {
		for i, x := range s.turn.asked {
			if x == id {
				s.turn.asked = append(s.turn.asked[:i], s.turn.asked[i+1:]...)
				return
			}
		}
	}
}

// touch records activity of an open turn, which pushes its grace period.
func (c *Codec) touch(s *session, now time.Time) {
	if s.turn != nil {
		s.turn.lastAt = now
	}
}

func (c *Codec) status(s *session, st opencode.Status, now time.Time, out []event.Event) []event.Event {
	switch st.Type {
	case "busy", "retry":
		if s.turn != nil && s.turn.idle {
			// Busy after idle: a new loop. The old turn is over.
			out = c.close(s, now, out)
		}
		if s.turn == nil {
			s.turn = newTurn(now)
		}
		t := s.turn
		t.lastAt = now
		if st.Type == "busy" && t.state != "busy" {
			t.state = "busy"
			out = append(out, event.New(s.id, event.Status, now, event.StatusData{State: "busy"}))
		}
		if st.Type == "retry" && IsBudgetExceeded(st.Message) {
			// Not worth a retry: the budget is spent until its period
			// ends. The turn ends with this error once opencode, aborted,
			// goes idle.
			if t.err == nil {
				t.err = &event.ErrorData{Code: event.CodeBudget, Message: c.clean(st.Message), Status: 429}
				c.stops = append(c.stops, s.id)
			}
			return out
		}
		if st.Type == "retry" {
			t.state = "retry"
			out = append(out, event.New(s.id, event.Status, now, event.StatusData{
				State: "retry", Attempt: st.Attempt, Message: c.clean(st.Message), NextMS: st.Next}))
		}
	case "idle":
		c.idle(s, now)
	}
	return out
}

func (c *Codec) idle(s *session, now time.Time) {
	t := s.turn
	if t == nil {
		return
	}
	if t.state == "" && len(t.messages) == 0 && t.err == nil && t.msgErr == nil {
		// Nothing of this turn yet: an idle of the loop before.
		if t.earlyIdle.IsZero() {
			t.earlyIdle = now
		}
		return
	}
	t.lastAt = now
	if !t.idle {
		t.idle, t.idleAt = true, now
	}
}

func (c *Codec) message(info opencode.MessageInfo, now time.Time, out []event.Event) []event.Event {
	s := c.session(info.SessionID)
	if len(s.roles) >= maxRoles {
		s.roles = map[string]string{}
	}
	s.roles[info.ID] = info.Role
	if info.Role == "assistant" {
		out = c.switched(s, info.ProviderID, info.ModelID, now, out)
	}
	if info.Role != "assistant" {
		delete(s.pending, info.ID)
		if s.turn != nil && s.turn.from == "" && info.Role == "user" {
			s.turn.from = info.ID
		}
		return out
	}
	t := s.turn
	if t == nil {
		return out
	}
	t.lastAt = now
	t.messages[info.ID] = info.Time.Completed != 0 || info.Error != nil
	if info.Error != nil && t.msgErr == nil {
		e := c.classify(info.Error)
		t.msgErr = &e
	}
	for _, p := range s.pending[info.ID] {
		out = c.partUpdated(s, p, now, out)
	}
	delete(s.pending, info.ID)
	return out
}

func (c *Codec) partUpdated(s *session, p opencode.Part, now time.Time, out []event.Event) []event.Event {
	switch s.roles[p.MessageID] {
	case "user":
		return out
	case "":
		if q := s.pending[p.MessageID]; len(q) < maxPendingParts {
			s.pending[p.MessageID] = append(q, p)
		}
		return out
	}
	t := s.turn
	if t == nil {
		return out
	}
	if _, ok := t.messages[p.MessageID]; !ok {
		t.messages[p.MessageID] = false
	}
	pt := s.parts[p.ID]
	seen := pt != nil
	if !seen {
		pt = &part{typ: p.Type, messageID: p.MessageID}
		s.parts[p.ID] = pt
	}
	switch p.Type {
	case "text", "reasoning":
		if p.Synthetic {
			return out
		}
		if p.Type == "text" && !contains(t.textParts, p.ID) {
			t.textParts = append(t.textParts, p.ID)
		}
		if p.Text != "" {
			pt.full = p.Text
		}
		if len(p.Text) > len(pt.sent) && p.Text[:len(pt.sent)] == string(pt.sent) {
			rest := p.Text[len(pt.sent):]
			pt.sent = append(pt.sent[:0], p.Text...)
			out = append(out, textEvent(s.id, p.Type, rest, now))
		}
	case "tool":
		out = c.tool(s, t, p, now, out)
	case "step-finish":
		if seen { // a step's usage counts once
			return out
		}
		u := usageOf(p.Tokens, p.Cost)
		t.usage.Add(u)
		out = append(out, event.New(s.id, event.Usage, now, u))
	}
	return out
}

func textEvent(session, partType, text string, now time.Time) event.Event {
	k := event.Delta
	if partType == "reasoning" {
		k = event.Reasoning
	}
	return event.New(session, k, now, event.DeltaData{Text: text})
}

func (c *Codec) delta(s *session, messageID, partID, text string, now time.Time, out []event.Event) []event.Event {
	pt := s.parts[partID]
	// A delta of a part not yet typed, or of a message whose role is
	// unknown, cannot be classified; it is left out here and recovered from
	// the part's full text when that arrives.
	if pt == nil || s.roles[messageID] != "assistant" || s.turn == nil || text == "" {
		return out
	}
	if pt.typ != "text" && pt.typ != "reasoning" {
		return out
	}
	pt.sent = append(pt.sent, text...) // amortized: long answers stay linear
	return append(out, textEvent(s.id, pt.typ, text, now))
}

func (c *Codec) tool(s *session, t *turn, p opencode.Part, now time.Time, out []event.Event) []event.Event {
	if p.CallID == "" || p.State == nil {
		return out
	}
	cl := t.calls[p.CallID]
	if cl == nil {
		cl = &call{tool: p.Tool}
		t.calls[p.CallID] = cl
	}
	st := p.State
	if cl.done {
		return out
	}
	if !cl.announced && st.Status != "pending" {
		cl.announced = true
		input := st.Input
		if len(input) == 0 {
			input = json.RawMessage("{}")
		}
		out = append(out, event.New(s.id, event.ToolCall, now, event.ToolCallData{CallID: p.CallID, Tool: p.Tool, Input: input}))
	}
	if st.Status == "completed" || st.Status == "error" {
		cl.done = true
		var dur int64
		if st.Time.Start > 0 && st.Time.End >= st.Time.Start {
			dur = st.Time.End - st.Time.Start
		}
		out = append(out, event.New(s.id, event.ToolResult, now, event.ToolResultData{
			CallID: p.CallID, Tool: p.Tool, Output: st.Output, Error: st.Error, DurationMS: dur}))
	}
	return out
}

func usageOf(tk *opencode.Tokens, cost float64) event.UsageData {
	u := event.UsageData{Cost: cost}
	if tk != nil {
		u.Input, u.Output, u.Reasoning = tk.Input, tk.Output, tk.Reasoning
		u.CacheRead, u.CacheWrite = tk.Cache.Read, tk.Cache.Write
	}
	return u
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// OpenSessions lists the sessions with a turn in progress.
func (c *Codec) OpenSessions() []string {
	var out []string
	for id, s := range c.sessions {
		if s.turn != nil {
			out = append(out, id)
		}
	}
	return out
}

// PermissionAsked is opencode's permission ask p as taosagent records it,
// with the one rendering a person is shown (render.Call: the permission,
// then its patterns and metadata, whole, every character visible).
func PermissionAsked(p opencode.PermissionRequest) event.PermissionAskedData {
	d := event.PermissionAskedData{Approval: p.ID, Tool: p.Permission, Patterns: p.Patterns, Always: p.Always, Metadata: p.Metadata}
	if p.Tool != nil {
		d.CallID = p.Tool.CallID
	}
	if d.Patterns == nil {
		d.Patterns = []string{}
	}
	d.Display, _ = render.Call(p.Permission, render.Canonical(map[string]any{"patterns": d.Patterns, "metadata": d.Metadata}), nil)
	return d
}
