package control

import (
	"context"
	"fmt"
	"slices"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
)

// ModelSync is what a sync of an agent's permitted models found.
type ModelSync = api.ModelSync

// litellm returns agent name and its provider when that is a LiteLLM
// proxy, whose key's scope is the agent's permitted set.
func (s *Service) litellm(ctx context.Context, name string) (agent.Agent, bool, error) {
	a, err := s.Log.Agent(ctx, name)
	if err != nil {
		return a, false, err
	}
	pid, _, _ := agent.SplitModel(a.Model)
	p, err := s.Log.Provider(ctx, pid)
	if err != nil {
		return a, false, err
	}
	return a, p.Kind == agent.KindLiteLLM, nil
}

// SyncModels brings agent name's permitted models up to date with what
// its key may access at its LiteLLM proxy (GET /models with that key), so
// that the gateway refuses a model the key lost before any upstream call,
// and opencode's model list is the permitted set. When the agent's model
// is no longer in the set, the first model of the set takes its place.
// A change is audited; a sync the daemon runs by itself that changes
// nothing is not. An agent of any other provider is refused: its models
// are set by hand.
func (s *Service) SyncModels(ctx context.Context, a Actor, name string) (ModelSync, error) {
	s.init()
	cur, lite, err := s.litellm(ctx, name)
	if err != nil {
		return ModelSync{}, err
	}
	c := Call{Actor: a, Tool: "agent.models.sync", Target: name, Args: map[string]string{"agent": name}}
	if !lite {
		err := Invalidf("agent: %s's provider is not a LiteLLM proxy; its models are set by hand", name)
		if a.Kind == Daemon {
			return ModelSync{}, err // the daemon asks of every agent
		}
		return ModelSync{}, s.Refuse(ctx, c, err)
	}
	if s.Scope == nil {
		return ModelSync{}, fmt.Errorf("this daemon cannot reach upstreams (no gateway)")
	}
	scope, err := s.Scope(ctx, cur)
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrUpstream, err)
		if a.Kind != Daemon {
			s.Refuse(ctx, c, err)
		}
		return ModelSync{}, err
	}
	out := ModelSync{Agent: name, Model: cur.Model, Models: cur.Models, Added: diff(scope, cur.Models), Removed: diff(cur.Models, scope)}
	if len(out.Added) == 0 && len(out.Removed) == 0 {
		if a.Kind != Daemon {
			err = s.Do(ctx, c, func(context.Context) (string, error) { return "", nil })
		}
		return out, err
	}
	if len(scope) == 0 {
		err := Invalidf("models: %s's key may access no model at its proxy; the agent is left as it is (the proxy refuses its calls)", name)
		return out, s.Refuse(ctx, c, err)
	}
	c.Args = map[string]any{"agent": name, "added": out.Added, "removed": out.Removed}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		s.agentMu.Lock()
		defer s.agentMu.Unlock()
		cur, err := s.Log.Agent(ctx, name)
		if err != nil {
			return "", err
		}
		cur.Models = scope
		if !slices.Contains(scope, cur.Model) {
			cur.Model = scope[0]
		}
		updated, err := s.Catalog.UpdateAgent(ctx, cur)
		if err != nil {
			return "", err
		}
		out.Model, out.Models, out.Changed = updated.Model, updated.Models, true
		return "", nil
	})
	return out, err
}

// diff lists what of a is not in b.
func diff(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// ModelSwitched takes in a switch of model that opencode reported for
// agent name's session (made in its TUI): a model within the agent's
// permitted set becomes the agent's model; one outside it is refused and
// audited (the gateway refuses its calls in any case).
func (s *Service) ModelSwitched(ctx context.Context, name, from, to string) error {
	c := Call{Actor: Actor{Kind: Daemon, Channel: "opencode"}, Tool: "agent.model.switch", Target: name,
		Args: map[string]string{"agent": name, "from": from, "to": to}}
	cur, err := s.Log.Agent(ctx, name)
	if err != nil {
		return err
	}
	if cur.Model == to {
		return nil
	}
	if !slices.Contains(cur.Models, to) {
		return s.Refuse(ctx, c, Invalidf("model: %s is not one of agent %s's permitted models %v; the switch made in opencode is refused", to, name, cur.Models))
	}
	return s.Do(ctx, c, func(ctx context.Context) (string, error) {
		s.agentMu.Lock()
		defer s.agentMu.Unlock()
		cur, err := s.Log.Agent(ctx, name)
		if err != nil {
			return "", err
		}
		if !slices.Contains(cur.Models, to) {
			return "", Invalidf("model: %s left agent %s's permitted models meanwhile", to, name)
		}
		cur.Model = to
		_, err = s.Catalog.UpdateAgent(ctx, cur)
		return "", err
	})
}
