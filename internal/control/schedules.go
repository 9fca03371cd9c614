package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/schedule"
)

// scheduleView is s as the API shows it.
func scheduleView(s eventlog.Schedule, now time.Time) api.Schedule {
	v := api.Schedule{ID: s.ID, Agent: s.Agent, Cron: s.Cron, TZ: s.TZ, Message: s.Message, Conversation: s.Conversation, Missed: s.Missed,
		Overlap: s.Overlap, CreatedBy: s.CreatedBy, Created: s.Created, LastSlot: s.LastSlot, LastInput: s.LastInput, Next: []time.Time{}}
	if s.Every > 0 {
		v.Every = s.Every.String()
	}
	if t, err := schedule.Of(s); err == nil {
		v.Next = append(v.Next, t.Slots(later(now, s.LastSlot), 3)...)
	}
	return v
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// CreateSchedule gives agent name a schedule. A bad one is refused
// (Invalidf) and creates nothing.
func (s *Service) CreateSchedule(ctx context.Context, a Actor, name string, r api.ScheduleRequest) (api.Schedule, error) {
	c := Call{Actor: a, Tool: "schedule.create", Target: name, Args: map[string]string{"agent": name, "cron": r.Cron, "tz": r.TZ, "every": r.Every,
		"message": r.Message, "conversation": r.Conversation, "missed": r.Missed, "overlap": r.Overlap}}
	now := time.Now().UTC().Truncate(time.Millisecond)
	sc := eventlog.Schedule{ID: randid.ID("sch"), Agent: name, Cron: r.Cron, TZ: r.TZ, Message: r.Message, Conversation: r.Conversation,
		Missed: r.Missed, Overlap: r.Overlap, CreatedBy: a.String(), Created: now, LastSlot: now}
	if err := s.checkSchedule(ctx, name, r, &sc); err != nil {
		return api.Schedule{}, s.Refuse(ctx, c, err)
	}
	err := s.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := s.Log.CreateSchedule(ctx, sc); err != nil {
			return "", err
		}
		if s.Scheduler != nil {
			s.Scheduler.Wake()
		}
		return "", nil
	})
	if err != nil {
		return api.Schedule{}, err
	}
	return scheduleView(sc, now), nil
}

// checkSchedule checks r and completes sc from it.
func (s *Service) checkSchedule(ctx context.Context, name string, r api.ScheduleRequest, sc *eventlog.Schedule) error {
	if _, err := s.Log.Agent(ctx, name); err != nil {
		return err
	}
	switch {
	case r.Message == "":
		return Invalidf("message: give the message each run sends")
	case len(r.Message) > MaxText:
		return Invalidf("message: longer than %d bytes", MaxText)
	}
	if sc.Missed == "" {
		sc.Missed = schedule.MissedOnce
	}
	if sc.Overlap == "" {
		sc.Overlap = schedule.OverlapSkip
	}
	if sc.Missed != schedule.MissedOnce && sc.Missed != schedule.MissedSkip {
		return Invalidf("missed: %q: want once or skip", sc.Missed)
	}
	if sc.Overlap != schedule.OverlapSkip && sc.Overlap != schedule.OverlapQueue {
		return Invalidf("overlap: %q: want skip or queue", sc.Overlap)
	}
	if r.Every != "" {
		d, err := time.ParseDuration(r.Every)
		if err != nil || d <= 0 {
			return Invalidf("every: %q is not a duration (90s, 15m, 24h)", r.Every)
		}
		sc.Every = d.Truncate(time.Millisecond)
	}
	floor := s.ScheduleFloor
	if floor <= 0 {
		floor = schedule.DefaultFloor
	}
	if _, err := schedule.Compile(sc.Cron, sc.TZ, sc.Every, sc.Created, floor); err != nil {
		return Invalidf("%v", err)
	}
	if r.Conversation != "" {
		cs, err := s.Log.Conversations(ctx, name)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(cs, func(c eventlog.Conversation) bool { return c.ID == r.Conversation }) {
			return Invalidf("conversation: agent %s has no conversation %q", name, r.Conversation)
		}
	}
	return nil
}

// Schedules lists agent name's schedules, each with its next three slots.
func (s *Service) Schedules(ctx context.Context, name string) ([]api.Schedule, error) {
	if _, err := s.Log.Agent(ctx, name); err != nil {
		return nil, err
	}
	ss, err := s.Log.Schedules(ctx, name)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []api.Schedule{}
	for _, sc := range ss {
		out = append(out, scheduleView(sc, now))
	}
	return out, nil
}

// DeleteSchedule removes agent name's schedule id; what it sent stays.
func (s *Service) DeleteSchedule(ctx context.Context, a Actor, name, id string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "schedule.delete", Target: name + " " + id, Args: map[string]string{"agent": name, "schedule": id}},
		func(ctx context.Context) (string, error) { return "", s.Log.DeleteSchedule(ctx, name, id) })
}

// RunSchedule sends schedule id's message now, outside its slots: an
// input marked with the schedule, queued like any other.
func (s *Service) RunSchedule(ctx context.Context, a Actor, name, id string) (eventlog.Input, error) {
	var in eventlog.Input
	err := s.Do(ctx, Call{Actor: a, Tool: "schedule.run", Target: name + " " + id, Args: map[string]string{"agent": name, "schedule": id}},
		func(ctx context.Context) (string, error) {
			ss, err := s.Log.Schedules(ctx, name)
			if err != nil {
				return "", err
			}
			i := slices.IndexFunc(ss, func(sc eventlog.Schedule) bool { return sc.ID == id })
			if i < 0 {
				return "", fmt.Errorf("schedule %s of agent %s: %w", id, name, eventlog.ErrNotFound)
			}
			sc := ss[i]
			in, _, err = s.Log.AddInput(ctx, eventlog.Input{Agent: name, ClientID: "schedule:" + id + ":run:" + randid.Hex(6), Text: sc.Message,
				Mode: api.ModeQueue, Conversation: sc.Conversation, Schedule: id})
			if err == nil {
				s.Runner.Queued(name)
			}
			return "", err
		})
	return in, err
}
