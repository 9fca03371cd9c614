package schedule_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/schedule"
)

func TestCompileRefusesWhatCannotBe(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		cron, tz string
		every    time.Duration
		want     string
	}{
		{"", "", 0, "exactly one"},
		{"* * * * *", "", time.Hour, "exactly one"},
		{"61 * * * *", "", 0, "cron"},
		{"not cron", "", 0, "cron"},
		{"0 9 * * *", "Mars/Olympus", 0, "not a known time zone"},
		{"* * * * *", "", 0, "more often than the floor"}, // every minute, floor 2 minutes
		{"", "", 30 * time.Second, "more often than the floor"},
		{"", "UTC", time.Hour, "tz: goes with cron"},
		{"CRON_TZ=UTC 0 9 * * *", "", 0, "give the zone in tz"},
		{"0 0 30 2 *", "", 0, "never fires"},
	} {
		_, err := schedule.Compile(c.cron, c.tz, c.every, t0, 2*time.Minute)
		if !errors.Is(err, schedule.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q %s: %v, want %q", c.cron, c.tz, c.every, err, c.want)
		}
	}
}

func TestSlotsFollowTheZone(t *testing.T) {
	t0 := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC) // Paris moves to summer time on the 29th
	tm, err := schedule.Compile("0 9 * * *", "Europe/Paris", 0, t0, schedule.DefaultFloor)
	if err != nil {
		t.Fatal(err)
	}
	got := tm.Slots(t0, 3)
	want := []time.Time{time.Date(2026, 3, 28, 8, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 7, 0, 0, 0, time.UTC), time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC)}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("slots %v, want %v", got, want)
		}
	}
	every, _ := schedule.Compile("", "", 90*time.Second, t0, schedule.DefaultFloor)
	if s := every.Slots(t0.Add(100*time.Second), 2); !s[0].Equal(t0.Add(180*time.Second)) || !s[1].Equal(t0.Add(270*time.Second)) {
		t.Fatalf("every: %v", s)
	}
}

// fixture is a store with agent a and a schedule every minute from t0,
// and two schedulers on it (as two daemons would be) with a clock of the
// test's.
type fixture struct {
	log    *eventlog.Log
	now    time.Time
	s1, s2 *schedule.Scheduler
	woken  []string
}

func newFixture(t *testing.T, t0 time.Time, missed, overlap string) *fixture {
	t.Helper()
	ctx := context.Background()
	l, err := eventlog.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}})
	if _, err := l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateSchedule(ctx, eventlog.Schedule{ID: "sch_1", Agent: "a", Every: time.Minute, Message: "tick", Missed: missed, Overlap: overlap,
		CreatedBy: "operator (api)", Created: t0, LastSlot: t0}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{log: l, now: t0}
	clock := func() time.Time { return f.now }
	woke := func(a string) { f.woken = append(f.woken, a) }
	f.s1 = &schedule.Scheduler{Store: l, Now: clock, Queued: woke}
	f.s2 = &schedule.Scheduler{Store: l, Now: clock, Queued: woke}
	return f
}

func (f *fixture) inputs(t *testing.T) []eventlog.Input {
	t.Helper()
	var all []eventlog.Input
	for _, st := range []string{"queued", "running", "done"} {
		ins, err := f.log.Inputs(context.Background(), "a", st)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ins...)
	}
	return all
}

// A slot fires once, whichever scheduler sees it and however often; a
// clock stepped back fires nothing again.
func TestASlotFiresOnce(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f := newFixture(t, t0, schedule.MissedOnce, schedule.OverlapQueue)
	if next := f.s1.Tick(ctx); !next.Equal(t0.Add(time.Minute)) || len(f.inputs(t)) != 0 {
		t.Fatalf("before the slot: next %v, inputs %v", next, f.inputs(t))
	}
	f.now = t0.Add(time.Minute + time.Second)
	f.s1.Tick(ctx)
	f.s2.Tick(ctx)
	f.s1.Tick(ctx)
	ins := f.inputs(t)
	if len(ins) != 1 || ins[0].Schedule != "sch_1" || ins[0].ClientID != schedule.SlotKey("sch_1", t0.Add(time.Minute)) || len(f.woken) != 1 {
		t.Fatalf("inputs %+v, woken %v", ins, f.woken)
	}
	f.now = t0.Add(30 * time.Second) // the clock steps back
	f.s2.Tick(ctx)
	if len(f.inputs(t)) != 1 {
		t.Fatal("a slot fired again after the clock stepped back")
	}
}

// Slots missed while no scheduler ran: once runs the last of them, late,
// once; skip passes them all over.
func TestMissedSlotsFollowTheRule(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	once := newFixture(t, t0, schedule.MissedOnce, schedule.OverlapQueue)
	once.now = t0.Add(10*time.Minute + 5*time.Second)
	once.s1.Tick(ctx)
	once.s2.Tick(ctx)
	if ins := once.inputs(t); len(ins) != 1 || ins[0].ClientID != schedule.SlotKey("sch_1", t0.Add(10*time.Minute)) {
		t.Fatalf("once: %+v", ins)
	}
	skip := newFixture(t, t0, schedule.MissedSkip, schedule.OverlapQueue)
	skip.now = t0.Add(10*time.Minute + 5*time.Second)
	if next := skip.s1.Tick(ctx); !next.Equal(t0.Add(11*time.Minute)) || len(skip.inputs(t)) != 0 {
		t.Fatalf("skip: next %v, inputs %+v", next, skip.inputs(t))
	}
	skip.now = t0.Add(11*time.Minute + time.Second) // the next slot, on time
	skip.s1.Tick(ctx)
	if ins := skip.inputs(t); len(ins) != 1 {
		t.Fatalf("skip, then on time: %+v", ins)
	}
}

// A slot whose previous run still goes: skip passes it over, queue
// queues it.
func TestOverlapFollowsTheRule(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for rule, want := range map[string]int{schedule.OverlapSkip: 1, schedule.OverlapQueue: 2} {
		f := newFixture(t, t0, schedule.MissedOnce, rule)
		f.now = t0.Add(time.Minute + time.Second)
		f.s1.Tick(ctx)
		f.now = t0.Add(2*time.Minute + time.Second) // the first is still queued
		f.s1.Tick(ctx)
		if n := len(f.inputs(t)); n != want {
			t.Errorf("%s: %d inputs, want %d", rule, n, want)
		}
	}
}
