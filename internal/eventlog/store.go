package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
)

// Errors of the store; the API maps each to its status.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("conflict")
	ErrInUse    = errors.New("in use")
)

func ms(t time.Time) int64       { return t.UnixMilli() }
func fromMS(v int64) time.Time   { return time.UnixMilli(v).UTC() }
func now() time.Time             { return time.Now().UTC() }
func notFound(what string) error { return fmt.Errorf("%s: %w", what, ErrNotFound) }

// ---- providers

// CreateProvider stores p (without its key). ErrExists if the id is taken.
func (l *Tables) CreateProvider(ctx context.Context, p agent.Provider) error {
	models, _ := json.Marshal(p.Models)
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM providers WHERE id=?`, p.ID).Scan(&n)
		if n > 0 {
			return fmt.Errorf("provider %q: %w", p.ID, ErrExists)
		}
		_, err := tx.Exec(`INSERT INTO providers(id, name, base_url, models, demo, kind, created) VALUES (?,?,?,?,?,?,?)`,
			p.ID, p.Name, p.BaseURL, string(models), p.Demo, p.Kind, ms(now()))
		return err
	})
	return err
}

// Providers lists the providers by id.
func (l *Tables) Providers(ctx context.Context) ([]agent.Provider, error) {
	return l.providers(ctx, "")
}

// Provider returns the provider id.
func (l *Tables) Provider(ctx context.Context, id string) (agent.Provider, error) {
	ps, err := l.providers(ctx, id)
	if err != nil {
		return agent.Provider{}, err
	}
	if len(ps) == 0 {
		return agent.Provider{}, notFound("provider " + id)
	}
	return ps[0], nil
}

func (l *Tables) providers(ctx context.Context, id string) ([]agent.Provider, error) {
	rows, err := l.query(ctx, `SELECT id, name, base_url, models, demo, kind, created FROM providers WHERE id=? OR ?='' ORDER BY id`, id, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []agent.Provider{}
	for rows.Next() {
		var p agent.Provider
		var models string
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &p.BaseURL, &models, &p.Demo, &p.Kind, &created); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(models), &p.Models)
		p.Created = fromMS(created)
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteProvider removes provider id; ErrInUse while an agent uses it.
func (l *Tables) DeleteProvider(ctx context.Context, id string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		var users sql.NullString
		tx.QueryRow(`SELECT string_agg(name, ',') FROM agents WHERE `+tx.d.jsonText("spec", "model")+` LIKE ?`, id+"/%").Scan(&users)
		if users.Valid && users.String != "" {
			return fmt.Errorf("provider %q is the model provider of agents %s: %w", id, users.String, ErrInUse)
		}
		res, err := tx.Exec(`DELETE FROM providers WHERE id=?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("provider " + id)
		}
		return nil
	})
	return err
}

// ---- agents

type agentSpec struct {
	Model      string            `json:"model"`
	Models     []string          `json:"models"`
	Prompt     string            `json:"prompt,omitempty"`
	Permission json.RawMessage   `json:"permission,omitempty"`
	Tools      map[string]bool   `json:"tools,omitempty"`
	Limits     *agent.Limits     `json:"limits,omitempty"`
	Budget     *agent.Budget     `json:"budget,omitempty"`
	Fallback   string            `json:"fallback,omitempty"`
	MayRead    []string          `json:"may_read,omitempty"`
	MayTask    []string          `json:"may_task,omitempty"`
	Egress     *egress.Policy    `json:"egress,omitempty"`
	Library    []string          `json:"library,omitempty"`
	Workspaces []agent.Workspace `json:"workspaces,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
}

func specOf(a agent.Agent) string {
	b, _ := json.Marshal(agentSpec{a.Model, a.Models, a.Prompt, a.Permission, a.Tools, a.Limits, a.Budget, a.Fallback, a.MayRead, a.MayTask, a.Egress, a.Library, a.Workspaces, a.Workdir})
	return string(b)
}

// CreateAgent stores a; ErrExists if the name is taken.
func (l *Tables) CreateAgent(ctx context.Context, a agent.Agent) (agent.Agent, error) {
	t := now()
	a.Created, a.Updated = t, t
	_, err := l.update(ctx, func(tx *Tx) error {
		var n int
		tx.QueryRow(`SELECT COUNT(*) FROM agents WHERE name=?`, a.Name).Scan(&n)
		if n > 0 {
			return fmt.Errorf("agent %q: %w", a.Name, ErrExists)
		}
		_, err := tx.Exec(`INSERT INTO agents(name, spec, builtin, created, updated) VALUES (?,?,?,?,?)`,
			a.Name, specOf(a), a.Builtin, ms(t), ms(t))
		return err
	})
	return a, err
}

// UpdateAgent replaces the spec of agent a.Name.
func (l *Tables) UpdateAgent(ctx context.Context, a agent.Agent) (agent.Agent, error) {
	a.Updated = now()
	_, err := l.update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(`UPDATE agents SET spec=?, updated=? WHERE name=?`, specOf(a), ms(a.Updated), a.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("agent " + a.Name)
		}
		return nil
	})
	return a, err
}

// SetSession pins agent name to an opencode session.
func (l *Tables) SetSession(ctx context.Context, name, session string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`UPDATE agents SET session=? WHERE name=?`, session, name)
		return err
	})
	return err
}

// DeleteAgent removes agent name and ends its queued inputs. Its events,
// turns, inputs and approvals stay, under the identity
// "NAME@deleted-UNIXMS", which no agent can take: a new agent of the same
// name starts with no history.
func (l *Tables) DeleteAgent(ctx context.Context, name string) error {
	_, err := l.update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(`DELETE FROM agents WHERE name=?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("agent " + name)
		}
		if _, err = tx.Exec(`UPDATE inputs SET state='done' WHERE agent=? AND state='queued'`, name); err != nil {
			return err
		}
		// Its gateway key, its schedules and its hooks end with it.
		for _, table := range []string{"agent_keys", "schedules", "hooks"} {
			if _, err = tx.Exec(`DELETE FROM `+table+` WHERE agent=?`, name); err != nil {
				return err
			}
		}
		// Its history keeps an identity of its own: a new agent of the
		// same name starts with none of it.
		tomb := fmt.Sprintf("%s@deleted-%d", name, time.Now().UnixMilli())
		for _, table := range []string{"events", "inputs", "turns", "approvals", "questions", "raw_events", "host_uids"} {
			if _, err := tx.Exec(`UPDATE `+table+` SET agent=? WHERE agent=?`, tomb, name); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// Agents lists the agents by name.
func (l *Tables) Agents(ctx context.Context) ([]agent.Agent, error) {
	return l.agents(ctx, "")
}

// Agent returns agent name.
func (l *Tables) Agent(ctx context.Context, name string) (agent.Agent, error) {
	as, err := l.agents(ctx, name)
	if err != nil {
		return agent.Agent{}, err
	}
	if len(as) == 0 {
		return agent.Agent{}, notFound("agent " + name)
	}
	return as[0], nil
}

func (l *Tables) agents(ctx context.Context, name string) ([]agent.Agent, error) {
	q := `SELECT name, spec, session, builtin, created, updated FROM agents`
	var args []any
	if name != "" {
		q += ` WHERE name=?`
		args = append(args, name)
	}
	rows, err := l.query(ctx, q+` ORDER BY name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []agent.Agent{}
	for rows.Next() {
		var a agent.Agent
		var spec string
		var created, updated int64
		if err := rows.Scan(&a.Name, &spec, &a.Session, &a.Builtin, &created, &updated); err != nil {
			return nil, err
		}
		var s agentSpec
		json.Unmarshal([]byte(spec), &s)
		a.Model, a.Models, a.Prompt, a.Permission, a.Tools, a.Limits, a.Budget, a.Fallback, a.MayRead, a.MayTask, a.Egress, a.Library, a.Workspaces, a.Workdir = s.Model, s.Models, s.Prompt, s.Permission, s.Tools, s.Limits, s.Budget, s.Fallback, s.MayRead, s.MayTask, s.Egress, s.Library, s.Workspaces, s.Workdir
		a.Created, a.Updated = fromMS(created), fromMS(updated)
		out = append(out, a)
	}
	return out, rows.Err()
}

// ---- inbox

// Input is one message in an agent's inbox.
type Input struct {
	ID       int64  `json:"input"`
	Agent    string `json:"agent"`
	ClientID string `json:"id"`
	Text     string `json:"text"`
	Mode     string `json:"mode"`
	Model    string `json:"model,omitempty"`
	TraceID  string `json:"trace_id,omitempty"` // the caller's trace (taOS's), carried by every event of its turn
	// Conversation is the conversation (opencode session) the message names
	// for its turn; "" for the agent's current one.
	Conversation string `json:"conversation,omitempty"`
	// Schedule is the schedule whose slot sent it ("" for none).
	Schedule string `json:"schedule,omitempty"`
	// Task is the task it belongs to ("" for none): a task an agent handed
	// this one, or the result of one this agent handed another. From is the
	// agent it came from then.
	Task    string    `json:"task,omitempty"`
	From    string    `json:"from,omitempty"`
	State   string    `json:"state"` // queued, running, steered, done, cancelled
	Turn    string    `json:"turn,omitempty"`
	Created time.Time `json:"created"`
	Seq     int64     `json:"seq,omitempty"` // of its input.accepted event
}

// AddInput stores in in its agent's inbox and appends input.accepted. With
// a ClientID already used by the agent, it stores nothing and returns the
// first input (created false), or ErrConflict if text or mode differ.
func (l *Tables) AddInput(ctx context.Context, in Input) (Input, bool, error) {
	created := false
	_, err := l.update(ctx, func(tx *Tx) error {
		var err error
		in, created, err = addInput(tx, in)
		return err
	})
	return in, created, err
}

// AddAndStart is AddInput that also starts the new input's turn in the same
// commit, when no other input of the agent waits ahead of it: start makes
// the turn.started event to append (whose projection marks the input
// running). One commit instead of two, for a runner that was idle. started
// says whether the turn was started; if not, the input stays queued. A
// start that fails is undone alone and reported as startErr: the input is
// still stored, queued.
func (l *Tables) AddAndStart(ctx context.Context, in Input, start func(Input) event.Event) (_ Input, created, started bool, startErr, err error) {
	_, err = l.update(ctx, func(tx *Tx) error {
		var err error
		if in, created, err = addInput(tx, in); err != nil || !created {
			return err
		}
		var ahead int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM inputs WHERE agent=? AND state='queued' AND id<?`, in.Agent, in.ID).Scan(&ahead); err != nil {
			return err
		}
		if ahead > 0 {
			return nil
		}
		if _, err := tx.Exec("SAVEPOINT start"); err != nil {
			return err
		}
		e, err := tx.Append(start(in))
		if err != nil {
			startErr = err
			tx.Exec("ROLLBACK TO start")
		} else {
			in.State, in.Turn, started = "running", e.Turn, true
		}
		_, err = tx.Exec("RELEASE start")
		return err
	})
	if err != nil {
		return Input{}, false, false, nil, err
	}
	return in, created, started, startErr, nil
}

func addInput(tx *Tx, in Input) (Input, bool, error) {
	var old Input
	var c int64
	err := tx.QueryRow(`SELECT id, text, mode, model, trace_id, conversation, schedule, task, from_agent, state, turn, created FROM inputs WHERE agent=? AND client_id=?`, in.Agent, in.ClientID).
		Scan(&old.ID, &old.Text, &old.Mode, &old.Model, &old.TraceID, &old.Conversation, &old.Schedule, &old.Task, &old.From, &old.State, &old.Turn, &c)
	if err == nil {
		if old.Text != in.Text || old.Mode != in.Mode || old.Model != in.Model || old.TraceID != in.TraceID || old.Conversation != in.Conversation {
			return in, false, fmt.Errorf("input id %q was already used for another message: %w", in.ClientID, ErrConflict)
		}
		old.Agent, old.ClientID, old.Created = in.Agent, in.ClientID, fromMS(c)
		return old, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return in, false, err
	}
	var n int
	tx.QueryRow(`SELECT COUNT(*) FROM agents WHERE name=?`, in.Agent).Scan(&n)
	if n == 0 {
		return in, false, notFound("agent " + in.Agent)
	}
	in.Created, in.State = now(), "queued"
	err = tx.QueryRow(`INSERT INTO inputs(agent, client_id, text, mode, model, trace_id, conversation, schedule, task, from_agent, state, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
		in.Agent, in.ClientID, in.Text, in.Mode, in.Model, in.TraceID, in.Conversation, in.Schedule, in.Task, in.From, in.State, ms(in.Created)).Scan(&in.ID)
	if err != nil {
		return in, false, err
	}
	e := event.New("", event.InputAccepted, in.Created,
		event.InputData{Input: in.ID, ClientID: in.ClientID, Mode: in.Mode, Text: in.Text, Model: in.Model, TraceID: in.TraceID, Conversation: in.Conversation, Schedule: in.Schedule, Task: in.Task, From: in.From})
	e.Agent, e.TraceID = in.Agent, in.TraceID
	e, err = tx.Append(e)
	in.Seq = e.Seq
	return in, true, err
}

// Inputs lists agent's inputs in the given state, oldest first.
func (l *Tables) Inputs(ctx context.Context, agentName, state string) ([]Input, error) {
	return l.inputs(ctx, false, `WHERE agent=? AND state=? ORDER BY id`, agentName, state)
}

// InputOfTrace returns agent's latest input of trace id trace, with the
// seq of its input.accepted event.
func (l *Tables) InputOfTrace(ctx context.Context, agentName, trace string) (Input, error) {
	ins, err := l.inputs(ctx, true, `WHERE agent=? AND trace_id=? AND trace_id != '' ORDER BY id DESC LIMIT 1`, agentName, trace)
	if err != nil {
		return Input{}, err
	}
	if len(ins) == 0 {
		return Input{}, notFound("trace " + trace + " of agent " + agentName)
	}
	return ins[0], nil
}

// inputs reads the inputs where selects. withSeq also finds each one's
// input.accepted event, a search of the agent's events: only for a lookup
// of one input, never on the runner's path.
func (l *Tables) inputs(ctx context.Context, withSeq bool, where string, args ...any) ([]Input, error) {
	seq := "NULL"
	if withSeq {
		seq = `(SELECT seq FROM events WHERE agent=inputs.agent AND kind='input.accepted' AND ` + l.dialect.eventInput("body") + `=inputs.id)`
	}
	rows, err := l.query(ctx, `SELECT id, agent, client_id, text, mode, model, trace_id, conversation, schedule, task, from_agent, state, turn, created, `+seq+` FROM inputs `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Input
	for rows.Next() {
		var in Input
		var c int64
		var seq sql.NullInt64
		if err := rows.Scan(&in.ID, &in.Agent, &in.ClientID, &in.Text, &in.Mode, &in.Model, &in.TraceID, &in.Conversation, &in.Schedule, &in.Task, &in.From, &in.State, &in.Turn, &c, &seq); err != nil {
			return nil, err
		}
		in.Created, in.Seq = fromMS(c), seq.Int64
		out = append(out, in)
	}
	return out, rows.Err()
}

// ---- conversations

// Conversation is one of an agent's conversations (api.Conversation).
type Conversation = api.Conversation

// Conversations lists agent name's conversations, the latest turn first:
// the opencode sessions its turns ran in, with the first message of each
// as its title. The agent's current one (its pinned session) is marked.
func (l *Tables) Conversations(ctx context.Context, name string) ([]Conversation, error) {
	a, err := l.Agent(ctx, name)
	if err != nil {
		return nil, err
	}
	rows, err := l.query(ctx, `SELECT t.session, MIN(t.started), MAX(t.started), COUNT(*),
		COALESCE((SELECT i.text FROM turns f JOIN inputs i ON i.id = f.input WHERE f.agent = t.agent AND f.session = t.session ORDER BY f.started LIMIT 1), '')
		FROM turns t WHERE t.agent=? AND t.session != '' GROUP BY t.agent, t.session ORDER BY MAX(t.started) DESC`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Conversation{}
	for rows.Next() {
		var c Conversation
		var first, last int64
		if err := rows.Scan(&c.ID, &first, &last, &c.Turns, &c.Title); err != nil {
			return nil, err
		}
		c.Created, c.LastTurn, c.Title, c.Current = fromMS(first), fromMS(last), api.ConversationTitle(c.Title), c.ID == a.Session
		out = append(out, c)
	}
	return out, rows.Err()
}

// ---- turns

// Turn is one turn of an agent.
type Turn struct {
	ID      string
	Agent   string
	Input   int64
	Session string
	State   string // running, final, error
	TraceID string // of its input
	Started time.Time
}

// RunningTurns lists the turns not ended, as a crash leaves them.
func (l *Tables) RunningTurns(ctx context.Context) ([]Turn, error) {
	rows, err := l.query(ctx, `SELECT id, agent, input, session, state, COALESCE((SELECT trace_id FROM inputs WHERE inputs.id=turns.input), ''), started FROM turns WHERE state='running' ORDER BY started`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Turn
	for rows.Next() {
		var t Turn
		var started int64
		if err := rows.Scan(&t.ID, &t.Agent, &t.Input, &t.Session, &t.State, &t.TraceID, &started); err != nil {
			return nil, err
		}
		t.Started = time.UnixMilli(started)
		out = append(out, t)
	}
	return out, rows.Err()
}

// TurnEvents returns the events of agent's turn, oldest first.
func (l *Tables) TurnEvents(ctx context.Context, agent, turn string) ([]event.Event, error) {
	rows, err := l.query(ctx, `SELECT body FROM events WHERE agent=? AND turn=? ORDER BY seq`, agent, turn)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var e event.Event
		if err := json.Unmarshal(body, &e); err != nil {
			return nil, fmt.Errorf("eventlog: turn %s: %w", turn, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ---- approvals

// Approval is a permission request, persisted by taosagent.
type Approval = api.Approval

// Approvals lists approvals in state ("" for all), oldest first.
func (l *Tables) Approvals(ctx context.Context, state string) ([]Approval, error) {
	return l.approvals(ctx, `state=? OR ?=''`, state, state)
}

// Approval returns approval id.
func (l *Tables) Approval(ctx context.Context, id string) (Approval, error) {
	as, err := l.approvals(ctx, `id=?`, id)
	if err != nil {
		return Approval{}, err
	}
	if len(as) == 0 {
		return Approval{}, notFound("approval " + id)
	}
	return as[0], nil
}

func (l *Tables) approvals(ctx context.Context, where string, args ...any) ([]Approval, error) {
	rows, err := l.query(ctx, `SELECT id, source, agent, turn, session, seq, ask, state, message, by, created, resolved FROM approvals WHERE `+where+` ORDER BY created, seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Approval{}
	for rows.Next() {
		var a Approval
		var ask string
		var c, r int64
		if err := rows.Scan(&a.ID, &a.Source, &a.Agent, &a.Turn, &a.Session, &a.Seq, &ask, &a.State, &a.Message, &a.By, &c, &r); err != nil {
			return nil, err
		}
		a.Ask, a.Created = json.RawMessage(ask), fromMS(c)
		if r > 0 {
			t := fromMS(r)
			a.Resolved = &t
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ---- questions

// Question is a request of opencode's question tool (api.Question).
type Question = api.Question

// Questions lists question requests in state ("" for all), oldest first.
func (l *Tables) Questions(ctx context.Context, state string) ([]Question, error) {
	return l.questions(ctx, `state=? OR ?=''`, state, state)
}

// Question returns question request id.
func (l *Tables) Question(ctx context.Context, id string) (Question, error) {
	qs, err := l.questions(ctx, `id=?`, id)
	if err != nil {
		return Question{}, err
	}
	if len(qs) == 0 {
		return Question{}, notFound("question " + id)
	}
	return qs[0], nil
}

func (l *Tables) questions(ctx context.Context, where string, args ...any) ([]Question, error) {
	rows, err := l.query(ctx, `SELECT id, agent, turn, session, seq, call_id, questions, state, answers, message, by, created, resolved FROM questions WHERE `+where+` ORDER BY created, seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Question{}
	for rows.Next() {
		var q Question
		var qs, answers string
		var c, r int64
		if err := rows.Scan(&q.ID, &q.Agent, &q.Turn, &q.Session, &q.Seq, &q.CallID, &qs, &q.State, &answers, &q.Message, &q.By, &c, &r); err != nil {
			return nil, err
		}
		// What opencode asked, as far as it decodes: a malformed request
		// is listed with no questions (and cannot be answered but by a
		// reject), not hidden.
		q.Questions, _ = api.ParseQuestions(json.RawMessage(qs))
		if q.Questions == nil {
			q.Questions = []api.QuestionInfo{}
		}
		if answers != "" {
			json.Unmarshal([]byte(answers), &q.Answers)
		}
		q.Created = fromMS(c)
		if r > 0 {
			t := fromMS(r)
			q.Resolved = &t
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// ---- audit

// AuditEntry is one host action or refusal (api.AuditEntry).
type AuditEntry = api.AuditEntry

// Audit records e; its id is returned.
func (l *Tables) Audit(ctx context.Context, e AuditEntry) error {
	_, err := l.AuditID(ctx, e)
	return err
}

// AuditID records e and returns its id.
func (l *Tables) AuditID(ctx context.Context, e AuditEntry) (int64, error) {
	if e.Time.IsZero() {
		e.Time = now()
	}
	var id int64
	_, err := l.update(ctx, func(tx *Tx) error {
		return tx.QueryRow(`INSERT INTO audit(time, actor, session, action, tier, target, phase, outcome, digest, approval, approver, snapshot, detail, duration_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
			ms(e.Time), e.Actor, e.Session, e.Action, e.Tier, e.Target, e.Phase, e.Outcome, e.Digest, e.Approval, e.Approver, e.Snapshot, e.Detail, e.DurationMS).Scan(&id)
	})
	return id, err
}

// AuditQuery selects audit entries. Empty fields select everything.
type AuditQuery struct {
	After   int64     // entries after this id
	Actor   string    // the actor's name begins with this
	Action  string    // exactly this action (tool)
	Outcome string    // exactly this outcome
	Since   time.Time // at or after
	Limit   int       // default 1000
	Newest  bool      // the newest Limit entries (still oldest first)
	Before  int64     // entries before this id (0: no bound)
}

// AuditEntries lists audit entries after id, oldest first.
func (l *Tables) AuditEntries(ctx context.Context, after int64, limit int) ([]AuditEntry, error) {
	return l.AuditSearch(ctx, AuditQuery{After: after, Limit: limit})
}

// AuditSearch lists the entries q selects, oldest first.
func (l *Tables) AuditSearch(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	where, args := []string{"id > ?"}, []any{q.After}
	if q.Actor != "" {
		where, args = append(where, "substr(actor, 1, ?) = ?"), append(args, len(q.Actor), q.Actor)
	}
	if q.Action != "" {
		where, args = append(where, "action = ?"), append(args, q.Action)
	}
	if q.Outcome != "" {
		where, args = append(where, "outcome = ?"), append(args, q.Outcome)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, ms(q.Since))
	}
	if q.Before > 0 {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	order := "id"
	if q.Newest {
		order = "id DESC"
	}
	rows, err := l.query(ctx, `SELECT id, time, actor, session, action, tier, target, phase, outcome, digest, approval, approver, snapshot, detail, duration_ms FROM audit WHERE `+
		strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Session, &e.Action, &e.Tier, &e.Target, &e.Phase, &e.Outcome, &e.Digest,
			&e.Approval, &e.Approver, &e.Snapshot, &e.Detail, &e.DurationMS); err != nil {
			return nil, err
		}
		e.Time = fromMS(t)
		out = append(out, e)
	}
	if q.Newest {
		slices.Reverse(out)
	}
	return out, rows.Err()
}

// ---- retention

// Prune removes the events older than before and raw events older than
// rawBefore, and raises the floor: a subscriber whose cursor is below it
// is told with a Reset. It returns how many events it removed.
func (l *Log) Prune(ctx context.Context, before, rawBefore time.Time) (int64, error) {
	var n, floor int64
	_, err := l.update(ctx, func(tx *Tx) error {
		var upto sql.NullInt64
		if err := tx.QueryRow(`SELECT MAX(seq) FROM events WHERE time < ?`, before.UnixNano()).Scan(&upto); err != nil {
			return err
		}
		if upto.Valid && upto.Int64 > l.floor.Load() {
			res, err := tx.Exec(`DELETE FROM events WHERE seq <= ?`, upto.Int64)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			if _, err := tx.Exec(`UPDATE retention SET floor=? WHERE id=1`, upto.Int64); err != nil {
				return err
			}
			floor = upto.Int64
		}
		_, err := tx.Exec(`DELETE FROM raw_events WHERE time < ?`, rawBefore.UnixNano())
		return err
	})
	if err == nil && floor > 0 {
		// Only once committed. Subscribers do not rely on it: they read
		// the floor in the snapshot of the events they read.
		l.floor.Store(floor)
	}
	return n, err
}

// TurnCount is how many turns of an agent are in a state.
type TurnCount struct {
	Agent, State string
	N            int64
}

// TurnCounts counts the turns in the log by agent and state (running,
// final, error).
func (l *Tables) TurnCounts(ctx context.Context) ([]TurnCount, error) {
	rows, err := l.query(ctx, `SELECT agent, state, count(*) FROM turns GROUP BY agent, state ORDER BY agent, state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TurnCount
	for rows.Next() {
		var c TurnCount
		if err := rows.Scan(&c.Agent, &c.State, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastError is the error that ended an agent's latest failed turn.
type LastError = api.LastError

// LastError returns the error of agent's latest turn that ended in one
// (ok false when none did, of the turns the log keeps).
func (l *Tables) LastError(ctx context.Context, agentName string) (LastError, bool, error) {
	var out LastError
	var body []byte
	err := l.queryRow(ctx, `SELECT e.turn, e.body FROM events e
		WHERE e.seq=(SELECT error_seq FROM turns WHERE agent=? AND state='error' AND error_seq > 0 ORDER BY started DESC LIMIT 1)`,
		agentName).Scan(&out.Turn, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return out, false, nil
	}
	if err != nil {
		return out, false, err
	}
	var e struct {
		Time time.Time       `json:"time"`
		Data event.ErrorData `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return out, false, err
	}
	out.Time, out.Code, out.Message = e.Time, e.Data.Code, e.Data.Message
	return out, true, nil
}
