package runnertest

import (
	"context"
	"sync"
	"testing"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Instances is runner.Instances over one Opencode per agent, made on the
// agent's first start with the script New gives it. A stop ends the
// agent's process; its next start is a new process of the same Opencode
// (its sessions kept, as opencode keeps them on disk).
type Instances struct {
	t testing.TB
	// New makes an agent's Opencode (default: every prompt answered with
	// the text turn 01-text-turn).
	New func(name string) *Opencode

	mu      sync.Mutex
	oc      map[string]*Opencode
	running map[string]*instance
	specs   map[string][]supervisor.Spec
	version string
	memory  map[string]int64
	onState func(string, supervisor.State, int, error)
	lines   map[string]*line // the next start of an agent waits in line (Line)
}

var _ runner.Instances = (*Instances)(nil)

// NewInstances returns Instances for a test.
func NewInstances(t testing.TB) *Instances {
	return &Instances{t: t, oc: map[string]*Opencode{}, running: map[string]*instance{},
		specs: map[string][]supervisor.Spec{}, version: opencode.Version, memory: map[string]int64{}}
}

// Memory makes every instance of agent name report that it holds bytes.
func (s *Instances) Memory(name string, bytes int64) {
	s.mu.Lock()
	s.memory[name] = bytes
	s.mu.Unlock()
}

// Opencode is agent name's opencode, made now if it has none yet.
func (s *Instances) Opencode(name string) *Opencode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opencodeLocked(name)
}

func (s *Instances) opencodeLocked(name string) *Opencode {
	if o := s.oc[name]; o != nil {
		return o
	}
	var o *Opencode
	if s.New != nil {
		o = s.New(name)
	} else {
		o = NewOpencode(s.t, Capture(s.t, "01-text-turn"))
	}
	s.oc[name] = o
	return o
}

// Starts are the specs agent name's instances were started with, in order.
func (s *Instances) Starts(name string) []supervisor.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]supervisor.Spec(nil), s.specs[name]...)
}

// Crash kills agent name's opencode process: every stream and script in
// it ends, and it comes back at once as a new process, as the supervisor
// restarts a crashed instance.
func (s *Instances) Crash(name string) {
	s.mu.Lock()
	in := s.running[name]
	s.mu.Unlock()
	if in == nil {
		return
	}
	in.oc.Crash()
	in.mu.Lock()
	close(in.gone)
	in.gone = make(chan struct{})
	in.pid++
	in.mu.Unlock()
}

// Line makes the next start of agent name wait in line for a slot, as
// over the supervisor's cap: its state is Waiting until admit is called;
// then it starts (Starting) and, if ready, is Ready; if not, it never is.
func (s *Instances) Line(name string) (admit func(ready bool)) {
	l := &line{admitted: make(chan struct{})}
	s.mu.Lock()
	if s.lines == nil {
		s.lines = map[string]*line{}
	}
	s.lines[name] = l
	s.mu.Unlock()
	return func(ready bool) {
		s.state(name, supervisor.Starting, 0)
		if ready {
			s.state(name, supervisor.Ready, 1)
		}
		l.ready = ready
		close(l.admitted)
	}
}

// line is an instance's wait for a slot: admitted is closed when it has
// one; ready (set before) says whether it then becomes ready.
type line struct {
	admitted chan struct{}
	ready    bool
}

// Report tells the runner that agent name's instance is in state st, as
// the supervisor does (say, an earlier process's late Stopped).
func (s *Instances) Report(name string, st supervisor.State) { s.state(name, st, 0) }

func (s *Instances) state(name string, st supervisor.State, pid int) {
	s.mu.Lock()
	f := s.onState
	s.mu.Unlock()
	if f != nil {
		f(name, st, pid, nil)
	}
}

// Ensure starts spec.Name's instance, or returns the running one.
func (s *Instances) Ensure(spec supervisor.Spec) (runner.Instance, error) {
	s.mu.Lock()
	if in := s.running[spec.Name]; in != nil {
		s.mu.Unlock()
		return in, nil
	}
	s.specs[spec.Name] = append(s.specs[spec.Name], spec)
	in := &instance{oc: s.opencodeLocked(spec.Name), gone: make(chan struct{}), pid: 1000 * len(s.specs[spec.Name])}
	in.line = s.lines[spec.Name]
	delete(s.lines, spec.Name)
	s.running[spec.Name] = in
	s.mu.Unlock()
	if in.line != nil {
		s.state(spec.Name, supervisor.Waiting, 0)
	}
	return in, nil
}

// Get reports name's instance.
func (s *Instances) Get(name string) (runner.InstanceInfo, bool) {
	s.mu.Lock()
	in := s.running[name]
	s.mu.Unlock()
	if in == nil {
		return runner.InstanceInfo{}, false
	}
	return runner.InstanceInfo{State: supervisor.Ready, PID: in.PID(), Version: s.version}, true
}

// Client is a client of name's instance, an error if none runs.
func (s *Instances) Client(ctx context.Context, name string) (*opencode.Client, error) {
	s.mu.Lock()
	in := s.running[name]
	s.mu.Unlock()
	if in == nil {
		return nil, supervisor.ErrStopped
	}
	return in.Client(ctx)
}

// Usage reports what Memory set for name, while its instance runs.
func (s *Instances) Usage(name string) api.Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[name] == nil {
		return api.Usage{}
	}
	return api.Usage{Processes: 1, MemoryBytes: s.memory[name]}
}

// Stop stops name's instance: its process ends.
func (s *Instances) Stop(name string) {
	s.mu.Lock()
	in := s.running[name]
	delete(s.running, name)
	s.mu.Unlock()
	if in != nil {
		in.mu.Lock()
		in.stopping = true
		close(in.gone)
		in.mu.Unlock()
		in.oc.Crash()
	}
}

// Hold is a no-op: there is no cap.
func (s *Instances) Hold(string) func() { return func() {} }

// SetQueued is a no-op: there is no cap.
func (s *Instances) SetQueued(string, bool) {}

// Release is the pinned release.
func (s *Instances) Release() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "/runnertest/opencode", s.version
}

// Use switches the release new instances run, as an upgrade does.
func (s *Instances) Use(version string) {
	s.mu.Lock()
	s.version = version
	s.mu.Unlock()
}

// Confined is false: nothing runs.
func (s *Instances) Confined() bool { return false }

// MaxRunning is 0: no cap.
func (s *Instances) MaxRunning() int { return 0 }

// OnState keeps f; the stand-in reports no states.
func (s *Instances) OnState(f func(string, supervisor.State, int, error)) {
	s.mu.Lock()
	s.onState = f
	s.mu.Unlock()
}

// instance is one agent's running instance.
type instance struct {
	oc *Opencode

	mu       sync.Mutex
	gone     chan struct{} // closed when the current process ends
	pid      int
	stopping bool
	line     *line // its wait for a slot, if it had one (Line)
}

func (in *instance) Current(ctx context.Context) (*opencode.Client, <-chan struct{}, error) {
	if l := in.line; l != nil {
		select {
		case <-l.admitted:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		if !l.ready {
			<-ctx.Done() // started, and never ready
			return nil, nil, ctx.Err()
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopping {
		return nil, nil, supervisor.ErrStopped
	}
	return in.oc.Client(), in.gone, nil
}

func (in *instance) Client(ctx context.Context) (*opencode.Client, error) {
	c, _, err := in.Current(ctx)
	return c, err
}

func (in *instance) Touch() {}

func (in *instance) Stopping() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stopping
}

func (in *instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pid
}
