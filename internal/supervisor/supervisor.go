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
	MinBackoff   time.Duration // first restart delay of a process that died while starting; default 250 ms (one that served restarts at once)
	MaxBackoff   time.Duration // default 30 s
	LogCap       int64         // bytes per log file; default 10 MiB
	MaxRunning   int           // instances running at once; 0: no cap (see victim for who makes room)
	// Quantum is how long, over the cap, an instance whose agent has input
	// queued keeps its slot while others wait: longer than a start, so that
	// a slot serves a run of turns before it changes hands. Default 60 s.
	Quantum time.Duration
	// MemoryBudget bounds what all instances hold together, in bytes (0:
	// none): a start that would take them past it, or past what the
	// machine has available, waits for a slot as over the cap (memory.go).
	MemoryBudget int64
	// Available reports the memory the machine has available now, in
	// bytes; nil: /proc/meminfo's MemAvailable, looked at only with a
	// MemoryBudget.
	Available func() int64
	Logger    *slog.Logger
	// Sandbox confines every instance (see sandbox.Service). Nil runs
	// them unconfined, on the host as the daemon's user: only ever an
	// operator's explicit choice.
	Sandbox *sandbox.Sandbox
	// Doors, when set with Sandbox, gives every instance a network
	// namespace of its own whose only way out is its door (see Doors).
	// Unset, confined instances share the host's network.
	Doors *Doors
	// Detached instances outlive the process that runs the Supervisor
	// (the daemon: its next run adopts them, Adopt); otherwise they die
	// with it (a recovery chat, a demo, a test).
	Detached bool
	// OnState, if set, hears every state change of every instance, in
	// order, on the instance's goroutine and under none of the
	// Supervisor's locks; it must not block for long.
	OnState func(name string, st State, pid int, err error)

	pids       *pidFile
	httpClient *http.Client

	mu        sync.Mutex // guards instances, closed, slots, waiting, holds and queued
	instances map[string]*Instance
	closed    bool
	detached  bool            // handed over (Detach): instances are left running
	slots     int             // instances holding a slot: started, not yet ended
	waiting   []*Instance     // instances waiting for a slot, first come first served
	holds     map[string]int  // turns in progress, by agent
	queued    map[string]bool // agents with input waiting for a turn (SetQueued)
	recheck   *time.Timer     // evictLocked again, when a quantum ends
	freeing   int             // slots of instances stopped for a waiter, not yet handed on
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
	if s.Quantum <= 0 {
		s.Quantum = 60 * time.Second
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
		if in.take(spec) {
			in.Touch()
			s.mu.Unlock()
			return in, nil
		}
		// Adopted, and started with another spec than this one: replaced.
		s.Logger.Info("an adopted instance runs another spec; replacing it", "agent", spec.Name)
		delete(s.instances, spec.Name)
		in.beginStop()
		go in.stop()
	}
	in := &Instance{sup: s, spec: spec, ready: make(chan struct{}), lastUsed: time.Now(),
		stopCh: make(chan struct{}), done: make(chan struct{}), slot: make(chan struct{})}
	s.instances[spec.Name] = in
	if ok, why := s.roomLocked(); ok {
		s.slots++
		in.hasSlot, in.slotAt = true, time.Now()
		close(in.slot)
	} else {
		s.waiting = append(s.waiting, in)
		in.state, in.waitWhy = Waiting, why
		if why != nil {
			s.Logger.Warn("an instance waits for memory", "agent", spec.Name, "why", why)
		}
		s.evictLocked()
	}
	s.mu.Unlock()
	go in.run()
	return in, nil
}

// evictLocked stops an idle instance (ready, in no turn) when an instance
// waits for a slot, if the cap's policy picks one (victim): its slot goes
// to the first in line. When none can be yet, it runs again when a
// quantum ends. An instance starting or in a turn is never stopped for the
// cap.
func (s *Supervisor) evictLocked() {
	if s.recheck != nil {
		s.recheck.Stop()
		s.recheck = nil
	}
	// One stop per waiter: an instance already stopping for one hands its
	// slot on when it is gone (releaseSlot); a second stop for the same
	// waiter would cost another agent its instance for nothing.
	if len(s.waiting) <= s.freeing || s.closed {
		return
	}
	var idle []*Instance
	var holders []slotHolder
	for _, in := range s.instances {
		if in.hasSlot && in.idleLocked() {
			idle = append(idle, in)
			h := slotHolder{queued: s.queued[in.spec.Name], since: in.slotAt}
			var ready time.Time
			h.lastUsed, ready = usedAndReady(in)
			if ready.After(in.slotAt) {
				h.since, h.start = ready, ready.Sub(in.slotAt)
			}
			holders = append(holders, h)
		}
	}
	now := time.Now()
	k, retry := victim(holders, s.queued[s.waiting[0].spec.Name], now, s.Quantum)
	if k < 0 && retry.IsZero() && (s.MaxRunning <= 0 || s.slots < s.MaxRunning) {
		// Under the cap, a waiter waits for memory: look again soon, the
		// machine may have freed some.
		retry = now.Add(memoryRecheck)
	}
	if k < 0 {
		if !retry.IsZero() {
			s.recheck = time.AfterFunc(retry.Sub(now), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.admitLocked()
				s.evictLocked()
			})
		}
		return
	}
	v := idle[k]
	delete(s.instances, v.spec.Name)
	s.Logger.Info("stopping an idle instance for one that waits", "agent", v.spec.Name, "waiting", s.waiting[0].spec.Name)
	// Marked stopping now, under s.mu: a turn that starts on that agent
	// from here on finds it gone and starts a new instance, never sends a
	// prompt to this one.
	v.beginStop()
	v.freeing = true
	s.freeing++
	go v.stop()
}

// slotHolder is what the cap's policy knows of an idle instance that
// holds a slot.
type slotHolder struct {
	queued   bool          // its agent has input waiting for a turn
	lastUsed time.Time     // its last turn's end, or its start
	since    time.Time     // when it began to serve: ready in its slot
	start    time.Duration // what its start took, from its slot to ready
}

// victim is the cap's policy: which of the idle slot holders gives its
// slot to the first waiter (waiterQueued: whose agent has input waiting),
// as an index into idle, or -1 for none yet; then retry is when one could
// be (zero: not before something changes).
//
// An instance whose agent has nothing queued, and whose last turn ended
// more than linger ago, goes first, the least recently used of them. One
// whose agent has input queued, or whose turn just ended (a client that
// sends its next message when the last one's answer is in has, for a
// moment, nothing queued), keeps its slot for a quantum, so that it serves
// a run of turns rather than one start per turn; past it, it goes at a
// turn boundary (it is idle here), the one that has held its slot longest
// first, but only for a waiter whose agent has input queued too: an agent
// with work is never stopped for one without. The waiters are served in
// order (FIFO), each in turn, so none starves. The quantum counts from
// ready, and is at least startShare times what the start took: on a loaded
// machine a start takes tens of seconds, and a slot that gave it one turn
// would spend most of its time starting.
func victim(idle []slotHolder, waiterQueued bool, now time.Time, quantum time.Duration) (pick int, retry time.Time) {
	pick = -1
	soon := func(t time.Time) {
		if retry.IsZero() || t.Before(retry) {
			retry = t
		}
	}
	for k, h := range idle {
		switch {
		case h.queued:
		case now.Sub(h.lastUsed) < linger:
			soon(h.lastUsed.Add(linger)) // done, unless its next message comes
		case pick < 0 || h.lastUsed.Before(idle[pick].lastUsed):
			pick = k
		}
	}
	if pick >= 0 {
		return pick, time.Time{}
	}
	if !waiterQueued {
		return -1, retry
	}
	for k, h := range idle {
		if end := h.since.Add(max(quantum, startShare*h.start)); !end.After(now) {
			if pick < 0 || h.since.Before(idle[pick].since) {
				pick = k
			}
		} else {
			soon(end)
		}
	}
	if pick >= 0 {
		return pick, time.Time{}
	}
	return -1, retry
}

// linger is how long after its turn's end an idle instance whose agent
// has nothing queued still counts as serving a run of turns (see victim):
// longer than a client takes to send its next message once the answer is
// in, even on a loaded machine.
const linger = 2 * time.Second

// startShare is how many times its start a slot serves at least (see
// victim).
const startShare = 5

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
// instance of such an agent keeps its slot for its quantum (see victim).
func (s *Supervisor) SetQueued(name string, queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued == nil {
		s.queued = map[string]bool{}
	}
	if s.queued[name] == queued {
		return
	}
	if queued {
		s.queued[name] = true
	} else {
		delete(s.queued, name)
	}
	s.evictLocked() // who may make room, or wait for it, has changed
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
	if in.freeing {
		in.freeing = false
		s.freeing--
	}
	if len(s.waiting) > 0 {
		next := s.waiting[0]
		s.waiting = s.waiting[1:]
		next.hasSlot, next.slotAt = true, time.Now()
		close(next.slot)
		return
	}
	s.slots--
}

// usedAndReady is when in's last turn ended (or it started) and when its
// current process became ready.
func usedAndReady(in *Instance) (used, ready time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lastUsed, in.readyAt
}

// Position is name's place in the line for a slot (1 is next), 0 when its
// instance does not wait for one.
func (s *Supervisor) Position(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, in := range s.waiting {
		if in.spec.Name == name {
			return k + 1
		}
	}
	return 0
}

// forget removes in from the instances, if it is still there.
func (s *Supervisor) forget(in *Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[in.spec.Name] == in {
		delete(s.instances, in.spec.Name)
	}
	in.mu.Lock()
	in.stopping = true
	in.mu.Unlock()
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

// Detach prepares a hand-over to the next daemon (a planned restart): the
// instances keep running, recorded, for it to adopt (Adopt); the daemon's
// ends of their networks (doors and forwards) close now, so that it can
// open them again; no instance starts any more, and Close stops none.
func (s *Supervisor) Detach() {
	s.mu.Lock()
	s.closed, s.detached = true, true
	if s.recheck != nil {
		s.recheck.Stop()
	}
	var nets []*instanceNet
	for _, in := range s.instances {
		in.mu.Lock()
		nets = append(nets, in.nw)
		in.mu.Unlock()
	}
	s.mu.Unlock()
	for _, nw := range nets {
		nw.close()
	}
}

// Close stops every instance and waits for them all; after Detach, it
// leaves them running.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.detached {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.recheck != nil {
		s.recheck.Stop()
	}
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
