// Package catalog keeps the providers and agents: their validation on the
// way in (agent.Agent.Validate, the built-in agents' rules), a provider's
// key in its 0600 file, and what a deleted agent leaves behind. It changes
// nothing by itself: the control service (internal/control) names the
// actor, asks for approval where one is needed, and audits each change.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
)

// Catalog changes providers and agents. Its methods are safe for
// concurrent use.
type Catalog struct {
	Home string // agents live in Home/agents/NAME
	Log  eventlog.Store
	Keys agent.Keys
	// Forget stops an agent's runner and instance (runner.Manager.Forget):
	// the agent is being deleted.
	Forget func(name string)
}

// CreateProvider validates and stores p; its key goes to a 0600 file.
func (m *Catalog) CreateProvider(ctx context.Context, p agent.Provider) (out agent.Provider, err error) {
	if err := p.Validate(); err != nil {
		return p, err
	}
	if p.ID == agent.DemoProvider {
		return p, &agent.InvalidError{Field: "id", Reason: `"demo" is the built-in demo provider`}
	}
	// The row first: a taken id is refused before any key file is touched.
	if err := m.Log.CreateProvider(ctx, p); err != nil {
		return p, err
	}
	if err := m.Keys.Put(p.ID, p.APIKey); err != nil {
		m.Log.DeleteProvider(context.WithoutCancel(ctx), p.ID)
		return p, errors.New("the key could not be stored")
	}
	stored, err := m.Log.Provider(ctx, p.ID)
	stored.HasKey = p.APIKey != ""
	return stored.Public(), err
}

// Providers lists the providers, without keys.
func (m *Catalog) Providers(ctx context.Context) ([]agent.Provider, error) {
	ps, err := m.Log.Providers(ctx)
	for i, p := range ps {
		k, _ := m.Keys.Get(p.ID)
		p.HasKey = k != "" || p.Demo
		ps[i] = p.Public()
	}
	return ps, err
}

// DeleteProvider removes provider id and its key; refused while an agent
// uses it.
func (m *Catalog) DeleteProvider(ctx context.Context, id string) (err error) {
	if err := m.Log.DeleteProvider(ctx, id); err != nil {
		return err
	}
	return m.Keys.Delete(id)
}

func (m *Catalog) lookup(ctx context.Context) agent.Lookup {
	ps, _ := m.Log.Providers(ctx)
	return func(id string) (agent.Provider, bool) {
		for _, p := range ps {
			if p.ID == id {
				return p, true
			}
		}
		return agent.Provider{}, false
	}
}

// CreateAgent validates and stores a.
func (m *Catalog) CreateAgent(ctx context.Context, a agent.Agent) (out agent.Agent, err error) {
	a.Normalize()
	a.Builtin, a.Session = false, ""
	if err := a.Validate(m.lookup(ctx)); err != nil {
		return a, err
	}
	if err := m.checkWorkspaces(a); err != nil {
		return a, err
	}
	return m.Log.CreateAgent(ctx, a)
}

// UpdateAgent replaces agent a.Name's spec; its opencode restarts with it
// at its next turn.
func (m *Catalog) UpdateAgent(ctx context.Context, a agent.Agent) (out agent.Agent, err error) {
	a.Normalize()
	if a.Name == agent.Host {
		if err := hostRules(&a); err != nil {
			return a, err
		}
	}
	if a.Name == agent.Builder {
		if cur, err := m.Log.Agent(ctx, a.Name); err == nil && cur.Builtin {
			if err := agent.BuilderRules(&a); err != nil {
				return a, err
			}
		}
	}
	if err := a.Validate(m.lookup(ctx)); err != nil {
		return a, err
	}
	if err := m.checkWorkspaces(a); err != nil {
		return a, err
	}
	return m.Log.UpdateAgent(ctx, a)
}

// checkWorkspaces checks a's workspaces against the host: each is a
// directory, named without a link (what a person names is what is
// bound), and neither inside taosagent's home nor holding it.
func (m *Catalog) checkWorkspaces(a agent.Agent) error {
	home, err := filepath.EvalSymlinks(m.Home)
	if err != nil {
		home = m.Home
	}
	for i, w := range a.Workspaces {
		field := fmt.Sprintf("workspaces[%d].path", i)
		fi, err := os.Lstat(w.Path)
		switch {
		case err != nil:
			return &agent.InvalidError{Field: field, Reason: fmt.Sprintf("%s: %v", w.Path, errors.Unwrap(err))}
		case fi.Mode()&os.ModeSymlink != 0:
			return &agent.InvalidError{Field: field, Reason: fmt.Sprintf("%s is a symbolic link: name the directory itself", w.Path)}
		case !fi.IsDir():
			return &agent.InvalidError{Field: field, Reason: fmt.Sprintf("%s is not a directory", w.Path)}
		}
		if real, err := filepath.EvalSymlinks(w.Path); err != nil || real != w.Path {
			return &agent.InvalidError{Field: field, Reason: fmt.Sprintf("%s leads through a symbolic link (name %s)", w.Path, real)}
		}
		if within(w.Path, home) || within(home, w.Path) {
			return &agent.InvalidError{Field: field, Reason: fmt.Sprintf("%s overlaps taosagent's home %s", w.Path, home)}
		}
	}
	return nil
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// DeleteAgent stops and removes agent name; its events stay in the log.
func (m *Catalog) DeleteAgent(ctx context.Context, name string) (err error) {
	if name == agent.Host {
		return &agent.InvalidError{Field: "name", Reason: "the host agent is built in and cannot be deleted"}
	}
	if a, err := m.Log.Agent(ctx, name); err != nil {
		return err
	} else if a.Builtin {
		return &agent.InvalidError{Field: "name", Reason: fmt.Sprintf("the %s agent is built in and cannot be deleted", name)}
	}
	if m.Forget != nil {
		m.Forget(name)
	}
	// A turn it was running ends, as every turn does, with one terminal
	// event, before its history is set aside.
	if turns, err := m.Log.RunningTurns(ctx); err == nil {
		var evs []event.Event
		for _, t := range turns {
			if t.Agent == name {
				e := event.New(t.Session, event.Error, time.Now(), event.ErrorData{Code: event.CodeInterrupted,
					Message: "the turn was interrupted: its agent was deleted"})
				e.Agent, e.Turn, e.TraceID, e.Synthetic = name, t.ID, t.TraceID, true
				evs = append(evs, e)
			}
		}
		if len(evs) > 0 {
			if _, err := m.Log.Append(ctx, evs...); err != nil {
				return err
			}
		}
	}
	if err := m.Log.DeleteAgent(ctx, name); err != nil {
		return err
	}
	// Its directory holds its sessions, the daemon's directory of its
	// instance its opencode config, log and gateway key, and its own key
	// at its proxy is kept apart: nothing of it may outlive the agent.
	// (os.RemoveAll removes a symbolic link, never what it points to.)
	h := home.Home{Dir: m.Home}
	for _, dir := range []string{h.Agent(name), h.Instance(name)} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove the agent's directory: %w", err)
		}
	}
	if err := m.Keys.Delete(agent.UpstreamKeyID(name)); err != nil {
		return fmt.Errorf("remove the agent's key: %w", err)
	}
	return nil
}

// EnsureBuiltins creates what must exist from the first start: the demo
// provider when there is no other (and demo is on), the host agent and
// the App Builder (unless an agent of the user's already has its name).
func (m *Catalog) EnsureBuiltins(ctx context.Context, demo bool) (created []string, err error) {
	ps, err := m.Log.Providers(ctx)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 && demo {
		p := agent.Provider{ID: agent.DemoProvider, Name: "Scripted demo (a test stand-in, not an AI)",
			BaseURL: "builtin://scripted-demo", Demo: true,
			Models: []agent.Model{{ID: "scripted-demo", Name: "Scripted demo model (test stand-in, not an AI)", ToolCall: true, Reasoning: true}}}
		if err := m.Log.CreateProvider(ctx, p); err != nil {
			return nil, err
		}
		created = append(created, "provider demo")
		ps = []agent.Provider{p}
	}
	host, err := m.Log.Agent(ctx, agent.Host)
	switch {
	case errors.Is(err, eventlog.ErrNotFound) && len(ps) > 0:
		a := agent.Agent{Name: agent.Host, Model: ps[0].ID + "/" + ps[0].Models[0].ID, Builtin: true,
			Prompt: agent.HostPrompt, Tools: map[string]bool{agent.TaosTools: true}}
		a.Normalize()
		if err := hostRules(&a); err != nil {
			return created, err
		}
		if _, err := m.Log.CreateAgent(ctx, a); err != nil {
			return created, err
		}
		created = append(created, "agent host")
	case err == nil:
		// A host made by an earlier version may hold a shell: take it away.
		before := string(host.Permission)
		if err := hostRules(&host); err != nil {
			host.Permission, host.Tools = nil, nil
			hostRules(&host)
		}
		changed := string(host.Permission) != before
		if changed {
			created = append(created, "the host agent's permissions: no shell, no file edits, no web fetch")
		}
		// ... and lack the tools and the manual it has now. A person who
		// switched the tools off ("taos": false) keeps that choice.
		if _, set := host.Tools[agent.TaosTools]; !set {
			if host.Tools == nil {
				host.Tools = map[string]bool{}
			}
			host.Tools[agent.TaosTools], changed = true, true
			created = append(created, "the host agent's tools: taosagent's host tools")
		}
		if host.Prompt == agent.OldHostPrompt || host.Prompt == "" {
			host.Prompt, changed = agent.HostPrompt, true
		}
		if changed {
			if _, err := m.Log.UpdateAgent(ctx, host); err != nil {
				return created, err
			}
		}
	}
	return m.ensureBuilder(ctx, ps, created)
}

// ensureBuilder creates the App Builder when it does not exist, and puts
// back its locked permissions and tools if they were changed.
func (m *Catalog) ensureBuilder(ctx context.Context, ps []agent.Provider, created []string) ([]string, error) {
	b, err := m.Log.Agent(ctx, agent.Builder)
	switch {
	case errors.Is(err, eventlog.ErrNotFound) && len(ps) > 0:
		a := agent.Agent{Name: agent.Builder, Model: ps[0].ID + "/" + ps[0].Models[0].ID, Builtin: true, Prompt: agent.BuilderPrompt}
		a.Normalize()
		agent.BuilderRules(&a)
		if _, err := m.Log.CreateAgent(ctx, a); err != nil {
			return created, err
		}
		created = append(created, "agent builder")
	case err == nil && b.Builtin:
		locked := b
		locked.Permission, locked.Tools = nil, nil
		agent.BuilderRules(&locked)
		if string(b.Permission) != string(locked.Permission) || !maps.Equal(b.Tools, locked.Tools) {
			if _, err := m.Log.UpdateAgent(ctx, locked); err != nil {
				return created, err
			}
			created = append(created, "the builder's locked permissions and tools")
		}
	}
	return created, nil
}

// hostRules applies what the host agent may never have (see
// agent.HostPermission), or refuses.
func hostRules(a *agent.Agent) error {
	p, err := agent.HostPermission(a.Permission)
	if err != nil {
		return err
	}
	a.Permission = p
	for _, t := range agent.HostDenied {
		if a.Tools[t] {
			return &agent.InvalidError{Field: "tools", Reason: fmt.Sprintf("the host agent never gets %q", t)}
		}
	}
	return nil
}

// NewConversation unpins agent name's opencode session: its next turn
// starts a new one. The earlier conversation stays in the log (and in
// opencode); a turn running now ends in it. It returns the session that
// was pinned ("" if none).
func (m *Catalog) NewConversation(ctx context.Context, name string) (previous string, err error) {
	a, err := m.Log.Agent(ctx, name)
	if err != nil {
		return "", err
	}
	return a.Session, m.Log.SetSession(ctx, name, "")
}
