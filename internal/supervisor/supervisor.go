// Package supervisor owns the lifecycle of opencode processes: one
// `opencode serve` per agent, started on demand, checked ready and of the
// pinned version, confined (see Sandbox), restarted with backoff when it
// crashes, stopped on request (the runner stops an idle agent's) or to make
// room under the cap, and never left behind: every process started is
// recorded, so that after a crash of the daemon the next start kills
// exactly those leftovers and nothing else.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// Supervisor runs the instances of one taosagent home. Configure the
// exported fields before the first Ensure; Close stops everything.
type Supervisor struct {
	// Binary is the opencode binary instances run, of Version (default:
	// the pinned opencode.Version); Use changes both while running.
	Binary       string
	Version      string
	StartTimeout time.Duration // exec to ready; default 60 s
	StopGrace    time.Duration // SIGTERM to SIGKILL; default 5 s
	MinBackoff   time.Duration // first restart delay; default 250 ms
	MaxBackoff   time.Duration // default 30 s
	LogCap       int64         // bytes per log file; default 10 MiB
	MaxRunning   int           // stop the least recently used beyond this; 0: no cap
	Logger       *slog.Logger
	// Sandbox confines every instance (see sandbox.Service). Nil runs
	// them unconfined, on the host as the daemon's user: only ever an
	// operator's explicit choice.
	Sandbox *sandbox.Sandbox
	// Doors, when set with Sandbox, gives every instance a network
	// namespace of its own whose only way out is its door (see Doors).
	// Unset, confined instances share the host's network.
	Doors *Doors
	// OnState, if set, hears every state change of every instance, in
	// order, on the instance's goroutine and under none of the
	// Supervisor's locks; it must not block for long.
	OnState func(name string, st State, pid int, err error)

	pids       *pidFile
	httpClient *http.Client

	mu        sync.Mutex // guards instances, closed, slots, waiting, holds and queued
	instances map[string]*Instance
	closed    bool
	slots     int             // instances holding a slot: started, not yet ended
	waiting   []*Instance     // instances waiting for a slot, first come first served
	holds     map[string]int  // turns in progress, by agent
	queued    map[string]bool // agents with input waiting for a turn (SetQueued)
}

// New returns a Supervisor for binary whose state (the pid record) lives in
// stateDir. Call Sweep before starting instances after a daemon restart.
func New(binary, stateDir string) (*Supervisor, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	return &Supervisor{
		Binary: binary,
		pids:   &pidFile{path: filepath.Join(stateDir, "instances.json")},
		// Loopback only, no proxies: opencode is never reached elsewhere.
		httpClient: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}},
		instances:  map[string]*Instance{},
	}, nil
}

// Use makes binary, of opencode version, what instances started from now
// on run. Running instances keep theirs until they stop: the runner
// restarts each between two of its turns (Release tells it which).
func (s *Supervisor) Use(binary, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Binary, s.Version = binary, version
}

// Release is the binary and version instances started now run.
func (s *Supervisor) Release() (binary, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.Version
	if v == "" {
		v = opencode.Version
	}
	return s.Binary, v
}

func (s *Supervisor) defaults() {
	if s.StartTimeout <= 0 {
		s.StartTimeout = 60 * time.Second
	}
	if s.StopGrace <= 0 {
		s.StopGrace = 5 * time.Second
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = 250 * time.Millisecond
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 30 * time.Second
	}
	if s.LogCap <= 0 {
		s.LogCap = 10 << 20
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
}

func (s *Supervisor) notify(name string, st State, pid int, err error) {
	s.Logger.Info("instance", "agent", name, "state", string(st), "pid", pid, "err", err)
	if s.OnState != nil {
		s.OnState(name, st, pid, err)
	}
}

// Sweep kills what a previous run of the daemon left behind, as recorded,
// and returns the pids it killed.
func (s *Supervisor) Sweep() ([]int, error) {
	return s.pids.sweep()
}

// ErrClosed: the Supervisor was closed.
var ErrClosed = errors.New("supervisor: closed")

// Ensure returns the instance of spec.Name, starting it if it does not run.
// It does not wait for readiness: Instance.Client does. A running instance
// keeps the spec it was started with; Restart applies a new one.
func (s *Supervisor) Ensure(spec Spec) (*Instance, error) {
	if spec.Name == "" || spec.Dir == "" {
		return nil, errors.New("supervisor: spec needs a name and a dir")
	}
	if err := spec.Config.Validate(); err != nil {
		return nil, err
	}
	if s.Sandbox != nil {
		// Refuse now, with the fix, rather than retry a start that cannot
		// work; a success is remembered.
		if err := s.Sandbox.Check(context.Background()); err != nil {
			return nil, fmt.Errorf("cannot confine the agent's opencode: %w", err)
		}
	}
	if spec.Workdir == "" {
		spec.Workdir = filepath.Join(spec.Dir, "work")
	}
	if spec.RunDir == "" {
		spec.RunDir = filepath.Clean(spec.Dir) + ".instance"
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.defaults()
	if in := s.instances[spec.Name]; in != nil {
		in.Touch()
		s.mu.Unlock()
		return in, nil
	}
	in := &Instance{sup: s, spec: spec, ready: make(chan struct{}), lastUsed: time.Now(),
		stopCh: make(chan struct{}), done: make(chan struct{}), slot: make(chan struct{})}
	s.instances[spec.Name] = in
	if s.MaxRunning <= 0 || s.slots < s.MaxRunning {
		s.slots++
		in.hasSlot = true
		close(in.slot)
	} else {
		s.waiting = append(s.waiting, in)
		in.state = Waiting
		s.evictLocked()
	}
	s.mu.Unlock()
	go in.run()
	return in, nil
}

// evictLocked stops an idle instance (ready, in no turn) when an instance
// waits for a slot: its slot goes to the first in line. Of the idle ones it
// stops the least recently used whose agent has no input queued, and one
// whose agent has input queued only when there is no other. An instance
// starting or in a turn is never stopped for the cap.
func (s *Supervisor) evictLocked() {
	if len(s.waiting) == 0 {
		return
	}
	var idle []*Instance
	for _, in := range s.instances {
		if in.hasSlot && in.idleLocked() {
			idle = append(idle, in)
		}
	}
	if len(idle) == 0 {
		return
	}
	sort.Slice(idle, func(a, b int) bool {
		if qa, qb := s.queued[idle[a].spec.Name], s.queued[idle[b].spec.Name]; qa != qb {
			return qb
		}
		return lastUsed(idle[a]).Before(lastUsed(idle[b]))
	})
	victim := idle[0]
	delete(s.instances, victim.spec.Name)
	s.Logger.Info("stopping the least recently used instance for one that waits", "agent", victim.spec.Name)
	// Marked stopping now, under s.mu: a turn that starts on that agent
	// from here on finds it gone and starts a new instance, never sends a
	// prompt to this one.
	victim.beginStop()
	go victim.stop()
}

// Hold marks agent name as in a turn until the returned function is called
// (once): its instance, starting or running, is never stopped for the cap
// meanwhile. When the hold ends, an idle instance makes room for one
// waiting for a slot, if any waits.
func (s *Supervisor) Hold(name string) (release func()) {
	s.mu.Lock()
	if s.holds == nil {
		s.holds = map[string]int{}
	}
	s.holds[name]++
	if in := s.instances[name]; in != nil {
		in.Touch()
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.holds[name]--; s.holds[name] <= 0 {
				delete(s.holds, name)
			}
			if in := s.instances[name]; in != nil {
				in.Touch()
			}
			s.evictLocked()
		})
	}
}

// SetQueued tells whether agent name has input waiting for a turn: an idle
// instance of such an agent is stopped for the cap only when no other idle
// instance can be.
func (s *Supervisor) SetQueued(name string, queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued == nil {
		s.queued = map[string]bool{}
	}
	if queued {
		s.queued[name] = true
	} else {
		delete(s.queued, name)
	}
}

// releaseSlot is called once an instance's run loop has ended: its slot,
// if it held one, goes to the first waiting instance.
func (s *Supervisor) releaseSlot(in *Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !in.hasSlot {
		for k, w := range s.waiting {
			if w == in {
				s.waiting = append(s.waiting[:k], s.waiting[k+1:]...)
				break
			}
		}
		return
	}
	in.hasSlot = false
	if len(s.waiting) > 0 {
		next := s.waiting[0]
		s.waiting = s.waiting[1:]
		next.hasSlot = true
		close(next.slot)
		return
	}
	s.slots--
}

func lastUsed(in *Instance) time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lastUsed
}

// Get returns the instance of name, nil if none runs.
func (s *Supervisor) Get(name string) *Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances[name]
}

// Stop stops the instance of name and waits for it; no-op if none runs.
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	in := s.instances[name]
	delete(s.instances, name)
	s.mu.Unlock()
	if in != nil {
		in.stop()
	}
}

// Close stops every instance and waits for them all.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	all := s.instances
	s.instances = map[string]*Instance{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.stop()
		}()
	}
	wg.Wait()
	return nil
}
