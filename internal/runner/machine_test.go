package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/runner/runnertest"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// The turn machine, row by row, on the in-process opencode of runnertest
// and a real event log: each row is one behaviour a person notices, and
// each guard in the runner fails a named row when it is taken out. The
// same behaviours run against the real opencode in the e2e suite.
func TestTurnMachine(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name string
		run  func(t *testing.T, m *machine)
	}{
		{"submit: a message is one turn, recorded before opencode hears it", func(t *testing.T, m *machine) {
			in := m.submit("hello")
			evs := m.turnOf(in)
			want := []event.Kind{event.TurnStarted, event.Status, event.Reasoning, event.Delta, event.Usage, event.Final}
			if got := kinds(evs); !subsequence(want, got) {
				t.Fatalf("turn's events %v, want %v in order", got, want)
			}
			if f := data[event.FinalData](t, evs[len(evs)-1]); f.Text != "Hello from the fake LLM!" {
				t.Fatalf("final %q", f.Text)
			}
			ps := m.oc().Prompts()
			if len(ps) != 1 || ps[0].Text != "hello" || ps[0].Model != "p/m" || ps[0].Session != evs[0].Session {
				t.Fatalf("prompts %+v", ps)
			}
		}},
		{"queue: inputs wait for the running turn and run in order, one turn each", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "01-text-turn").HoldBeforeEnd())
			first := m.submit("one")
			started := m.waitKind(first, event.Delta)
			second, third := m.submit("two"), m.submit("three")
			if n := len(m.oc().Prompts()); n != 1 {
				t.Fatalf("%d prompts while the first turn runs, want 1", n)
			}
			m.oc().Release(started.Session)
			var prev event.Event
			for i, in := range []eventlog.Input{first, second, third} {
				evs := m.turnOf(in)
				if evs[len(evs)-1].Kind != event.Final {
					t.Fatalf("turn %d ended %s", i, evs[len(evs)-1].Kind)
				}
				if i > 0 && evs[0].Seq < prev.Seq {
					t.Fatalf("turn %d started before turn %d ended", i, i-1)
				}
				prev = evs[len(evs)-1]
			}
			if got := texts(m.oc().Prompts()); got != "one,two,three" {
				t.Fatalf("prompts %s", got)
			}
		}},
		{"prompt refused: the turn ends with one error", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Script{Refuse: true})
			in := m.submit("refused")
			if e := m.terminal(in); data[event.ErrorData](t, e).Code != event.CodeOpencode {
				t.Fatalf("ended %s", e.Data)
			}
			m.terminal(m.submit("then this"))
			if n := m.countTurn(in, event.Error) + m.countTurn(in, event.Final); n != 1 {
				t.Fatalf("%d terminal events in the refused turn, want 1", n)
			}
		}},
		{"steer: a steer joins the running turn instead of waiting", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "01-text-turn").HoldBeforeEnd())
			first := m.submit("one")
			started := m.waitKind(first, event.Delta)
			m.submitMode("and also this", "steer")
			steered := m.waitKind(first, event.InputSteered)
			if d := data[event.InputData](t, steered); d.Text != "and also this" {
				t.Fatalf("steered %+v", d)
			}
			// Recorded first, then sent: the steer reaches the running turn.
			m.waitUntil(func() bool { return len(m.oc().Prompts()) == 2 })
			if got := texts(m.oc().Prompts()); got != "one,and also this" {
				t.Fatalf("prompts %s", got)
			}
			m.oc().Release(started.Session)
			m.waitKind(first, event.Final)
			if n := m.count(event.TurnStarted); n != 1 {
				t.Fatalf("%d turns, want 1", n)
			}
		}},
		{"abort: the turn ends aborted and the next input runs", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "04-abort"))
			first := m.submit("long")
			m.waitKind(first, event.Delta)
			next := m.submit("after")
			turn, err := m.m.Abort(m.ctx, "a")
			if err != nil || turn != m.started(first).Turn {
				t.Fatalf("abort: %q %v", turn, err)
			}
			if e := m.terminal(first); e.Kind != event.Error || data[event.ErrorData](t, e).Code != event.CodeAborted {
				t.Fatalf("aborted turn ended %s %s", e.Kind, e.Data)
			}
			if e := m.terminal(next); e.Kind != event.Final {
				t.Fatalf("the next turn ended %s", e.Kind)
			}
			if _, err := m.m.Abort(m.ctx, "a"); !errors.Is(err, runner.ErrIdle) {
				t.Fatalf("abort while idle: %v", err)
			}
		}},
		{"abort unanswered: opencode is restarted and the turn ends aborted", func(t *testing.T, m *machine) {
			s := runnertest.Capture(t, "04-abort")
			s.IgnoreAbort = true
			m.oc().Next(s)
			first := m.submit("long")
			m.waitKind(first, event.Delta)
			if _, err := m.m.Abort(m.ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if e := m.terminal(first); data[event.ErrorData](t, e).Code != event.CodeAborted {
				t.Fatalf("ended %s", e.Data)
			}
			if n := len(m.inst.Starts("a")); n != 1 {
				t.Fatalf("%d starts before the next turn", n)
			}
			m.terminal(m.submit("after"))
			if n := len(m.inst.Starts("a")); n != 2 {
				t.Fatalf("%d starts, want 2: the unanswered abort restarts opencode", n)
			}
		}},
		{"crash mid-turn: one interrupted error, its approval expires, the next turn runs", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "08-permission-once"))
			first := m.submit("run it")
			asked := m.waitKind(first, event.PermissionAsked)
			m.inst.Crash("a")
			if e := m.terminal(first); e.Kind != event.Error || data[event.ErrorData](t, e).Code != event.CodeInterrupted {
				t.Fatalf("crashed turn ended %s %s", e.Kind, e.Data)
			}
			if n := m.countTurn(first, event.Final) + m.countTurn(first, event.Error); n != 1 {
				t.Fatalf("%d terminal events", n)
			}
			id := data[event.PermissionAskedData](t, asked).Approval
			ap, err := m.log.Approval(m.ctx, id)
			if err != nil || ap.State != api.ApprovalExpired {
				t.Fatalf("approval after the crash: %+v %v", ap, err)
			}
			if e := m.terminal(m.submit("again")); e.Kind != event.Final {
				t.Fatalf("next turn %s", e.Kind)
			}
		}},
		{"attached TUI turn: recorded as a turn of its own; input waits for it", func(t *testing.T, m *machine) {
			m.terminal(m.submit("pin the session"))
			att, err := m.m.Attach(m.ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			m.oc().Next(runnertest.Capture(t, "01-text-turn").HoldBeforeEnd())
			c := m.oc().Client()
			if err := c.PromptAsync(m.ctx, att.Session, promptOf("from the TUI")); err != nil {
				t.Fatal(err)
			}
			start := m.waitFor(func(e event.Event) bool {
				return e.Kind == event.TurnStarted && data[event.InputData](t, e).Mode == "attached"
			})
			m.waitFor(func(e event.Event) bool { return e.Turn == start.Turn && e.Kind == event.Delta })
			queued := m.submit("after the TUI")
			if n := len(m.oc().Prompts()); n != 2 {
				t.Fatalf("%d prompts while the TUI's turn runs, want 2", n)
			}
			// The TUI's end is held on its way to the log, until a turn
			// starts or, as it must be, half a second passes: the next
			// turn starts only after that end is in the log.
			overtaken := make(chan struct{})
			var once sync.Once
			seen := func(evs []event.Event) {
				for _, e := range evs {
					if e.Kind == event.TurnStarted {
						once.Do(func() { close(overtaken) })
					}
				}
			}
			hold := func(evs []event.Event) {
				for _, e := range evs {
					if e.Turn == start.Turn && e.Kind.Terminal() {
						select {
						case <-overtaken:
						case <-time.After(500 * time.Millisecond):
						}
					}
				}
			}
			m.store.appended.Store(&seen)
			m.store.hold.Store(&hold)
			m.oc().Release(att.Session)
			end := m.waitFor(func(e event.Event) bool { return e.Turn == start.Turn && e.Kind.Terminal() })
			if end.Kind != event.Final {
				t.Fatalf("the TUI's turn ended %s", end.Kind)
			}
			if e := m.started(queued); e.Seq < end.Seq {
				t.Fatalf("the queued input's turn started at %d, before the TUI's turn ended at %d", e.Seq, end.Seq)
			}
			if e := m.terminal(queued); e.Kind != event.Final {
				t.Fatalf("queued input's turn: %s", e.Kind)
			}
		}},
		{"approval echo: an answer is recorded once, with who gave it", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "08-permission-once"))
			first := m.submit("run it")
			asked := m.waitKind(first, event.PermissionAsked)
			id := data[event.PermissionAskedData](t, asked).Approval
			ap, err := m.m.Reply(m.ctx, id, "once", "", "alice")
			if err != nil || ap.State != "once" {
				t.Fatalf("reply: %+v %v", ap, err)
			}
			m.terminal(first)
			if r := m.oc().Replies(); len(r) != 1 || r[0].Reply != "once" {
				t.Fatalf("opencode heard %+v", r)
			}
			var resolved []event.PermissionResolvedData
			for _, e := range m.all() {
				if e.Kind == event.PermissionResolved {
					resolved = append(resolved, data[event.PermissionResolvedData](t, e))
				}
			}
			if len(resolved) != 1 || resolved[0].By != "alice" {
				t.Fatalf("resolutions %+v, want one by alice", resolved)
			}
			if _, err := m.m.Reply(m.ctx, id, "once", "", "alice"); !errors.Is(err, eventlog.ErrConflict) {
				t.Fatalf("a second answer: %v", err)
			}
		}},
		{"model switch: a model opencode switched to is reported once, after its commit", func(t *testing.T, m *machine) {
			s := runnertest.Capture(t, "01-text-turn")
			s.Model = "p/m2"
			m.oc().Next(s)
			in := m.submit("hello")
			m.terminal(in)
			sw := m.waitKind(in, event.ModelSwitched)
			if d := data[event.ModelSwitchedData](t, sw); d.From != "p/m" || d.To != "p/m2" {
				t.Fatalf("switched %+v", d)
			}
			select {
			case got := <-m.switches:
				if got != [2]string{"p/m", "p/m2"} {
					t.Fatalf("told of %v", got)
				}
			case <-m.ctx.Done():
				t.Fatal("the switch was not passed on")
			}
		}},
		{"commit failure: nothing reaches opencode unrecorded; the turn runs once the log takes writes", func(t *testing.T, m *machine) {
			m.store.fail.Store(true)
			in, _, err := m.m.Submit(m.ctx, "a", runner.Submission{Text: "wait for the log"})
			if err != nil {
				t.Fatal(err)
			}
			m.waitUntil(func() bool { return m.m.Problem() != "" })
			if n := len(m.oc().Prompts()); n != 0 {
				t.Fatalf("%d prompts sent while the turn's start could not be recorded", n)
			}
			m.store.fail.Store(false)
			if e := m.terminal(in); e.Kind != event.Final {
				t.Fatalf("ended %s", e.Kind)
			}
			if n := len(m.oc().Prompts()); n != 1 {
				t.Fatalf("%d prompts, want 1", n)
			}
			m.waitUntil(func() bool { return m.m.Problem() == "" })
		}},
		{"recycle: an instance over its recycle_mb is restarted between two turns, never in one", func(t *testing.T, m *machine) {
			a, err := m.log.Agent(m.ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			a.Limits = &agent.Limits{RecycleMB: 100}
			if _, err := m.log.UpdateAgent(m.ctx, a); err != nil {
				t.Fatal(err)
			}
			m.inst.Memory("a", 200<<20)
			m.oc().Next(runnertest.Capture(t, "01-text-turn").HoldBeforeEnd())
			first := m.submit("one")
			started := m.waitKind(first, event.Delta)
			second := m.submit("two")
			if n := m.count(event.Instance); n != 0 || len(m.inst.Starts("a")) != 1 {
				t.Fatalf("%d instance events, %d starts during the turn", n, len(m.inst.Starts("a")))
			}
			m.oc().Release(started.Session)
			m.terminal(first)
			m.terminal(second)
			recycled := m.waitFor(func(e event.Event) bool { return e.Kind == event.Instance })
			if d := data[event.InstanceData](t, recycled); d.State != "recycled" || recycled.Turn != "" {
				t.Fatalf("instance event %+v of turn %q, want recycled between turns", d, recycled.Turn)
			}
			for _, in := range []eventlog.Input{first, second} {
				if s, e := m.started(in).Seq, m.terminal(in).Seq; recycled.Seq > s && recycled.Seq < e {
					t.Fatalf("recycled at seq %d, inside the turn of seqs %d-%d", recycled.Seq, s, e)
				}
			}
			if e := m.terminal(m.submit("three")); e.Kind != event.Final {
				t.Fatalf("the turn after the recycle ended %s", e.Kind)
			}
			if n := len(m.inst.Starts("a")); n < 2 {
				t.Fatalf("%d starts: the turn after the recycle must run on a new instance", n)
			}
		}},
		{"restart: a turn the daemon left running ends interrupted, its approval expires", func(t *testing.T, m *machine) {
			m.oc().Next(runnertest.Capture(t, "08-permission-once"))
			first := m.submit("run it")
			asked := m.waitKind(first, event.PermissionAsked)
			m.m.Close() // as a daemon killed mid-turn leaves it
			m2 := runner.New(runner.Config{Home: m.dir, Store: m.store, Instances: runnertest.NewInstances(t)})
			if err := m2.Start(m.ctx); err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			if e := m.terminal(first); data[event.ErrorData](t, e).Code != event.CodeInterrupted {
				t.Fatalf("ended %s", e.Data)
			}
			ap, _ := m.log.Approval(m.ctx, data[event.PermissionAskedData](t, asked).Approval)
			if ap.State != api.ApprovalExpired {
				t.Fatalf("approval %s", ap.State)
			}
		}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			row.run(t, newMachine(t))
		})
	}
}

// machine is one agent "a" on a Manager over runnertest's instances and a
// real event log, with every event it commits.
type machine struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	log      *eventlog.Log
	store    *failingStore
	inst     *runnertest.Instances
	m        *runner.Manager
	switches chan [2]string

	mu     sync.Mutex
	events []event.Event
	more   chan struct{} // closed and replaced on each event
}

func newMachine(t *testing.T, opts ...func(*runner.Config)) *machine {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "taosagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	if err := log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}, {ID: "m2"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := log.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m", "p/m2"}}); err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t, ctx: ctx, dir: dir, log: log, store: &failingStore{Log: log}, inst: runnertest.NewInstances(t),
		switches: make(chan [2]string, 4), more: make(chan struct{})}
	sub, err := log.Subscribe("a", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	go m.collect(sub)
	cfg := runner.Config{Home: dir, Store: m.store, Instances: m.inst, Keys: agent.Keys{Dir: filepath.Join(dir, "keys")},
		AbortWait: 300 * time.Millisecond, StartWait: 10 * time.Second,
		Hooks: runner.Hooks{OnModelSwitch: func(_, from, to string) { m.switches <- [2]string{from, to} }}}
	for _, o := range opts {
		o(&cfg)
	}
	m.m = runner.New(cfg)
	if err := m.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.m.Close)
	return m
}

func (m *machine) collect(sub eventlog.Subscription) {
	defer sub.Close()
	for {
		recs, err := sub.Next(m.ctx, 256)
		if err != nil {
			return
		}
		for _, r := range recs {
			var e event.Event
			if json.Unmarshal(r.Body, &e) != nil {
				continue
			}
			e.Seq = r.Seq
			m.mu.Lock()
			m.events = append(m.events, e)
			close(m.more)
			m.more = make(chan struct{})
			m.mu.Unlock()
		}
	}
}

func (m *machine) oc() *runnertest.Opencode { return m.inst.Opencode("a") }

func (m *machine) all() []event.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]event.Event(nil), m.events...)
}

// waitFor returns the first event that ok accepts, waiting for it.
func (m *machine) waitFor(ok func(event.Event) bool) event.Event {
	m.t.Helper()
	seen := 0
	for {
		m.mu.Lock()
		evs, more := m.events[seen:], m.more
		m.mu.Unlock()
		for _, e := range evs {
			if ok(e) {
				return e
			}
		}
		seen += len(evs)
		select {
		case <-more:
		case <-m.ctx.Done():
			m.t.Fatalf("no such event; have %v", kinds(m.all()))
		}
	}
}

// waitUntil waits for cond, checked on each event and each 10 ms (cond
// reads state that no event announces).
func (m *machine) waitUntil(cond func() bool) {
	m.t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-m.ctx.Done():
			m.t.Fatal("the condition never held")
		}
	}
}

func (m *machine) submit(text string) eventlog.Input { return m.submitMode(text, "") }

func (m *machine) submitMode(text, mode string) eventlog.Input {
	m.t.Helper()
	in, _, err := m.m.Submit(m.ctx, "a", runner.Submission{Text: text, Mode: mode})
	if err != nil {
		m.t.Fatal(err)
	}
	return in
}

func (m *machine) started(in eventlog.Input) event.Event {
	return m.waitFor(func(e event.Event) bool {
		if e.Kind != event.TurnStarted {
			return false
		}
		var d event.InputData
		json.Unmarshal(e.Data, &d)
		return d.Input == in.ID
	})
}

// waitKind waits for an event of kind in in's turn.
func (m *machine) waitKind(in eventlog.Input, kind event.Kind) event.Event {
	m.t.Helper()
	turn := m.started(in).Turn
	return m.waitFor(func(e event.Event) bool { return e.Turn == turn && e.Kind == kind })
}

// terminal waits for the end of in's turn.
func (m *machine) terminal(in eventlog.Input) event.Event {
	m.t.Helper()
	turn := m.started(in).Turn
	return m.waitFor(func(e event.Event) bool { return e.Turn == turn && e.Kind.Terminal() })
}

// turnOf is in's turn's events, once it has ended.
func (m *machine) turnOf(in eventlog.Input) []event.Event {
	m.t.Helper()
	end := m.terminal(in)
	var out []event.Event
	for _, e := range m.all() {
		if e.Turn == end.Turn {
			out = append(out, e)
		}
	}
	return out
}

func (m *machine) count(kind event.Kind) int {
	n := 0
	for _, e := range m.all() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (m *machine) countTurn(in eventlog.Input, kind event.Kind) int {
	turn, n := m.started(in).Turn, 0
	for _, e := range m.all() {
		if e.Turn == turn && e.Kind == kind {
			n++
		}
	}
	return n
}

// failingStore is the event log, refusing appends while fail is set (a
// full disk, a database that went read-only).
type failingStore struct {
	*eventlog.Log
	fail atomic.Bool
	// hold, if set, runs before an AppendAsync passes its events on, and
	// appended after an Append stored its events: a test holds one
	// commit back to see what overtakes it.
	hold, appended atomic.Pointer[func([]event.Event)]
}

var errDiskFull = errors.New("disk full")

func (s *failingStore) Append(ctx context.Context, evs ...event.Event) ([]event.Event, error) {
	if s.fail.Load() {
		return nil, errDiskFull
	}
	out, err := s.Log.Append(ctx, evs...)
	if f := s.appended.Load(); f != nil && err == nil {
		(*f)(out)
	}
	return out, err
}

func (s *failingStore) AppendAsync(evs []event.Event, then func([]event.Event, error)) {
	if s.fail.Load() {
		go then(nil, errDiskFull)
		return
	}
	if f := s.hold.Load(); f != nil {
		(*f)(evs)
	}
	s.Log.AppendAsync(evs, then)
}

func (s *failingStore) AddAndStart(ctx context.Context, in eventlog.Input, start func(eventlog.Input) event.Event) (eventlog.Input, bool, bool, error, error) {
	if s.fail.Load() {
		in, created, err := s.Log.AddInput(ctx, in)
		return in, created, false, errDiskFull, err
	}
	return s.Log.AddAndStart(ctx, in, start)
}

func data[T any](t *testing.T, e event.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s: %v", e.Kind, err)
	}
	return v
}

func kinds(evs []event.Event) []event.Kind {
	out := make([]event.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

// subsequence says whether want appears in got in order.
func subsequence(want, got []event.Kind) bool {
	i := 0
	for _, k := range got {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	return i == len(want)
}

func promptOf(text string) opencode.Prompt { return opencode.Prompt{Text: text} }

func texts(ps []runnertest.Prompt) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ","
		}
		s += p.Text
	}
	return s
}

// A turn waits in line for a slot as long as the line takes (it is served
// in order): StartWait bounds the start, from the slot on, not the line.
// (50 agents over a cap of 8 wait minutes in line; their turns failed
// with "opencode was not ready within 2m0s".)
func TestATurnWaitsInLineLongerThanAStart(t *testing.T) {
	t.Parallel()
	const startWait = 100 * time.Millisecond
	m := newMachine(t, func(c *runner.Config) { c.StartWait = startWait })
	admit := m.inst.Line("a")
	in := m.submit("hello")
	m.waitFor(func(e event.Event) bool {
		return e.Kind == event.Instance && strings.Contains(string(e.Data), `"waiting"`)
	})
	// An earlier process's stop, told late (a stop for the cap ends on
	// its own goroutine), does not take this one out of the line.
	m.inst.Report("a", supervisor.Stopped)
	time.Sleep(5 * startWait) // in line for longer than a start may take
	if n := m.count(event.Error); n != 0 {
		t.Fatalf("the turn failed while in line: %v", kinds(m.all()))
	}
	admit(true)
	if e := m.terminal(in); e.Kind != event.Final {
		t.Fatalf("after its wait in line the turn ended %s: %s", e.Kind, e.Data)
	}

	// Out of the line, the start is bounded as before.
	m.m.StopInstance("a")
	m.waitUntil(func() bool { _, running := m.inst.Get("a"); return !running })
	admit = m.inst.Line("a")
	in = m.submit("hello again")
	m.waitUntil(func() bool {
		n := 0
		for _, e := range m.all() {
			if e.Kind == event.Instance && strings.Contains(string(e.Data), `"waiting"`) {
				n++
			}
		}
		return n == 2
	})
	admit(false) // a slot, and then no ready instance
	if e := m.terminal(in); e.Kind != event.Error || !strings.Contains(string(e.Data), "not ready within") {
		t.Fatalf("a start that never ends: %s %s", e.Kind, e.Data)
	}
	// The instance stopped on purpose did not crash.
	for _, e := range m.all() {
		if e.Kind == event.Instance && strings.Contains(string(e.Data), `"crashed"`) {
			t.Errorf("an instance stopped on purpose reported as crashed: %s", e.Data)
		}
	}
}
