package runner

import (
	"context"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// The runner's two seams: the instances it runs turns on and the store it
// commits them to. In production they are the supervisor (Supervised) and
// the event log; runnertest has an in-process opencode behind Instances,
// so that the turn machine is tested without starting one.

// Instances is what the runner needs of the agents' opencode instances.
type Instances interface {
	// Ensure returns spec.Name's instance, starting it if none runs; it
	// does not wait for it to be ready (Instance.Current does).
	Ensure(spec supervisor.Spec) (Instance, error)
	// Get reports name's instance, false if none runs.
	Get(name string) (InstanceInfo, bool)
	// Client is a client of name's instance once it is ready, an error
	// if none runs.
	Client(ctx context.Context, name string) (*opencode.Client, error)
	// Usage is what name's instance holds now (a walk of /proc: not for
	// the run goroutine), zero if none runs.
	Usage(name string) api.Usage
	// Stop stops name's instance and waits for it; no-op if none runs.
	Stop(name string)
	// Hold keeps name's instance from being stopped for the cap until
	// release is called.
	Hold(name string) (release func())
	// SetQueued tells whether name has input waiting for a turn.
	SetQueued(name string, queued bool)
	// Release is the opencode release new instances run.
	Release() (binary, version string)
	// Confined says whether instances run in the sandbox.
	Confined() bool
	// MaxRunning is the cap on running instances, 0 for none.
	MaxRunning() int
	// OnState sets who hears every instance's state changes.
	OnState(f func(name string, st supervisor.State, pid int, err error))
}

// Instance is one agent's opencode, as the driver follows it.
type Instance interface {
	// Current waits until the instance is ready and returns a client for
	// its current process and a channel closed when that process is gone.
	Current(ctx context.Context) (*opencode.Client, <-chan struct{}, error)
	// Client is Current's client.
	Client(ctx context.Context) (*opencode.Client, error)
	// Touch marks the instance used now.
	Touch()
	// Stopping says whether the instance is being stopped for good.
	Stopping() bool
	// PID is the current process, 0 if none.
	PID() int
}

// InstanceInfo is what Instances.Get reports of a running instance.
type InstanceInfo struct {
	State    supervisor.State
	Position int // in the line for a slot, while State is Waiting
	PID      int
	Version  string
}

// Store is what the runner needs of the event log: the agents it runs,
// their inboxes, and the events it commits (durable before visible).
type Store interface {
	Agent(ctx context.Context, name string) (agent.Agent, error)
	Agents(ctx context.Context) ([]agent.Agent, error)
	Provider(ctx context.Context, id string) (agent.Provider, error)
	SetSession(ctx context.Context, name, session string) error
	HostUID(ctx context.Context, name string, r hostid.Range) (int, error)

	Inputs(ctx context.Context, agent, state string) ([]eventlog.Input, error)
	AddInput(ctx context.Context, in eventlog.Input) (eventlog.Input, bool, error)
	AddAndStart(ctx context.Context, in eventlog.Input, start func(eventlog.Input) event.Event) (_ eventlog.Input, created, started bool, startErr, err error)

	Append(ctx context.Context, evs ...event.Event) ([]event.Event, error)
	AppendAsync(evs []event.Event, then func([]event.Event, error))
	AddRaw(raws ...eventlog.Raw)

	RunningTurns(ctx context.Context) ([]eventlog.Turn, error)
	TurnEvents(ctx context.Context, agent, turn string) ([]event.Event, error)
	Approvals(ctx context.Context, state string) ([]eventlog.Approval, error)
	Approval(ctx context.Context, id string) (eventlog.Approval, error)
	Questions(ctx context.Context, state string) ([]eventlog.Question, error)
	Conversations(ctx context.Context, agent string) ([]eventlog.Conversation, error)
	Question(ctx context.Context, id string) (eventlog.Question, error)
	LastError(ctx context.Context, agent string) (eventlog.LastError, bool, error)
}

var _ Store = (*eventlog.Log)(nil)

// Supervised is s as the runner's Instances.
func Supervised(s *supervisor.Supervisor) Instances { return supervised{s} }

type supervised struct{ s *supervisor.Supervisor }

func (v supervised) Ensure(spec supervisor.Spec) (Instance, error) {
	in, err := v.s.Ensure(spec)
	if err != nil {
		return nil, err
	}
	return in, nil
}

func (v supervised) Get(name string) (InstanceInfo, bool) {
	in := v.s.Get(name)
	if in == nil {
		return InstanceInfo{}, false
	}
	return InstanceInfo{State: in.State(), Position: v.s.Position(name), PID: in.PID(), Version: in.Version()}, true
}

func (v supervised) Client(ctx context.Context, name string) (*opencode.Client, error) {
	in := v.s.Get(name)
	if in == nil {
		return nil, supervisor.ErrStopped
	}
	return in.Client(ctx)
}

func (v supervised) Usage(name string) api.Usage {
	if in := v.s.Get(name); in != nil {
		return in.Usage()
	}
	return api.Usage{}
}

func (v supervised) Stop(name string)                   { v.s.Stop(name) }
func (v supervised) Hold(name string) func()            { return v.s.Hold(name) }
func (v supervised) SetQueued(name string, queued bool) { v.s.SetQueued(name, queued) }
func (v supervised) Release() (string, string)          { return v.s.Release() }
func (v supervised) Confined() bool                     { return v.s.Sandbox != nil }
func (v supervised) MaxRunning() int                    { return v.s.MaxRunning }
func (v supervised) OnState(f func(string, supervisor.State, int, error)) {
	v.s.OnState = f
}
