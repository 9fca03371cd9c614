// Package schedule fires agents' schedules: a cron expression in a time
// zone (robfig/cron's parser) or an interval, each slot at most once. The
// state is the store's (eventlog.Schedules): a slot's input is committed
// with the record that the slot fired, keyed by (schedule, slot), so a
// restart, a clock step or a second writer never fires a slot twice; a slot
// that passed while nothing fired it (the daemon down) follows the
// schedule's missed-slot rule.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // a zone is found on a host without its database

	"github.com/robfig/cron/v3"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// The rules of a schedule.
const (
	MissedOnce   = "once"  // a missed slot runs once, late
	MissedSkip   = "skip"  // missed slots are passed over
	OverlapSkip  = "skip"  // a slot whose previous run still goes is passed over
	OverlapQueue = "queue" // it is queued behind it
)

// DefaultFloor is the shortest time between two slots a schedule may have.
const DefaultFloor = time.Minute

// ErrInvalid: a schedule that cannot be.
var ErrInvalid = errors.New("invalid schedule")

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Timing is when a schedule's slots are.
type Timing struct {
	cron   cron.Schedule
	loc    *time.Location
	every  time.Duration
	anchor time.Time
}

// Compile checks a schedule's timing: exactly one of a cron expression
// (five fields or a descriptor such as @daily, in tz, default UTC) or an
// interval (slots every every from anchor), never two slots closer than
// floor.
func Compile(expr, tz string, every time.Duration, anchor time.Time, floor time.Duration) (Timing, error) {
	if (expr == "") == (every == 0) {
		return Timing{}, invalidf("give exactly one of cron or every")
	}
	if every != 0 {
		if tz != "" {
			return Timing{}, invalidf("tz: goes with cron, not with every")
		}
		if every < floor {
			return Timing{}, invalidf("every: %s is more often than the floor, %s", every, floor)
		}
		return Timing{every: every, anchor: anchor}, nil
	}
	if strings.HasPrefix(strings.TrimSpace(expr), "CRON_TZ=") || strings.HasPrefix(strings.TrimSpace(expr), "TZ=") || strings.HasPrefix(expr, "@every") {
		return Timing{}, invalidf("cron %q: give the zone in tz and an interval in every", expr)
	}
	c, err := parser.Parse(expr)
	if err != nil {
		return Timing{}, invalidf("cron %q: %v", expr, err)
	}
	loc := time.UTC
	if tz != "" {
		if loc, err = time.LoadLocation(tz); err != nil || tz == "Local" {
			return Timing{}, invalidf("tz: %q is not a known time zone", tz)
		}
	}
	t := Timing{cron: c, loc: loc}
	// The tightest gap over a year of slots (a cron expression's gaps
	// repeat within one), bounded.
	prev := t.Next(anchor)
	if prev.IsZero() {
		return Timing{}, invalidf("cron %q: it never fires", expr)
	}
	for i, end := 0, anchor.AddDate(1, 0, 0); i < 2000 && prev.Before(end); i++ {
		next := t.Next(prev)
		if next.IsZero() {
			break
		}
		if next.Sub(prev) < floor {
			return Timing{}, invalidf("cron %q: fires more often than the floor, %s", expr, floor)
		}
		prev = next
	}
	return t, nil
}

// Next is the first slot after t (zero: none).
func (t Timing) Next(after time.Time) time.Time {
	if t.every > 0 {
		if after.Before(t.anchor) {
			return t.anchor.Add(t.every)
		}
		n := after.Sub(t.anchor)/t.every + 1
		return t.anchor.Add(n * t.every)
	}
	return t.cron.Next(after.In(t.loc)).UTC()
}

// Slots lists the n slots after t.
func (t Timing) Slots(after time.Time, n int) []time.Time {
	var out []time.Time
	for range n {
		after = t.Next(after)
		if after.IsZero() {
			break
		}
		out = append(out, after)
	}
	return out
}

// Of compiles a stored schedule's timing (its floor was checked when it
// was made).
func Of(s eventlog.Schedule) (Timing, error) {
	return Compile(s.Cron, s.TZ, s.Every, s.Created, 0)
}

// Store is what the scheduler needs of the event log.
type Store interface {
	eventlog.Schedules
	AddInput(ctx context.Context, in eventlog.Input) (eventlog.Input, bool, error)
}

// Scheduler fires the stored schedules' slots. Set the fields, then Run.
type Scheduler struct {
	Store  Store
	Queued func(agent string) // told when an input was committed for agent
	Logger *slog.Logger
	Now    func() time.Time // default time.Now

	once sync.Once
	wake chan struct{}
}

func (s *Scheduler) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

// Wake makes the scheduler look again now (a schedule was added).
func (s *Scheduler) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run fires slots until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	s.init()
	for {
		next := s.Tick(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.Now()), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Tick fires what is due now and returns when the next slot is (zero:
// none).
func (s *Scheduler) Tick(ctx context.Context) time.Time {
	s.init()
	all, err := s.Store.Schedules(ctx, "")
	if err != nil {
		s.Logger.Error("schedules: cannot be read", "err", err)
		return s.Now().Add(time.Minute)
	}
	var soonest time.Time
	for _, sc := range all {
		next := s.tick(ctx, sc)
		if !next.IsZero() && (soonest.IsZero() || next.Before(soonest)) {
			soonest = next
		}
	}
	return soonest
}

// tick handles one schedule and returns its next slot.
func (s *Scheduler) tick(ctx context.Context, sc eventlog.Schedule) time.Time {
	t, err := Of(sc)
	if err != nil {
		s.Logger.Error("schedule: cannot be compiled", "schedule", sc.ID, "err", err)
		return time.Time{}
	}
	now := s.Now()
	var due []time.Time // the slots in (LastSlot, now], at most the last two
	n := 0
	for slot := t.Next(sc.LastSlot); !slot.IsZero() && !slot.After(now); slot = t.Next(slot) {
		n++
		if due = append(due, slot); len(due) > 2 {
			due = due[1:]
		}
		if n > 1_000_000 {
			break
		}
	}
	if n == 0 {
		return t.Next(sc.LastSlot)
	}
	last := due[len(due)-1]
	tolerance := min(time.Minute, t.Next(last).Sub(last)/2)
	onTime := n == 1 && now.Sub(last) <= tolerance
	switch {
	case onTime || sc.Missed == MissedOnce:
		s.fire(ctx, sc, last, !onTime)
	default:
		if err := s.Store.PassSlot(ctx, sc.ID, last); err != nil {
			s.Logger.Error("schedule: a missed slot cannot be passed over", "schedule", sc.ID, "err", err)
		} else {
			s.Logger.Info("schedule: missed slots passed over", "schedule", sc.ID, "agent", sc.Agent, "slots", n, "last", last)
		}
	}
	return t.Next(last)
}

// fire commits slot's input, or passes it over when its previous run still
// goes and the schedule skips.
func (s *Scheduler) fire(ctx context.Context, sc eventlog.Schedule, slot time.Time, late bool) {
	if sc.Overlap == OverlapSkip && sc.LastInput != 0 {
		if st, err := s.Store.InputState(ctx, sc.Agent, sc.LastInput); err == nil && (st == "queued" || st == "running") {
			s.Store.PassSlot(ctx, sc.ID, slot)
			s.Logger.Info("schedule: slot skipped, its previous run goes on", "schedule", sc.ID, "agent", sc.Agent, "slot", slot)
			return
		}
	}
	in := eventlog.Input{Agent: sc.Agent, ClientID: SlotKey(sc.ID, slot), Text: sc.Message, Mode: api.ModeQueue, Conversation: sc.Conversation, Schedule: sc.ID}
	in, fired, err := s.Store.FireSlot(ctx, sc.ID, slot, in)
	switch {
	case err != nil:
		s.Logger.Error("schedule: a slot cannot be fired", "schedule", sc.ID, "agent", sc.Agent, "slot", slot, "err", err)
	case fired:
		s.Logger.Info("schedule: fired", "schedule", sc.ID, "agent", sc.Agent, "slot", slot, "late", late, "input", in.ID)
		if s.Queued != nil {
			s.Queued(sc.Agent)
		}
	}
}

// SlotKey is the idempotency key of a schedule's slot: its input's id.
func SlotKey(id string, slot time.Time) string {
	return fmt.Sprintf("schedule:%s:%d", id, slot.UnixMilli())
}
