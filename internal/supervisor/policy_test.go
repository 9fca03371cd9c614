package supervisor

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/testenv"
)

// The cap's policy, case by case: who gives a slot to the first waiter,
// and when to look again when no one can yet.
func TestTheCapsPolicy(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	const q = time.Minute
	old, recent := now.Add(-2*q), now.Add(-q/6)
	var never time.Time
	cases := []struct {
		name         string
		idle         []slotHolder
		waiterQueued bool
		want         int
		retry        time.Time
	}{
		{"nothing idle: the waiter waits for a turn's end", nil, true, -1, never},
		{"an agent with nothing queued makes room first, the least recently used of them",
			[]slotHolder{{queued: true, lastUsed: old, since: old}, {lastUsed: recent, since: recent}, {lastUsed: old, since: recent}}, true, 2, never},
		{"and for any waiter", []slotHolder{{lastUsed: recent, since: recent}}, false, 0, never},
		{"one whose turn just ended may get its next message: it is not stopped yet",
			[]slotHolder{{lastUsed: now.Add(-linger / 2), since: recent}}, true, -1, now.Add(linger / 2)},
		{"nor for a waiter with nothing queued",
			[]slotHolder{{lastUsed: now.Add(-linger / 2), since: old}}, false, -1, now.Add(linger / 2)},
		{"once linger has passed with nothing queued, it makes room",
			[]slotHolder{{lastUsed: now.Add(-linger), since: recent}}, true, 0, never},
		{"a run of turns, each sent when the last ends, keeps its slot for its quantum",
			[]slotHolder{{lastUsed: now.Add(-linger / 2), since: now.Add(-q / 2)}}, true, -1, now.Add(linger / 2)},
		{"and past it makes room, as one with input queued does",
			[]slotHolder{{lastUsed: now.Add(-linger / 2), since: old}}, true, 0, never},
		{"an agent with work keeps its slot for its quantum",
			[]slotHolder{{queued: true, lastUsed: recent, since: recent}}, true, -1, recent.Add(q)},
		{"the first quantum to end is when to look again",
			[]slotHolder{{queued: true, since: recent}, {queued: true, since: recent.Add(-time.Second)}}, true, -1, recent.Add(q - time.Second)},
		{"past its quantum it makes room, the longest holder first",
			[]slotHolder{{queued: true, since: old}, {queued: true, since: old.Add(-q)}, {queued: true, since: recent}}, true, 1, never},
		{"a quantum that ends now is spent", []slotHolder{{queued: true, since: now.Add(-q)}}, true, 0, never},
		{"a slow start buys a longer quantum: five times the start",
			[]slotHolder{{queued: true, since: now.Add(-2 * q), start: q / 2}}, true, -1, now.Add(q / 2)},
		{"and past it, it makes room", []slotHolder{{queued: true, since: now.Add(-3 * q), start: q / 2}}, true, 0, never},
		{"an agent with work is never stopped for one without",
			[]slotHolder{{queued: true, since: old}}, false, -1, never},
	}
	for _, c := range cases {
		got, retry := victim(c.idle, c.waiterQueued, now, q)
		if got != c.want || !retry.Equal(c.retry) {
			t.Errorf("%s: victim %d, retry %v; want %d, %v", c.name, got, retry, c.want, c.retry)
		}
	}
}

// One waiter costs one instance: while the instance stopped for it has
// not yet handed its slot on, another look (a turn's end, an instance
// turning ready) stops no second one. (Under load, a late "ready" used to
// stop an agent with input queued although a slot was already on its way.)
func TestOneStopPerWaiter(t *testing.T) {
	t.Parallel()
	s, err := New("/nonexistent/opencode", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.MaxRunning = 2
	s.defaults()
	idle := func(name string) *Instance {
		in := &Instance{sup: s, spec: Spec{Name: name}, state: Ready, hasSlot: true, slotAt: time.Now(),
			stopCh: make(chan struct{}), done: make(chan struct{}), slot: make(chan struct{})}
		close(in.done) // no process: stopping it ends at once
		return in
	}
	a, b := idle("a"), idle("b")
	waiter := &Instance{sup: s, spec: Spec{Name: "c"}, state: Waiting, slot: make(chan struct{})}
	s.mu.Lock()
	s.instances = map[string]*Instance{"a": a, "b": b, "c": waiter}
	s.slots, s.waiting = 2, []*Instance{waiter}
	s.evictLocked()
	s.evictLocked() // a second look before the first victim's slot is handed on
	stopped := 0
	for _, in := range []*Instance{a, b} {
		if in.Stopping() {
			stopped++
		}
	}
	s.mu.Unlock()
	if stopped != 1 {
		t.Fatalf("%d instances stopped for one waiter, want 1", stopped)
	}
}

// The memory side of the policy, case by case: whether one more instance
// may start beside the running ones.
func TestTheMemoryPolicy(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	cases := []struct {
		name                    string
		running                 int
		held, available, budget int64
		want                    bool
	}{
		{"the first instance always starts", 0, 0, 1, 1, true},
		{"no budget, plenty available", 3, 1200 * mib, 8000 * mib, 0, true},
		{"within the budget", 2, 1000 * mib, 8000 * mib, 2000 * mib, true},
		{"past the budget by the running ones' average", 2, 1600 * mib, 8000 * mib, 2000 * mib, false},
		{"a new one is expected to hold at least MinInstanceMemory", 2, 200 * mib, 8000 * mib, 700 * mib, false},
		{"the machine is short", 1, 400 * mib, 300 * mib, 0, false},
		{"available unknown: the budget alone", 1, 400 * mib, 0, 0, true},
	}
	for _, c := range cases {
		if got := memoryRoom(c.running, c.held, c.available, c.budget); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A machine short of memory lowers the effective cap: under MaxRunning,
// a second instance waits for a slot, with the reason, until memory is
// available again.
func TestShortMemoryLowersTheCap(t *testing.T) {
	t.Parallel()
	s, err := New("/nonexistent/opencode", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	available := int64(100 << 20)
	s.Available = func() int64 { mu.Lock(); defer mu.Unlock(); return available }
	s.MaxRunning = 8
	st := &states{ch: make(chan string, 64)}
	var why error
	s.OnState = func(name string, state State, pid int, err error) {
		if name == "b" && state == Waiting {
			mu.Lock()
			why = err
			mu.Unlock()
		}
		st.on(name, state, pid, err)
	}
	t.Cleanup(func() { s.Close() })
	spec := func(n string) Spec {
		return Spec{Name: n, Dir: t.TempDir(), Config: testenv.Config("http://127.0.0.1:9/v1", "")}
	}
	if _, err := s.Ensure(spec("a")); err != nil {
		t.Fatal(err)
	}
	b, err := s.Ensure(spec("b"))
	if err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, "b:waiting")
	mu.Lock()
	if why == nil || !strings.Contains(why.Error(), "memory is short") {
		t.Errorf("b waits for %v, want the memory named", why)
	}
	mu.Unlock()
	if p := s.Position("b"); p != 1 {
		t.Errorf("b is %d in line, want 1", p)
	}
	s.mu.Lock()
	looks := s.recheck != nil
	s.mu.Unlock()
	if !looks {
		t.Error("no second look is planned for a start that waits for memory")
	}
	mu.Lock()
	available = 8 << 30
	mu.Unlock()
	s.mu.Lock()
	s.admitLocked() // what the second look does
	s.mu.Unlock()
	select {
	case <-b.slot:
	case <-time.After(10 * time.Second):
		t.Fatal("b got no slot once memory was available")
	}
}
