package control

import (
	"context"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/runner"
)

// WatchGateway has gw's calls told in the agents' logs: a usage event per
// call, a model.switched event and an audit entry when a fallback
// answered, a usage warning and an audit entry past a budget's soft
// share. The audit entries are bounded and redacted like every other.
func (s *Service) WatchGateway(gw *gateway.Gateway) {
	s.init()
	record := func(name string, kind event.Kind, data any) {
		e := s.Runner.TurnEvent(context.Background(), name, kind, data)
		s.Log.AppendAsync([]event.Event{e}, nil)
	}
	gw.OnCall = func(c gateway.Call) {
		record(c.Agent, event.Usage, event.UsageData{Input: int(c.InputTokens), Output: int(c.OutputTokens),
			Cost: c.Cost, Model: c.Model, Source: "gateway"})
	}
	gw.OnFallback = func(name, from, to, reason string) {
		record(name, event.ModelSwitched, event.ModelSwitchedData{From: from, To: to, Reason: reason, Source: "gateway"})
		s.gatewayAudit("gateway.fallback", name, from+" → "+to+": "+reason)
		s.Logger.Warn("an agent's upstream failed; its fallback answered", "agent", name, "from", from, "to", to, "reason", s.Redact(reason))
	}
	gw.OnSoftLimit = func(name, what string) {
		record(name, event.Usage, event.UsageData{Source: "gateway", Warning: "budget: " + what})
		s.gatewayAudit("budget.soft", name, what)
		s.Logger.Warn("an agent passed the soft share of its budget", "agent", name, "budget", what)
	}
}

// gatewayAudit records what the gateway did for agent name.
func (s *Service) gatewayAudit(action, name, detail string) {
	tier, _ := ActionTier(action)
	s.audit(context.Background(), eventlog.AuditEntry{Actor: "gateway", Action: action, Tier: string(tier), Target: Bound(name, 512),
		Phase: "outcome", Outcome: api.OutcomeOK, Detail: Bound(s.Redact(detail), 1024)})
}

// EgressProxy is the doors' egress proxy: an agent's policy is its own
// (agent.Agent.EgressPolicy), every other principal's none; every decision
// is an egress event in the agent's log.
func (s *Service) EgressProxy() *egress.Proxy {
	return &egress.Proxy{
		Policy: func(ctx context.Context, p egress.Principal) (egress.Policy, error) {
			a, err := s.Log.Agent(ctx, p.Name)
			if err != nil || p.Kind != "agent" {
				return egress.Policy{Mode: egress.None}, err
			}
			return a.EgressPolicy(), nil
		},
		Record: func(d egress.Decision) {
			e := s.Runner.TurnEvent(context.Background(), d.Principal.Name, event.Egress, event.EgressData{Method: d.Method, Host: d.Host,
				Port: d.Port, Address: d.Address, Allowed: d.Allowed, Reason: d.Reason})
			s.Log.AppendAsync([]event.Event{e}, nil)
		}}
}

// WatchRunner sets the runner's hooks (s.Runner, which s holds): an
// agent's permitted models synced with its upstream before its opencode
// starts (as the daemon), and a model switch made in opencode written
// back, or refused (ModelSwitched).
func (s *Service) WatchRunner() {
	s.init()
	daemon := Actor{Kind: Daemon, Channel: "sync"}
	s.Runner.SetHooks(runner.Hooks{
		Sync: func(ctx context.Context, name string) (agent.Agent, error) {
			if _, err := s.SyncModels(ctx, daemon, name); err != nil && !agent.IsInvalid(err) {
				return agent.Agent{}, err
			}
			return s.Log.Agent(ctx, name)
		},
		OnModelSwitch: func(name, from, to string) {
			if err := s.ModelSwitched(context.Background(), name, from, to); err != nil {
				s.Logger.Warn("a model switch made in opencode was refused", "agent", name, "from", from, "to", to, "err", err)
			} else {
				s.Logger.Info("a model switch made in opencode is now the agent's model", "agent", name, "from", from, "to", to)
			}
		}})
}
