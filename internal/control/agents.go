package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/runner"
)

// AgentView is an agent as every front end shows it: its spec, its
// effective limits and its status.
type AgentView struct {
	agent.Agent
	Status runner.AgentStatus `json:"status"`
}

// View shows a with its status and its effective limits.
func (s *Service) View(ctx context.Context, a agent.Agent) AgentView {
	l := s.Runner.EffectiveLimits(a.Limits)
	a.Limits = &l
	k, _ := s.Keys.Get(agent.UpstreamKeyID(a.Name))
	a.UpstreamKey, a.HasUpstreamKey = "", k != ""
	return AgentView{Agent: a, Status: s.Runner.Status(ctx, a.Name)}
}

// Agents lists every agent with its status.
func (s *Service) Agents(ctx context.Context) ([]AgentView, error) {
	as, err := s.Log.Agents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AgentView, len(as))
	for i, a := range as {
		out[i] = s.View(ctx, a)
	}
	return out, nil
}

// Agent returns agent name with its status.
func (s *Service) Agent(ctx context.Context, name string) (AgentView, error) {
	a, err := s.Log.Agent(ctx, name)
	if err != nil {
		return AgentView{}, err
	}
	return s.View(ctx, a), nil
}

// AgentPatch is a change of an agent: nil fields stay as they are.
type AgentPatch struct {
	Model      *string          `json:"model,omitempty"`
	Models     *[]string        `json:"models,omitempty"`
	Prompt     *string          `json:"prompt,omitempty"`
	Permission *json.RawMessage `json:"permission,omitempty"` // JSON null clears it
	Tools      *map[string]bool `json:"tools,omitempty"`
	Limits     *agent.Limits    `json:"limits,omitempty"`
	Budget     *agent.Budget    `json:"budget,omitempty"`
	Fallback   *string          `json:"fallback,omitempty"`
	MayRead    *[]string        `json:"may_read,omitempty"`
	MayTask    *[]string        `json:"may_task,omitempty"`
	Egress     *egress.Policy   `json:"egress,omitempty"`
	// Library replaces the items the agent is given: "kind/name" (pinned
	// to the current version as the change is asked for, so that what a
	// person approves is what runs) or "kind/name@digest".
	Library *[]string `json:"library,omitempty"`
	// Workspaces replaces the host directories the agent is given;
	// Workdir names the one that is its working directory ("": its own).
	Workspaces *[]agent.Workspace `json:"workspaces,omitempty"`
	Workdir    *string            `json:"workdir,omitempty"`
	// UpstreamKey replaces the agent's own key at its LiteLLM proxy; ""
	// removes it. Write-only: never shown, never audited.
	UpstreamKey *string `json:"upstream_key,omitempty"`
}

// redacted is p as the audit and an approver see it: without the key.
func (p AgentPatch) redacted() AgentPatch {
	if p.UpstreamKey != nil {
		r := "[REDACTED]"
		if *p.UpstreamKey == "" {
			r = ""
		}
		p.UpstreamKey = &r
	}
	return p
}

// Widens reports whether p, asked for by a on agent name, could widen
// what any agent can do: its permissions, tools, permitted models,
// limits, budget, fallback, upstream key, egress policy, Library items,
// workspaces, the agents it may read or hand tasks to, or the persona of an agent other than a itself.
// Asked for through MCP or by an agent, such a change is destructive: a
// person approves the exact change. What is left is switching among the
// models already permitted, and an agent's own persona.
func (p AgentPatch) Widens(a Actor, name string) bool {
	return p.Permission != nil || p.Tools != nil || p.Budget != nil || p.Fallback != nil || p.Models != nil || p.MayRead != nil || p.MayTask != nil || p.Egress != nil ||
		p.Library != nil || p.Workspaces != nil || p.Workdir != nil || p.Limits != nil || p.UpstreamKey != nil || (p.Prompt != nil && !(a.Kind == Agent && a.Name == name))
}

// DenyAll is the permission map of an agent created through MCP or by an
// agent: every tool denied, until a person grants more.
var DenyAll = json.RawMessage(`{"*":"deny"}`)

// CreateAgent creates spec. Asked for through MCP or by an agent, a new
// agent widens what agents can do: it is destructive (a person approves
// the exact agent), it starts deny-by-default (DenyAll, unless the call
// names its permissions) with the daemon's default budget (DefaultBudget,
// unless the call names one), and it is refused while no default budget
// is set.
func (s *Service) CreateAgent(ctx context.Context, a Actor, spec agent.Agent) (AgentView, error) {
	return s.CreateAgentFrom(ctx, a, spec, "")
}

// CreateAgentFrom is CreateAgent with the Library's agent template
// template ("agent/NAME", its current version, or pinned; "": none): the
// agent takes the template's persona as its prompt and each of its
// settings (model, models, permission, tools, items) that spec leaves
// unset, before anything else, so that an approval shows the agent as it
// will be. The template is a person's vetted item; an agent made from it
// through MCP waits for a person like any other.
func (s *Service) CreateAgentFrom(ctx context.Context, a Actor, spec agent.Agent, template string) (AgentView, error) {
	if template != "" {
		if err := s.fromTemplate(&spec, template); err != nil {
			return AgentView{}, s.Refuse(ctx, Call{Actor: a, Tool: "agent.create", Target: spec.Name, Args: map[string]string{"template": template}}, err)
		}
	}
	var tier Tier // the action's (Actions), unless raised below
	if !a.Person() {
		tier = Destructive
		if len(spec.Permission) == 0 {
			spec.Permission = DenyAll
		}
		if spec.Budget == nil {
			if s.DefaultBudget == nil {
				return AgentView{}, s.Refuse(ctx, Call{Actor: a, Tool: "agent.create", Tier: tier, Target: spec.Name, Args: spec},
					fmt.Errorf("%w: an agent created through MCP gets the daemon's default budget, and none is set (taosagent serve --default-daily-tokens N); a person can create it through the API", ErrForbidden))
			}
			b := *s.DefaultBudget
			spec.Budget = &b
		}
	}
	var out agent.Agent
	args := spec
	args.UpstreamKey, args.HasUpstreamKey = "", spec.UpstreamKey != ""
	if len(spec.Library) > 0 {
		pinned, err := s.pinLibrary(spec.Library)
		if err != nil {
			return AgentView{}, s.Refuse(ctx, Call{Actor: a, Tool: "agent.create", Tier: tier, Target: spec.Name, Args: args}, err)
		}
		spec.Library, args.Library = pinned, pinned
	}
	err := s.Do(ctx, Call{Actor: a, Tool: "agent.create", Tier: tier, Target: spec.Name, Args: args}, func(ctx context.Context) (string, error) {
		s.agentMu.Lock()
		defer s.agentMu.Unlock()
		if _, err := s.Log.Agent(ctx, spec.Name); err == nil {
			return "", fmt.Errorf("agent %q: %w", spec.Name, eventlog.ErrExists)
		}
		key := spec.UpstreamKey
		spec.UpstreamKey = ""
		if err := s.putUpstreamKey(spec.Name, key); err != nil {
			return "", err
		}
		if err := s.scoped(ctx, &spec, nil); err != nil {
			s.Keys.Delete(agent.UpstreamKeyID(spec.Name))
			return "", err
		}
		var err error
		if out, err = s.Catalog.CreateAgent(ctx, spec); err != nil {
			s.Keys.Delete(agent.UpstreamKeyID(spec.Name))
		}
		return "", err
	})
	if err != nil {
		return AgentView{}, err
	}
	return s.View(ctx, out), nil
}

// UpdateAgent applies p to agent name, under a lock: two changes never
// overwrite each other. A change of permissions or tools is destructive.
//
// It is long: one step per field of the patch, each with the approval it
// needs.
func (s *Service) UpdateAgent(ctx context.Context, a Actor, name string, p AgentPatch) (AgentView, error) {
	var tier Tier // the action's (Actions), unless raised below
	if p.Widens(a, name) || ((name == agent.Host || name == agent.Builder) && a.Kind == Agent) {
		// What an agent may do, or a built-in's own persona: a person
		// decides (another agent could otherwise rewrite the host's, or
		// steer the builder's).
		tier = Destructive
	}
	if p.Library != nil {
		// Pinned now: what a person approves is what the agent gets.
		pinned, err := s.pinLibrary(*p.Library)
		if err != nil {
			return AgentView{}, s.Refuse(ctx, Call{Actor: a, Tool: "agent.update", Tier: tier, Target: name, Args: p.redacted()}, err)
		}
		p.Library = &pinned
	}
	var out agent.Agent
	err := s.Do(ctx, Call{Actor: a, Tool: "agent.update", Tier: tier, Target: name, Args: p.redacted()}, func(ctx context.Context) (string, error) {
		s.agentMu.Lock()
		defer s.agentMu.Unlock()
		cur, err := s.Log.Agent(ctx, name)
		if err != nil {
			return "", err
		}
		_, lite, _ := s.litellm(ctx, name)
		if lite && p.Models != nil {
			return "", Invalidf("models: %s's models are what its key may access at its LiteLLM proxy; change the key's scope there, then sync (POST /v1/agents/%s/models/sync)", name, name)
		}
		if lite && p.Model != nil && p.UpstreamKey == nil && !slices.Contains(cur.Models, *p.Model) {
			return "", Invalidf("model: %s's key may not access %s at its proxy; it may access %v", name, *p.Model, cur.Models)
		}
		if p.Model != nil {
			cur.Model = *p.Model
		}
		if p.Models != nil {
			cur.Models = *p.Models
		}
		if p.Prompt != nil {
			cur.Prompt = *p.Prompt
		}
		if p.Permission != nil {
			cur.Permission = *p.Permission
			if string(cur.Permission) == "null" {
				cur.Permission = nil
			}
		}
		if p.Tools != nil {
			cur.Tools = *p.Tools
		}
		if p.Limits != nil {
			cur.Limits = p.Limits
		}
		if p.Budget != nil {
			cur.Budget = p.Budget
		}
		if p.Fallback != nil {
			cur.Fallback = *p.Fallback
		}
		if p.MayRead != nil {
			cur.MayRead = *p.MayRead
		}
		if p.MayTask != nil {
			cur.MayTask = *p.MayTask
		}
		if p.Egress != nil {
			cur.Egress = p.Egress
		}
		if p.Library != nil {
			cur.Library = *p.Library
		}
		if p.Workspaces != nil {
			cur.Workspaces = *p.Workspaces
		}
		if p.Workdir != nil {
			cur.Workdir = *p.Workdir
		}
		if p.UpstreamKey != nil {
			// The new key's scope is the agent's permitted set from now on;
			// on any failure the old key stays.
			old, err := s.Keys.Get(agent.UpstreamKeyID(name))
			if err != nil {
				return "", err
			}
			if err := s.putUpstreamKey(name, *p.UpstreamKey); err != nil {
				return "", err
			}
			restore := func() { s.putUpstreamKey(name, old) }
			if err := s.scoped(ctx, &cur, p.Model); err != nil {
				restore()
				return "", err
			}
			if out, err = s.Catalog.UpdateAgent(ctx, cur); err != nil {
				restore()
			}
			return "", err
		}
		out, err = s.Catalog.UpdateAgent(ctx, cur)
		return "", err
	})
	if err != nil {
		return AgentView{}, err
	}
	return s.View(ctx, out), nil
}

// fromTemplate fills what spec leaves unset from the agent template ref.
func (s *Service) fromTemplate(spec *agent.Agent, ref string) error {
	it, _, persona, err := s.library().Template(ref)
	if err != nil {
		return Invalidf("template: %v", err)
	}
	if spec.Prompt == "" {
		spec.Prompt = persona
	}
	if t := it.Manifest.Agent; t != nil {
		if spec.Model == "" {
			spec.Model = t.Model
		}
		if len(spec.Models) == 0 {
			spec.Models = slices.Clone(t.Models)
		}
		if len(spec.Permission) == 0 {
			spec.Permission = slices.Clone(t.Permission)
		}
		if spec.Tools == nil && t.Tools != nil {
			spec.Tools = maps.Clone(t.Tools)
		}
		if len(spec.Library) == 0 {
			spec.Library = slices.Clone(t.Library)
		}
	}
	return nil
}

// pinLibrary pins each of refs to a version the Library holds: an
// unpinned one to its current version.
func (s *Service) pinLibrary(refs []string) ([]string, error) {
	out := make([]string, 0, len(refs))
	for i, ref := range refs {
		p, err := s.library().Resolve(ref)
		if err != nil {
			return nil, Invalidf("library[%d]: %v", i, err)
		}
		out = append(out, p.String())
	}
	return out, nil
}

// putUpstreamKey stores (or, "", removes) agent name's key at its proxy.
func (s *Service) putUpstreamKey(name, key string) error {
	if len(key) > 4096 || strings.ContainsAny(key, "\r\n") {
		return Invalidf("upstream_key: is not a valid key")
	}
	if err := s.Keys.Put(agent.UpstreamKeyID(name), key); err != nil {
		return errors.New("the agent's key could not be stored")
	}
	return nil
}

// scoped makes a LiteLLM agent's permitted set what its key may access,
// when its proxy answers (when it does not, the agent keeps what it has;
// the daemon syncs it later). The agent's model must be one of them; a
// model the caller did not choose (want nil) gives way to the first.
func (s *Service) scoped(ctx context.Context, a *agent.Agent, want *string) error {
	pid, _, _ := agent.SplitModel(a.Model)
	p, err := s.Log.Provider(ctx, pid)
	if err != nil || p.Kind != agent.KindLiteLLM || s.Scope == nil {
		return nil // Validate names a missing provider
	}
	scope, err := s.Scope(ctx, *a)
	if err != nil {
		s.Logger.Warn("the agent's models could not be read from its proxy; they are synced later", "agent", a.Name, "err", err)
		return nil
	}
	if len(scope) == 0 {
		return Invalidf("upstream_key: the key may access no model at %s", p.ID)
	}
	if !slices.Contains(scope, a.Model) {
		if want != nil || a.Created.IsZero() {
			return Invalidf("model: the agent's key may not access %s at %s; it may access %v", a.Model, p.ID, scope)
		}
		a.Model = scope[0]
	}
	a.Models = scope
	return nil
}

// DeleteAgent deletes agent name (destructive).
func (s *Service) DeleteAgent(ctx context.Context, a Actor, name string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "agent.delete", Target: name, Args: map[string]string{"name": name}},
		func(ctx context.Context) (string, error) {
			s.agentMu.Lock()
			defer s.agentMu.Unlock()
			if err := s.Catalog.DeleteAgent(ctx, name); err != nil {
				return "", err
			}
			if s.Deleted != nil {
				s.Deleted(name)
			}
			return "", nil
		})
}

// CreateProvider stores p; its key goes to a 0600 file, never the audit.
func (s *Service) CreateProvider(ctx context.Context, a Actor, p agent.Provider) (agent.Provider, error) {
	p.Demo, p.HasKey, p.Created = false, false, time.Time{}
	var out agent.Provider
	args := p.Public()
	err := s.Do(ctx, Call{Actor: a, Tool: "provider.create", Target: p.ID, Args: args}, func(ctx context.Context) (string, error) {
		var err error
		out, err = s.Catalog.CreateProvider(ctx, p)
		return "", err
	})
	return out, err
}

// DeleteProvider removes provider id and its key.
func (s *Service) DeleteProvider(ctx context.Context, a Actor, id string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "provider.delete", Target: id, Args: map[string]string{"id": id}},
		func(ctx context.Context) (string, error) { return "", s.Catalog.DeleteProvider(ctx, id) })
}

// Providers lists the providers, without keys.
func (s *Service) Providers(ctx context.Context) ([]agent.Provider, error) {
	return s.Catalog.Providers(ctx)
}

// MaxText is the longest message text accepted.
const MaxText = 256 << 10

// Message is a message to an agent.
type Message struct {
	Text     string
	Mode     string // queue (default) or steer
	ClientID string // idempotency key
	Model    string
	// TraceID is the caller's trace (taOS's): every event of the message's
	// turn carries it, and its reply is found by it. A message with a trace
	// and no ClientID is idempotent by its trace.
	TraceID string
	// Conversation is one of the agent's conversations for the turn to
	// run in; "" for its current one.
	Conversation string
}

// Submit queues (or steers) a message to agent name. Messages are not host
// actions: they are recorded in the event log, not the audit.
func (s *Service) Submit(ctx context.Context, a Actor, name string, m Message) (eventlog.Input, bool, error) {
	switch {
	case strings.TrimSpace(m.Text) == "":
		return eventlog.Input{}, false, Invalidf("text: is required")
	case len(m.Text) > MaxText:
		return eventlog.Input{}, false, fmt.Errorf("%w: text: longer than %d bytes", ErrTooLarge, MaxText)
	case len(m.ClientID) > 128:
		return eventlog.Input{}, false, Invalidf("id: longer than 128 characters")
	case len(m.TraceID) > 128 || strings.IndexFunc(m.TraceID, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0:
		return eventlog.Input{}, false, Invalidf("trace_id: at most 128 printable ASCII characters, no spaces")
	}
	if m.ClientID == "" && m.TraceID != "" {
		m.ClientID = "trace:" + m.TraceID
	}
	return s.Runner.Submit(ctx, name, runner.Submission{Text: m.Text, Mode: m.Mode, ClientID: m.ClientID, Model: m.Model, TraceID: m.TraceID, Conversation: m.Conversation})
}

// Abort stops agent name's running turn.
func (s *Service) Abort(ctx context.Context, a Actor, name string) (turn string, err error) {
	err = s.Do(ctx, Call{Actor: a, Tool: "agent.abort", Target: name, Args: map[string]string{"name": name}},
		func(ctx context.Context) (string, error) {
			turn, err = s.Runner.Abort(ctx, name)
			return "", err
		})
	return turn, err
}

// Events returns up to limit events (ReadLimit: 0 is the channel's
// default) of agent name after seq after, of the given kinds (none: all).
//
// An agent reads only the events of the agents it may read
// (agent.Agent.MayReadOf: its own; host every agent's; others as a person
// granted).
func (s *Service) Events(ctx context.Context, a Actor, name string, after int64, kinds []event.Kind, limit int) ([]json.RawMessage, int64, error) {
	limit, err := ReadLimit(a, limit)
	if err != nil {
		return nil, 0, err
	}
	for _, k := range kinds {
		if !k.Known() {
			return nil, 0, Invalidf("kinds: unknown kind %q", k)
		}
	}
	if err := s.MayRead(ctx, a, "agent_events", name); err != nil {
		return nil, 0, err
	}
	out := []json.RawMessage{}
	last := after
	err = s.Log.Scan(ctx, eventlog.Query{Agent: name, After: after, Kinds: kinds, Limit: limit}, func(rec eventlog.Record) error {
		out = append(out, json.RawMessage(append([]byte(nil), rec.Body...)))
		last = rec.Seq
		return nil
	})
	return out, last, err
}

// MayRead refuses (audited) when actor a, an agent, may not read agent
// name's events or log; name must exist.
func (s *Service) MayRead(ctx context.Context, a Actor, tool, name string) error {
	if _, err := s.Log.Agent(ctx, name); err != nil {
		return err
	}
	if a.Kind != Agent {
		return nil
	}
	if reader, err := s.Log.Agent(ctx, a.Name); err == nil && reader.MayReadOf(name) {
		return nil
	}
	return s.Refuse(ctx, Call{Actor: a, Tool: tool, Target: name, Args: map[string]string{"agent": name}},
		fmt.Errorf("%w: %s may read its own events and log, not %s's (a person can grant it: may_read)", ErrForbidden, a.Name, name))
}

// Attach starts agent name's opencode if needed and returns how to attach
// to it (opencode's TUI): its loopback URL and password, the pinned
// session and the project directory. Only a person gets it, and the audit
// records who.
func (s *Service) Attach(ctx context.Context, a Actor, name string) (runner.Attached, error) {
	c := Call{Actor: a, Tool: "agent.attach", Target: name, Args: map[string]string{"agent": name}}
	if !a.Person() {
		return runner.Attached{}, s.Refuse(ctx, c, fmt.Errorf("%w: only a person attaches to an agent's opencode", ErrForbidden))
	}
	var out runner.Attached
	err := s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		out, err = s.Runner.Attach(ctx, name)
		return "", err
	})
	return out, err
}

// RotateKey issues agent name a new gateway key, shown this once; the old
// one stops working at once, and the agent's opencode restarts with the
// new one at its next turn. The audit never holds the key.
func (s *Service) RotateKey(ctx context.Context, a Actor, name string) (string, error) {
	var key string
	err := s.Do(ctx, Call{Actor: a, Tool: "agent.key", Target: name, Args: map[string]string{"agent": name}},
		func(ctx context.Context) (string, error) {
			if _, err := s.Log.Agent(ctx, name); err != nil {
				return "", err
			}
			if s.Keyring == nil {
				return "", errors.New("this daemon has no model gateway")
			}
			var err error
			if key, err = s.Keyring.Rotate(ctx, name); err != nil {
				return "", err
			}
			s.Runner.Forget(name)
			return "", nil
		})
	return key, err
}

// Usage lists the gateway's usage of agent and model ("" for all) from day
// since ("" for all, else YYYY-MM-DD).
func (s *Service) Usage(ctx context.Context, agentName, model, since string) ([]eventlog.UsageRow, error) {
	if since != "" {
		if _, err := time.Parse(time.DateOnly, since); err != nil {
			return nil, Invalidf("since: want a day, YYYY-MM-DD")
		}
	}
	return s.Log.Usage(ctx, agentName, model, since)
}

// NewConversation starts agent name on a new conversation at its next turn
// (a new opencode session); the earlier ones stay readable.
func (s *Service) NewConversation(ctx context.Context, a Actor, name string) (previous string, err error) {
	err = s.Do(ctx, Call{Actor: a, Tool: "agent.conversation.new", Target: name, Args: map[string]string{"name": name}},
		func(ctx context.Context) (string, error) {
			previous, err = s.Catalog.NewConversation(ctx, name)
			return "", err
		})
	return previous, err
}

// Conversations lists agent name's conversations, the latest first.
func (s *Service) Conversations(ctx context.Context, name string) ([]eventlog.Conversation, error) {
	return s.Log.Conversations(ctx, name)
}

// Resume makes conversation id, one of agent name's, its current one.
func (s *Service) Resume(ctx context.Context, a Actor, name, id string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "agent.conversation.resume", Target: name, Args: map[string]string{"name": name, "conversation": id}},
		func(ctx context.Context) (string, error) { return "", s.Runner.Resume(ctx, name, id) })
}
