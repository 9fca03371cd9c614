package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// A schedule's slots run as turns of the real opencode, each marked with
// its schedule; a bad schedule is refused and creates nothing; a daemon
// killed and restarted fires no slot twice, and of the slots it missed
// only the last runs;
// run sends now; rm removes; each change is audited.
func TestAScheduleRunsEachSlotOnce(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 4*time.Minute)
	d := startIn(t, "", nil, "--schedule-floor", "1s")
	d.agent(ctx, "cron", "")
	base := d.addr + "/v1/agents/cron/schedules"

	// Refused, each with a 4xx, and nothing is created.
	for body, want := range map[string]int{
		`{"cron":"61 * * * *","message":"x"}`:                    422,
		`{"cron":"0 9 * * *","tz":"Mars/Olympus","message":"x"}`: 422,
		`{"every":"500ms","message":"x"}`:                        422, // under the floor
		`{"every":"2s"}`:                                         422,
		`{"every":"2s","cron":"* * * * *","message":"x"}`:        422,
		`{"every":"2s","message":"x","missed":"sometimes"}`:      422,
		`{"every":"2s","message":"x","root":true}`:               400,
	} {
		if code, b := request(t, "POST", base, d.c.Token, body); code != want {
			t.Errorf("%s: %d %s, want %d", body, code, b, want)
		}
	}
	if code, _ := request(t, "POST", d.addr+"/v1/agents/nobody/schedules", d.c.Token, `{"every":"2s","message":"x"}`); code != http.StatusNotFound {
		t.Errorf("a schedule of no agent: %d", code)
	}
	if ss, err := d.c.Schedules(ctx, "cron"); err != nil || len(ss) != 0 {
		t.Fatalf("after the refusals: %+v %v", ss, err)
	}

	// A cron schedule in a zone shows its next three slots.
	daily, err := d.c.CreateSchedule(ctx, "cron", client.ScheduleRequest{Cron: "0 9 * * *", TZ: "Europe/Paris", Message: "good morning"})
	if err != nil || len(daily.Next) != 3 || daily.Next[0].In(mustZone(t, "Europe/Paris")).Hour() != 9 || daily.Missed != "once" || daily.Overlap != "skip" {
		t.Fatalf("daily: %+v %v", daily, err)
	}

	// Every 2 s: its slots run as turns, marked with it.
	sc, err := d.c.CreateSchedule(ctx, "cron", client.ScheduleRequest{Every: "2s", Message: "scheduled hello"})
	if err != nil {
		t.Fatal(err)
	}
	accepted := func() []client.Event {
		evs, _ := d.c.Events(ctx, "cron", 0, 0, "input.accepted")
		return slices.DeleteFunc(evs, func(e client.Event) bool { return e.Field("schedule") != sc.ID })
	}
	finals := func() int {
		evs, _ := d.c.Events(ctx, "cron", 0, 0, "turn.started", "final")
		n := 0
		for i, e := range evs {
			if string(e.Kind) == "final" && i > 0 && evs[i-1].Field("schedule") == sc.ID {
				n++
			}
		}
		return n
	}
	waitFor(t, ctx, func() bool { return finals() >= 2 }) // a slot while a run goes on is skipped

	// A crash (kill -9) and a restart: no slot fires twice, and of the
	// slots missed while the daemon was down only the last runs (missed:
	// once). The downtime is the scenario itself: 5 s, two slots or more.
	before := len(accepted())
	d.kill()
	down := time.Now()
	time.Sleep(5 * time.Second)
	up := time.Now()
	d = startIn(t, d.home, nil, "--schedule-floor", "1s")
	waitFor(t, ctx, func() bool { return len(accepted()) >= before+2 })
	keys := map[string]bool{}
	var after []time.Time // the slots fired since the crash
	for _, e := range accepted() {
		id := e.Field("id")
		if keys[id] {
			t.Fatalf("slot %s fired twice", id)
		}
		keys[id] = true
		ms, err := strconv.ParseInt(id[strings.LastIndexByte(id, ':')+1:], 10, 64)
		if err != nil {
			t.Fatalf("a slot's input id %q", id)
		}
		if slot := time.UnixMilli(ms); slot.After(down) {
			after = append(after, slot)
		}
	}
	if len(after) < 2 {
		t.Fatalf("slots fired since the crash: %v", after)
	}
	for _, slot := range after {
		if slot.Before(up.Add(-2 * time.Second)) {
			t.Fatalf("slot %s, missed while down (%s to %s) and not the last, ran", slot, down, up)
		}
	}
	if ss, _ := d.c.Schedules(ctx, "cron"); len(ss) != 2 {
		t.Fatalf("schedules after the restart: %+v", ss)
	}

	// The CLI lists them with their next slots; run sends now; rm removes.
	out, _, code := d.run("schedule", "list", "cron")
	if code != 0 || !strings.Contains(out, sc.ID) || !strings.Contains(out, "every 2s") || strings.Count(out, "next ") != 6 {
		t.Fatalf("schedule list (exit %d):\n%s", code, out)
	}
	acc, err := d.c.RunSchedule(ctx, "cron", daily.ID)
	if err != nil || acc.State != "queued" && acc.State != "running" {
		t.Fatalf("run: %+v %v", acc, err)
	}
	if out, _, code := d.run("schedule", "rm", "cron", sc.ID); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("schedule rm (exit %d): %s", code, out)
	}
	if err := d.c.DeleteSchedule(ctx, "cron", sc.ID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a second rm: %v", err)
	}
	audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "schedule.create"})
	if err != nil || len(audit) < 2 || audit[len(audit)-1].Outcome != "ok" || audit[len(audit)-1].Actor != "operator (api)" {
		t.Fatalf("audit: %+v %v", audit, err)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
