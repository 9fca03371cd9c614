// Package storetest is the event log's conformance suite: what every
// implementation of eventlog.Store does, whatever it stores in. The SQLite
// log runs it (eventlog's TestTheStoreContract); a second backend runs the
// same suite to be taken as one.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostid"
)

// Backend opens a store for test t: name "" is a new, empty store; a name
// used before in the same test opens that store again (after Close), with
// what it held. The store is closed when t ends.
type Backend func(t testing.TB, name string) eventlog.Store

// EventLog is the part of the contract the events' part of the suite
// needs: what a backend that holds only the events so far (the PostgreSQL
// log, issue 32) passes already.
type EventLog interface {
	Append(ctx context.Context, evs ...event.Event) ([]event.Event, error)
	Head() int64
	Floor() int64
	Subscribe(agent string, after int64, explicit bool, kinds ...event.Kind) (eventlog.Subscription, error)
	Scan(ctx context.Context, q eventlog.Query, fn func(eventlog.Record) error) error
	Prune(ctx context.Context, before, rawBefore time.Time) (int64, error)
	Close() error
}

// EventsBackend opens an EventLog as Backend opens a store.
type EventsBackend func(t testing.TB, name string) EventLog

// RunEvents runs the events' part of the suite against b.
func RunEvents(t *testing.T, b EventsBackend) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, EventsBackend)
	}{
		{"AppendAssignsIncreasingSeqAndSurvivesReopen", testAppendAssignsIncreasingSeqAndSurvivesReopen},
		{"SubscriberFromCursorThenLive", testSubscriberFromCursorThenLive},
		{"PruneGivesAResetToAnOldCursor", testPruneGivesAResetToAnOldCursor},
		{"CursorBeyondTheHeadIsReset", testCursorBeyondTheHeadIsReset},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, b)
		})
	}
}

// Run runs the suite against b, each part as a subtest.
func Run(t *testing.T, b Backend) {
	RunEvents(t, func(t testing.TB, name string) EventLog { return b(t, name) })
	for _, c := range []struct {
		name string
		run  func(*testing.T, Backend)
	}{
		{"ProjectionsFollowTheEvents", testProjectionsFollowTheEvents},
		{"QuestionsFollowTheEvents", testQuestionsFollowTheEvents},
		{"ConversationsAreTheSessionsOfTurns", testConversationsAreTheSessionsOfTurns},
		{"LastError", testLastError},
		{"AuditPagesBackFromTheNewest", testAuditPagesBackFromTheNewest},
		{"RecentTurnsStart", testRecentTurnsStart},
		{"FollowTurn", testFollowTurn},
		{"AddAndStart", testAddAndStart},
		{"AHostUIDIsAnAgentsForGood", testAHostUIDIsAnAgentsForGood},
		{"AnAgentsEgressIsStored", testAnAgentsEgressIsStored},
		{"ASlotFiresOnceWithItsInput", testASlotFiresOnceWithItsInput},
		{"ADeliveryStartsOneInput", testADeliveryStartsOneInput},
		{"ATaskEndsOnceWithOneResult", testATaskEndsOnceWithOneResult},
		{"ANotificationIsEnqueuedOncePerChannel", testANotificationIsEnqueuedOncePerChannel},
		{"TheCatalogKeysUsageAppsAndAuditKeepWhatTheyWereGiven", testTheCatalogKeysUsageAppsAndAuditKeepWhatTheyWereGiven},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, b)
		})
	}
}

// withAgentA gives l provider p with model m, and agent a on p/m.
func withAgentA(t testing.TB, l eventlog.Store) {
	t.Helper()
	ctx := context.Background()
	must(t, l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}}))
	if _, err := l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
}

func delta(agentName, text string) event.Event {
	e := event.New("ses_1", event.Delta, time.Now(), event.DeltaData{Text: text})
	e.Agent = agentName
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testAppendAssignsIncreasingSeqAndSurvivesReopen(t *testing.T, open EventsBackend) {
	path := "db" // the same name opens the same store again
	l := open(t, path)
	ctx := context.Background()
	var last int64
	for i := range 5 {
		out, err := l.Append(ctx, delta("a", fmt.Sprint(i)), delta("b", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out {
			if e.Seq <= last {
				t.Fatalf("seq %d after %d", e.Seq, last)
			}
			last = e.Seq
		}
	}
	if l.Head() != last {
		t.Fatalf("head %d, want %d", l.Head(), last)
	}
	l.Close()
	l2 := open(t, path)
	if l2.Head() != last {
		t.Fatalf("after reopen head %d, want %d", l2.Head(), last)
	}
	out, _ := l2.Append(ctx, delta("a", "x"))
	if out[0].Seq != last+1 {
		t.Fatalf("next seq %d, want %d", out[0].Seq, last+1)
	}
	var got []string
	l2.Scan(ctx, eventlog.Query{Agent: "a"}, func(r eventlog.Record) error {
		var e event.Event
		json.Unmarshal(r.Body, &e)
		var d event.DeltaData
		json.Unmarshal(e.Data, &d)
		if e.Seq != r.Seq || e.Agent != "a" {
			t.Errorf("record %d holds event %+v", r.Seq, e)
		}
		got = append(got, d.Text)
		return nil
	})
	if fmt.Sprint(got) != "[0 1 2 3 4 x]" {
		t.Fatalf("agent a's events: %v", got)
	}
}

func testSubscriberFromCursorThenLive(t *testing.T, open EventsBackend) {
	l := open(t, "")
	ctx := context.Background()
	out, _ := l.Append(ctx, delta("a", "0"), delta("a", "1"), delta("a", "2"))
	sub, _ := l.Subscribe("a", out[0].Seq, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 2 || recs[0].Seq != out[1].Seq {
		t.Fatalf("history after cursor: %v %v", recs, err)
	}
	go l.Append(ctx, delta("a", "3"))
	recs, err = sub.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Seq != out[2].Seq+1 {
		t.Fatalf("live: %v %v", recs, err)
	}
}

func testPruneGivesAResetToAnOldCursor(t *testing.T, open EventsBackend) {
	l := open(t, "")
	ctx := context.Background()
	old := delta("a", "old")
	old.Time = time.Now().Add(-48 * time.Hour)
	l.Append(ctx, old, old, old)
	kept, _ := l.Append(ctx, delta("a", "new"))
	n, err := l.Prune(ctx, time.Now().Add(-24*time.Hour), time.Now())
	if err != nil || n != 3 || l.Floor() != 3 {
		t.Fatalf("pruned %d (%v), floor %d", n, err, l.Floor())
	}
	sub, _ := l.Subscribe("a", 1, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 2 || recs[0].Kind != eventlog.Reset || recs[1].Seq != kept[0].Seq {
		t.Fatalf("want reset then seq %d: %+v %v", kept[0].Seq, recs, err)
	}
	var rd eventlog.ResetData
	json.Unmarshal(recs[0].Body, &rd)
	if rd.After != 1 || rd.Oldest != 4 {
		t.Fatalf("reset data %+v", rd)
	}
	// A cursor at the floor or later, or none at all, is no reset.
	sub2, _ := l.Subscribe("a", 0, false)
	defer sub2.Close()
	if recs, _ := sub2.Next(ctx, 10); len(recs) != 1 || recs[0].Kind != event.Delta {
		t.Fatalf("from the start: %+v", recs)
	}
}

// A cursor beyond the last stored event (from another database, say) is
// told so, and then follows new events.
func testCursorBeyondTheHeadIsReset(t *testing.T, open EventsBackend) {
	l := open(t, "")
	ctx := context.Background()
	l.Append(ctx, delta("a", "one"), delta("a", "two"))
	sub, _ := l.Subscribe("a", 100, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Kind != eventlog.Reset || recs[0].Seq != 2 {
		t.Fatalf("want one reset at the head: %+v %v", recs, err)
	}
	var rd eventlog.ResetData
	json.Unmarshal(recs[0].Body, &rd)
	if rd.Reason != "beyond_head" || rd.After != 100 || rd.Head != 2 {
		t.Fatalf("reset data %+v", rd)
	}
	next, _ := l.Append(ctx, delta("a", "three"))
	if recs, err := sub.Next(ctx, 10); err != nil || len(recs) != 1 || recs[0].Seq != next[0].Seq {
		t.Fatalf("after the reset: %+v %v", recs, err)
	}
}

func testProjectionsFollowTheEvents(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	in, created, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"})
	if err != nil || !created || in.Seq == 0 {
		t.Fatalf("add input: %+v %v %v", in, created, err)
	}
	again, created, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"})
	if err != nil || created || again.ID != in.ID {
		t.Fatalf("same client id must return the first input: %+v %v %v", again, created, err)
	}
	if _, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "other", Mode: "queue"}); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("reuse of a client id for another text: %v", err)
	}
	if _, _, err := l.AddInput(ctx, eventlog.Input{Agent: "nobody", ClientID: "c1", Text: "x", Mode: "queue"}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("unknown agent: %v", err)
	}
	head := l.Head()
	ev := func(k event.Kind, v any) event.Event {
		e := event.New("ses", k, time.Now(), v)
		e.Agent, e.Turn = "a", "turn_1"
		return e
	}
	_, err = l.Append(ctx, ev(event.TurnStarted, event.InputData{Input: in.ID}),
		ev(event.PermissionAsked, event.PermissionAskedData{Approval: "per_1", Tool: "bash", Patterns: []string{"ls"}}))
	must(t, err)
	if q, _ := l.Inputs(ctx, "a", "running"); len(q) != 1 || q[0].Turn != "turn_1" {
		t.Fatalf("running inputs: %+v", q)
	}
	if ts, _ := l.RunningTurns(ctx); len(ts) != 1 || ts[0].ID != "turn_1" {
		t.Fatalf("running turns: %+v", ts)
	}
	if ap, _ := l.Approvals(ctx, "pending"); len(ap) != 1 || ap[0].ID != "per_1" || ap[0].Turn != "turn_1" {
		t.Fatalf("pending approvals: %+v", ap)
	}
	_, err = l.Append(ctx, ev(event.PermissionResolved, event.PermissionResolvedData{Approval: "per_1", Decision: "reject", By: "api", Message: "no"}),
		ev(event.Final, event.FinalData{Text: "ok"}))
	must(t, err)
	if ts, _ := l.RunningTurns(ctx); len(ts) != 0 {
		t.Fatalf("turn still running: %+v", ts)
	}
	ap, _ := l.Approval(ctx, "per_1")
	if ap.State != "reject" || ap.By != "api" || ap.Message != "no" || ap.Resolved == nil {
		t.Fatalf("resolved approval: %+v", ap)
	}
	if l.Head() != head+4 {
		t.Fatalf("head %d, want %d", l.Head(), head+4)
	}
}

// A question request is pending from its question.asked on, with what was
// asked; its one resolution (answered, rejected or expired) sticks, with
// who gave it: a later one changes nothing.
func testQuestionsFollowTheEvents(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	ev := func(k event.Kind, v any) event.Event {
		e := event.New("ses", k, time.Now(), v)
		e.Agent, e.Turn = "a", "turn_1"
		return e
	}
	asked := json.RawMessage(`[{"question":"Which colour?","header":"Colour","options":[{"label":"red","description":"warm"},{"label":"blue","description":"cold"}]}]`)
	_, err := l.Append(ctx, ev(event.QuestionAsked, event.QuestionAskedData{Question: "que_1", CallID: "call_1", Questions: asked}),
		ev(event.QuestionAsked, event.QuestionAskedData{Question: "que_2", Questions: asked}))
	must(t, err)
	qs, err := l.Questions(ctx, "pending")
	if err != nil || len(qs) != 2 || qs[0].ID != "que_1" || qs[0].CallID != "call_1" || qs[0].Turn != "turn_1" ||
		len(qs[0].Questions) != 1 || qs[0].Questions[0].Options[1].Label != "blue" {
		t.Fatalf("pending questions: %+v %v", qs, err)
	}
	_, err = l.Append(ctx, ev(event.QuestionResolved, event.QuestionResolvedData{Question: "que_1", Answers: [][]string{{"blue"}}, By: "alice"}),
		ev(event.QuestionResolved, event.QuestionResolvedData{Question: "que_2", Rejected: true, By: "bob"}),
		ev(event.QuestionResolved, event.QuestionResolvedData{Question: "que_1", Expired: true, By: "taosagent"}))
	must(t, err)
	q, err := l.Question(ctx, "que_1")
	if err != nil || q.State != "answered" || q.By != "alice" || len(q.Answers) != 1 || q.Answers[0][0] != "blue" || q.Resolved == nil {
		t.Fatalf("answered question: %+v %v", q, err)
	}
	if q, _ := l.Question(ctx, "que_2"); q.State != "rejected" || q.By != "bob" {
		t.Fatalf("rejected question: %+v", q)
	}
	if qs, _ := l.Questions(ctx, "pending"); len(qs) != 0 {
		t.Fatalf("still pending: %+v", qs)
	}
	if _, err := l.Question(ctx, "que_9"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("an unknown question: %v", err)
	}
}

// An agent's conversations are the sessions its turns ran in, the latest
// first, each titled by its first message; the pinned session is current.
// A message's conversation is kept with it, and is part of its identity.
func testConversationsAreTheSessionsOfTurns(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	if cs, err := l.Conversations(ctx, "a"); err != nil || len(cs) != 0 {
		t.Fatalf("no turns, conversations %+v %v", cs, err)
	}
	if _, err := l.Conversations(ctx, "nobody"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("an unknown agent: %v", err)
	}
	at := time.Now()
	turn := func(id, session, text string) {
		t.Helper()
		in, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: id, Text: text, Mode: "queue", Conversation: session})
		must(t, err)
		at = at.Add(time.Second)
		e := event.New(session, event.TurnStarted, at, event.InputData{Input: in.ID})
		e.Agent, e.Turn = "a", id
		_, err = l.Append(ctx, e)
		must(t, err)
	}
	turn("t1", "ses_1", "first line of one\nand more")
	turn("t2", "ses_2", "two")
	turn("t3", "ses_1", "one again")
	must(t, l.SetSession(ctx, "a", "ses_2"))
	cs, err := l.Conversations(ctx, "a")
	if err != nil || len(cs) != 2 || cs[0].ID != "ses_1" || cs[0].Turns != 2 || cs[0].Title != "first line of one" || cs[0].Current ||
		cs[1].ID != "ses_2" || cs[1].Title != "two" || !cs[1].Current || !cs[0].LastTurn.After(cs[1].LastTurn) {
		t.Fatalf("conversations: %+v %v", cs, err)
	}
	if q, _ := l.Inputs(ctx, "a", "running"); len(q) != 3 || q[0].Conversation != "ses_1" {
		t.Fatalf("inputs keep their conversation: %+v", q)
	}
	if _, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "t2", Text: "two", Mode: "queue", Conversation: "ses_1"}); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("an id used again for another conversation: %v", err)
	}
}

// An agent's last error is the one that ended its latest failed turn,
// still after a turn that ended well; none before any failed.
func testLastError(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	turn := func(id string, end event.Kind, v any) {
		t.Helper()
		in, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: id, Text: "hi", Mode: "queue"})
		must(t, err)
		start := event.New("ses", event.TurnStarted, time.Now(), event.InputData{Input: in.ID})
		e := event.New("ses", end, time.Now(), v)
		start.Agent, start.Turn, e.Agent, e.Turn = "a", id, "a", id
		_, err = l.Append(ctx, start, e)
		must(t, err)
	}
	if _, ok, err := l.LastError(ctx, "a"); ok || err != nil {
		t.Fatalf("a last error before any: %v %v", ok, err)
	}
	turn("t1", event.Error, event.ErrorData{Code: "provider_auth", Message: "the key was refused"})
	turn("t2", event.Error, event.ErrorData{Code: "aborted", Message: "stopped"})
	turn("t3", event.Final, event.FinalData{Text: "ok"})
	le, ok, err := l.LastError(ctx, "a")
	if err != nil || !ok || le.Turn != "t2" || le.Code != "aborted" || le.Message != "stopped" || le.Time.IsZero() {
		t.Fatalf("last error: %+v %v %v", le, ok, err)
	}
}

// The audit reads a page at a time from the newest back: the newest N,
// then the N before the oldest of those.
func testAuditPagesBackFromTheNewest(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	for i := range 7 {
		if err := l.Audit(ctx, eventlog.AuditEntry{Actor: "operator (api)", Action: "x", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	targets := func(es []eventlog.AuditEntry) (out []string) {
		for _, e := range es {
			out = append(out, e.Target)
		}
		return out
	}
	page, err := l.AuditSearch(ctx, eventlog.AuditQuery{Newest: true, Limit: 3})
	if got := targets(page); err != nil || !slices.Equal(got, []string{"4", "5", "6"}) {
		t.Fatalf("newest page: %v %v", got, err)
	}
	page, _ = l.AuditSearch(ctx, eventlog.AuditQuery{Newest: true, Limit: 3, Before: page[0].ID})
	if got := targets(page); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("the page before: %v", got)
	}
}

// A reader of only the latest turns begins at the n-th latest turn's start.
func testRecentTurnsStart(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	var starts []int64
	for i := range 4 {
		s := event.New("ses", event.TurnStarted, time.Now(), event.InputData{Input: int64(i + 1)})
		s.Agent, s.Turn = "a", fmt.Sprint("t", i)
		d := event.New("ses", event.Delta, time.Now(), event.DeltaData{Text: "x"})
		d.Agent, d.Turn = "a", s.Turn
		other := event.New("ses", event.TurnStarted, time.Now(), event.InputData{Input: 99})
		other.Agent, other.Turn = "b", fmt.Sprint("u", i)
		out, err := l.Append(ctx, s, d, other)
		must(t, err)
		starts = append(starts, out[0].Seq)
	}
	for n, want := range map[int]int64{1: starts[3], 2: starts[2], 4: starts[0], 5: 0} {
		if got, err := l.RecentTurnsStart(ctx, "a", n); err != nil || got != want {
			t.Errorf("the %d-th latest turn starts at %d (%v), want %d", n, got, err, want)
		}
	}
}

// FollowTurn gives the events of the input's own turn after its start,
// until the caller is done; an input that never ran ends it with
// eventlog.ErrNeverRan.
func testFollowTurn(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	in, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue", TraceID: "tr1"})
	must(t, err)
	ev := func(turn string, k event.Kind, v any) event.Event {
		e := event.New("ses", k, time.Now(), v)
		e.Agent, e.Turn = "a", turn
		return e
	}
	go func() {
		l.Append(ctx, ev("other", event.Delta, event.DeltaData{Text: "not mine"}))
		l.Append(ctx, ev("t1", event.TurnStarted, event.InputData{Input: in.ID}), ev("t1", event.Delta, event.DeltaData{Text: "mine"}))
		l.Append(ctx, ev("t1", event.Final, event.FinalData{Text: "mine"}), ev("t1", event.Delta, event.DeltaData{Text: "after"}))
	}()
	var got []string
	err = l.FollowTurn(ctx, in, time.Minute, func(string) error { return nil }, func(turn string, evs []eventlog.TurnEvent) bool {
		for _, e := range evs {
			got = append(got, turn+" "+string(e.Kind))
			if e.Kind == event.Final {
				return true
			}
		}
		return false
	})
	if err != nil || !slices.Equal(got, []string{"t1 delta", "t1 final"}) {
		t.Fatalf("followed %v %v", got, err)
	}

	never, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c2", Text: "hi", Mode: "queue", TraceID: "tr2"})
	must(t, err)
	must(t, l.DeleteAgent(ctx, "a")) // its inbox is closed: the input ends without a turn
	idle := 0
	err = l.FollowTurn(ctx, never, 10*time.Millisecond, func(string) error { idle++; return nil }, func(string, []eventlog.TurnEvent) bool { return false })
	if !errors.Is(err, eventlog.ErrNeverRan) {
		t.Fatalf("an input that never ran: %v (after %d quiet spells)", err, idle)
	}
}

// TestAddAndStart: an input whose agent has nothing queued is stored and
// its turn started in one commit; one with an input ahead of it, a
// duplicate, or a start that fails is stored queued (or not at all) and
// starts nothing.
func testAddAndStart(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	starts := 0
	start := func(turn string, data []byte) func(eventlog.Input) event.Event {
		return func(in eventlog.Input) event.Event {
			starts++
			e := event.New("ses", event.TurnStarted, time.Now(), event.InputData{Input: in.ID})
			e.Agent, e.Turn = in.Agent, turn
			if data != nil {
				e.Data = data
			}
			return e
		}
	}
	in, created, started, startErr, err := l.AddAndStart(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_1", nil))
	if err != nil || startErr != nil || !created || !started || in.State != "running" || in.Turn != "turn_1" {
		t.Fatalf("idle inbox: %+v created=%v started=%v %v %v", in, created, started, startErr, err)
	}
	var kinds []event.Kind
	var seqs []int64
	must(t, l.Scan(ctx, eventlog.Query{Agent: "a"}, func(r eventlog.Record) error {
		kinds, seqs = append(kinds, r.Kind), append(seqs, r.Seq)
		return nil
	}))
	if !slices.Equal(kinds, []event.Kind{event.InputAccepted, event.TurnStarted}) || seqs[1] != seqs[0]+1 || seqs[0] != in.Seq {
		t.Fatalf("events %v %v", kinds, seqs)
	}
	if ts, _ := l.RunningTurns(ctx); len(ts) != 1 || ts[0].ID != "turn_1" || ts[0].Input != in.ID {
		t.Fatalf("running turns: %+v", ts)
	}

	// The same client id again: the first input, nothing started.
	again, created, started, _, err := l.AddAndStart(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_x", nil))
	if err != nil || created || started || again.ID != in.ID || starts != 1 {
		t.Fatalf("duplicate: %+v created=%v started=%v %v (starts %d)", again, created, started, err, starts)
	}

	// With an input queued ahead, the new one waits its turn.
	q1, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c2", Text: "first", Mode: "queue"})
	must(t, err)
	q2, created, started, _, err := l.AddAndStart(ctx, eventlog.Input{Agent: "a", ClientID: "c3", Text: "second", Mode: "queue"}, start("turn_2", nil))
	if err != nil || !created || started || q2.State != "queued" || starts != 1 {
		t.Fatalf("behind a queued input: %+v created=%v started=%v %v", q2, created, started, err)
	}
	if q, _ := l.Inputs(ctx, "a", "queued"); len(q) != 2 || q[0].ID != q1.ID || q[1].ID != q2.ID {
		t.Fatalf("queue: %+v", q)
	}

	// A start that fails leaves the input stored and queued, and no seq
	// is lost.
	b := open(t, "")
	withAgentA(t, b)
	in, created, started, startErr, err = b.AddAndStart(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_3", []byte("{not json")))
	if err != nil || startErr == nil || !created || started || in.State != "queued" {
		t.Fatalf("failed start: %+v created=%v started=%v %v %v", in, created, started, startErr, err)
	}
	if q, _ := b.Inputs(ctx, "a", "queued"); len(q) != 1 || q[0].ID != in.ID {
		t.Fatalf("the input must stay queued: %+v", q)
	}
	next, err := b.Append(ctx, delta("a", "x"))
	if err != nil || next[0].Seq != in.Seq+1 || b.Head() != next[0].Seq {
		t.Fatalf("seq after a failed start: %d after %d (%v)", next[0].Seq, in.Seq, err)
	}
}

// An agent keeps its host uid across restarts of the daemon; a deleted
// agent's uid is never handed out again, not even to a new agent of its
// name.
func testAHostUIDIsAnAgentsForGood(t *testing.T, open Backend) {
	ctx := context.Background()
	path := "db"
	l := open(t, path)
	withAgentA(t, l)
	r := hostid.Range{First: 1 << 30, Count: 3}
	a1, err := l.HostUID(ctx, "a", r)
	if err != nil || a1 != r.First {
		t.Fatalf("a's uid: %d %v", a1, err)
	}
	b1, err := l.HostUID(ctx, "b", r)
	if err != nil || b1 != r.First+1 {
		t.Fatalf("b's uid: %d %v", b1, err)
	}
	l.Close()
	l = open(t, path)
	if again, err := l.HostUID(ctx, "a", r); err != nil || again != a1 {
		t.Fatalf("a's uid after a restart: %d %v", again, err)
	}
	if err := l.DeleteAgent(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	a2, err := l.HostUID(ctx, "a", r)
	if err != nil || a2 == a1 || a2 == b1 {
		t.Fatalf("the new a's uid: %d %v (old a %d, b %d)", a2, err, a1, b1)
	}
	if _, err := l.HostUID(ctx, "c", r); err == nil {
		t.Fatal("a uid past the range's end")
	}
}

// An agent's egress policy is stored with it.
func testAnAgentsEgressIsStored(t *testing.T, open Backend) {
	ctx := context.Background()
	l := open(t, "")
	withAgentA(t, l)
	a, err := l.Agent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	a.Egress = &egress.Policy{Mode: egress.Hosts, Hosts: []string{"example.com"}}
	if _, err := l.UpdateAgent(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := l.Agent(ctx, "a")
	if err != nil || got.EgressPolicy().String() != "hosts: example.com" {
		t.Fatalf("stored egress: %v %v", got.Egress, err)
	}
}

// A schedule's slot fires once, its input committed with it, whoever
// tries again (a restart, a second writer); passed-over slots never fire;
// the schedule goes with its agent.
func testASlotFiresOnceWithItsInput(t *testing.T, open Backend) {
	ctx := context.Background()
	l := open(t, "db")
	withAgentA(t, l)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	must(t, l.CreateSchedule(ctx, eventlog.Schedule{ID: "sch_1", Agent: "a", Every: time.Minute, Message: "tick", Missed: "once", Overlap: "queue",
		CreatedBy: "operator (api)", Created: t0, LastSlot: t0}))
	if err := l.CreateSchedule(ctx, eventlog.Schedule{ID: "sch_2", Agent: "nobody", Message: "x", Created: t0, LastSlot: t0}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a schedule of no agent: %v", err)
	}
	slot := t0.Add(time.Minute)
	in := eventlog.Input{Agent: "a", ClientID: "schedule:sch_1:" + fmt.Sprint(slot.UnixMilli()), Text: "tick", Mode: "queue", Schedule: "sch_1"}
	// Concurrent writers of the same slot: one input.
	var fired int
	results := make(chan bool, 4)
	for range 4 {
		go func() {
			_, ok, err := l.FireSlot(ctx, "sch_1", slot, in)
			if err != nil {
				t.Error(err)
			}
			results <- ok
		}()
	}
	for range 4 {
		if <-results {
			fired++
		}
	}
	if fired != 1 {
		t.Fatalf("the slot fired %d times", fired)
	}
	l.Close()
	l = open(t, "db")
	if _, ok, _ := l.FireSlot(ctx, "sch_1", slot, in); ok {
		t.Fatal("the slot fired again after a reopen")
	}
	ins, _ := l.Inputs(ctx, "a", "queued")
	if len(ins) != 1 || ins[0].Schedule != "sch_1" || ins[0].Text != "tick" {
		t.Fatalf("inputs: %+v", ins)
	}
	ss, _ := l.Schedules(ctx, "a")
	if len(ss) != 1 || !ss[0].LastSlot.Equal(slot) || ss[0].LastInput != ins[0].ID || ss[0].Every != time.Minute {
		t.Fatalf("schedule: %+v", ss)
	}
	if st, _ := l.InputState(ctx, "a", ins[0].ID); st != "queued" {
		t.Fatalf("state %q", st)
	}
	must(t, l.PassSlot(ctx, "sch_1", slot.Add(3*time.Minute)))
	must(t, l.PassSlot(ctx, "sch_1", slot)) // never back
	if ss, _ := l.Schedules(ctx, ""); !ss[0].LastSlot.Equal(slot.Add(3 * time.Minute)) {
		t.Fatalf("passed: %+v", ss)
	}
	must(t, l.DeleteAgent(ctx, "a"))
	if ss, _ := l.Schedules(ctx, ""); len(ss) != 0 {
		t.Fatalf("the schedule outlived its agent: %+v", ss)
	}
	if err := l.DeleteSchedule(ctx, "a", "sch_1"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("delete: %v", err)
	}
}

// A webhook's delivery commits one input with the record of its
// signature: the same signature again (a replay) commits nothing; the
// hook goes with its agent.
func testADeliveryStartsOneInput(t *testing.T, open Backend) {
	ctx := context.Background()
	l := open(t, "")
	withAgentA(t, l)
	must(t, l.CreateHook(ctx, eventlog.Hook{ID: "hook_1", Agent: "a", Template: "t {{body}}", CreatedBy: "operator (api)", Created: time.Now()}))
	if err := l.CreateHook(ctx, eventlog.Hook{ID: "hook_2", Agent: "nobody", Template: "t", Created: time.Now()}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a hook of no agent: %v", err)
	}
	in := eventlog.Input{Agent: "a", ClientID: "hook:hook_1:abc", Text: "t body", Mode: "queue"}
	if got, fresh, err := l.Deliver(ctx, "hook_1", "sig-abc", in); err != nil || !fresh || got.ID == 0 {
		t.Fatalf("delivered: %+v %v %v", got, fresh, err)
	}
	if _, fresh, err := l.Deliver(ctx, "hook_1", "sig-abc", in); err != nil || fresh {
		t.Fatalf("a replay: fresh %v %v", fresh, err)
	}
	if ins, _ := l.Inputs(ctx, "a", "queued"); len(ins) != 1 {
		t.Fatalf("inputs: %+v", ins)
	}
	if hs, _ := l.Hooks(ctx, ""); len(hs) != 1 || hs[0].Template != "t {{body}}" {
		t.Fatalf("hooks: %+v", hs)
	}
	must(t, l.DeleteAgent(ctx, "a"))
	if hs, _ := l.Hooks(ctx, ""); len(hs) != 0 {
		t.Fatalf("the hook outlived its agent: %+v", hs)
	}
}

func testATaskEndsOnceWithOneResult(t *testing.T, open Backend) {
	ctx := context.Background()
	l := open(t, "")
	withAgentA(t, l)
	if _, err := l.CreateAgent(ctx, agent.Agent{Name: "b", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
	start := func(id string) eventlog.Task {
		t.Helper()
		tk, in, err := l.StartTask(ctx, eventlog.Task{ID: id, From: "a", To: "b", Text: "sum it", Conversation: "ses_a"},
			eventlog.Input{ClientID: "task:" + id, Text: "from a: sum it", Mode: "queue"})
		if err != nil || in.Agent != "b" || in.Task != id || in.From != "a" || tk.Input != in.ID || tk.State != eventlog.TaskOpen || tk.InputState != "queued" {
			t.Fatalf("started: %+v %+v %v", tk, in, err)
		}
		return tk
	}
	t1 := start("task_1")
	if _, _, err := l.StartTask(ctx, eventlog.Task{ID: "task_x", From: "a", To: "nobody", Text: "x"}, eventlog.Input{ClientID: "task:task_x", Text: "x", Mode: "queue"}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a task for no agent: %v", err)
	}
	if ts, _ := l.Tasks(ctx, "", 10); len(ts) != 1 {
		t.Fatalf("a refused task was stored: %+v", ts)
	}

	// Four enders race: one ends it, with one result in a's inbox.
	var wg sync.WaitGroup
	var ended atomic.Int32
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := eventlog.Input{ClientID: "task:task_1:result", Text: "b says 42", Mode: "queue", Conversation: "ses_a"}
			if _, ok, err := l.EndTask(ctx, t1.ID, eventlog.TaskDone, fmt.Sprint("42 #", i), &res); err != nil {
				t.Error(err)
			} else if ok {
				ended.Add(1)
			}
		}()
	}
	wg.Wait()
	got, err := l.Task(ctx, t1.ID)
	ins, _ := l.Inputs(ctx, "a", "queued")
	if err != nil || ended.Load() != 1 || got.State != eventlog.TaskDone || got.Ended.IsZero() || len(ins) != 1 || got.ResultInput != ins[0].ID ||
		ins[0].Task != t1.ID || ins[0].From != "b" || ins[0].Conversation != "ses_a" {
		t.Fatalf("ended %d times: %+v; a's inbox %+v (%v)", ended.Load(), got, ins, err)
	}

	// A queued task's input is taken out of the inbox, once.
	t2 := start("task_2")
	if ok, err := l.CancelInput(ctx, "b", t2.Input); err != nil || !ok {
		t.Fatalf("cancel: %v %v", ok, err)
	}
	if ok, _ := l.CancelInput(ctx, "b", t2.Input); ok {
		t.Fatal("cancelled twice")
	}
	if got, _ := l.Task(ctx, t2.ID); got.InputState != "cancelled" {
		t.Fatalf("the input after a cancel: %+v", got)
	}
	if q, _ := l.Inputs(ctx, "b", "queued"); len(q) != 1 || q[0].ID != t1.Input {
		t.Fatalf("b's inbox: %+v", q)
	}
	var kinds []event.Kind
	l.Scan(ctx, eventlog.Query{Agent: "b"}, func(r eventlog.Record) error { kinds = append(kinds, r.Kind); return nil })
	if !slices.Contains(kinds, event.InputCancelled) {
		t.Fatalf("b's events: %v", kinds)
	}

	// The caller deleted: the task ends with no result input.
	t3 := start("task_3")
	must(t, l.DeleteAgent(ctx, "a"))
	res := eventlog.Input{ClientID: "task:task_3:result", Text: "late", Mode: "queue"}
	if got, ok, err := l.EndTask(ctx, t3.ID, eventlog.TaskError, "late", &res); err != nil || !ok || got.ResultInput != 0 {
		t.Fatalf("ended for a deleted caller: %+v %v %v", got, ok, err)
	}
	if open, _ := l.OpenTasks(ctx); len(open) != 1 || open[0].ID != t2.ID {
		t.Fatalf("open: %+v", open)
	}
	if ts, _ := l.Tasks(ctx, "b", 10); len(ts) != 3 || ts[0].ID != t3.ID {
		t.Fatalf("b's tasks, newest first: %+v", ts)
	}
}

func testANotificationIsEnqueuedOncePerChannel(t *testing.T, open Backend) {
	ctx := context.Background()
	l := open(t, "")
	now := time.Now().Truncate(time.Millisecond)
	for _, id := range []string{"ch_1", "ch_2"} {
		must(t, l.CreateChannel(ctx, eventlog.Channel{ID: id, Kind: "ntfy", URL: "http://x/t", Agents: []string{"a"}, Created: now}))
	}
	if cs, _ := l.Channels(ctx); len(cs) != 2 || cs[0].Agents[0] != "a" || cs[1].Kinds == nil {
		t.Fatalf("channels: %+v", cs)
	}
	if _, ok, err := l.NotifyCursor(ctx); ok || err != nil {
		t.Fatalf("a cursor before any read: %v %v", ok, err)
	}
	note := func(id, ch string) eventlog.Notification {
		return eventlog.Notification{ID: id, Channel: ch, Source: "event:7", Kind: "approval", Agent: "a", Title: "t", Created: now}
	}
	must(t, l.Enqueue(ctx, 7, []eventlog.Notification{note("n1", "ch_1"), note("n2", "ch_2")}))
	// A second enqueuer of the same event (a restart that read it again).
	must(t, l.Enqueue(ctx, 5, []eventlog.Notification{note("n3", "ch_1")}))
	if seq, ok, _ := l.NotifyCursor(ctx); !ok || seq != 7 {
		t.Fatalf("the cursor went back: %d", seq)
	}
	due, _ := l.DueNotifications(ctx, now, 10)
	if len(due) != 2 || due[0].ID != "n1" || due[1].ID != "n2" {
		t.Fatalf("due: %+v", due)
	}
	must(t, l.NotificationFailed(ctx, "n1", "503", now.Add(time.Minute), false))
	must(t, l.NotificationSent(ctx, "n2", now))
	if due, _ := l.DueNotifications(ctx, now, 10); len(due) != 0 {
		t.Fatalf("due after a failure and a delivery: %+v", due)
	}
	due, _ = l.DueNotifications(ctx, now.Add(time.Minute), 10)
	if len(due) != 1 || due[0].Attempts != 1 || due[0].LastError != "503" {
		t.Fatalf("due again: %+v", due)
	}
	must(t, l.NotificationFailed(ctx, "n1", "gone", now, true))
	if ns, _ := l.Notifications(ctx, "ch_1", 10); len(ns) != 1 || ns[0].State != "failed" || ns[0].Attempts != 2 {
		t.Fatalf("ch_1's: %+v", ns)
	}
	must(t, l.DeleteChannel(ctx, "ch_1"))
	if ns, _ := l.Notifications(ctx, "", 10); len(ns) != 1 || ns[0].ID != "n2" || ns[0].State != "sent" {
		t.Fatalf("left: %+v", ns)
	}
	if err := l.DeleteChannel(ctx, "ch_1"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("deleted twice: %v", err)
	}
}

// The catalog, the gateway's keys and usage, the gate's apps and the
// audit's search keep what they were given: a provider in use cannot go,
// usage adds up per agent, model and day, an app is decided once, and a
// search by an actor's prefix finds its entries.
func testTheCatalogKeysUsageAppsAndAuditKeepWhatTheyWereGiven(t *testing.T, open Backend) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	must(t, l.CreateProvider(ctx, agent.Provider{ID: "q", BaseURL: "http://y/v1", Demo: true, Models: []agent.Model{{ID: "n"}}}))
	if err := l.CreateProvider(ctx, agent.Provider{ID: "q", BaseURL: "http://z/v1"}); !errors.Is(err, eventlog.ErrExists) {
		t.Fatalf("a provider created twice: %v", err)
	}
	if p, err := l.Provider(ctx, "q"); err != nil || !p.Demo || p.BaseURL != "http://y/v1" || len(p.Models) != 1 || p.Models[0].ID != "n" {
		t.Fatalf("provider q: %+v %v", p, err)
	}
	if err := l.DeleteProvider(ctx, "p"); !errors.Is(err, eventlog.ErrInUse) || !strings.Contains(err.Error(), "agents a") {
		t.Fatalf("deleting the provider agent a uses: %v", err)
	}
	must(t, l.DeleteProvider(ctx, "q"))
	if ps, err := l.Providers(ctx); err != nil || len(ps) != 1 || ps[0].ID != "p" {
		t.Fatalf("providers after a delete: %+v %v", ps, err)
	}

	must(t, l.SetAgentKey(ctx, "a", "hash1"))
	must(t, l.SetAgentKey(ctx, "a", "hash2"))
	if who, err := l.AgentOfKey(ctx, "hash2"); err != nil || who != "a" {
		t.Fatalf("the agent of its key: %q %v", who, err)
	}
	if _, err := l.AgentOfKey(ctx, "hash1"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a replaced key still names its agent: %v", err)
	}
	day := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	must(t, l.AddUsage(ctx, "a", "p/m", day, 100, 10, 0.25))
	must(t, l.AddUsage(ctx, "a", "p/m", day.Add(time.Hour), 50, 5, 0.5))
	must(t, l.AddUsage(ctx, "a", "p/m2", day, 1, 1, 0))
	must(t, l.AddUsage(ctx, "a", "p/m", day.AddDate(0, 0, -2), 1000, 1000, 10))
	rows, err := l.Usage(ctx, "a", "p/m", "2026-12-03")
	if err != nil || len(rows) != 1 || rows[0].Requests != 2 || rows[0].InputTokens != 150 || rows[0].OutputTokens != 15 || rows[0].Cost != 0.75 {
		t.Fatalf("a day's usage: %+v %v", rows, err)
	}
	if tokens, cost, err := l.UsageSince(ctx, "a", "2026-12-03"); err != nil || tokens != 167 || cost != 0.75 {
		t.Fatalf("usage since a day: %d %v %v", tokens, cost, err)
	}

	app := eventlog.App{SHA256: "sha1", ID: "notes", Version: "1.0.0", State: "pending", Report: json.RawMessage(`{"ok":true}`), SubmittedBy: "builder"}
	if a, created, err := l.AddApp(ctx, app); err != nil || !created || a.State != "pending" {
		t.Fatalf("an app submitted: %+v %v %v", a, created, err)
	}
	if _, created, err := l.AddApp(ctx, app); err != nil || created {
		t.Fatalf("the same app again: %v %v", created, err)
	}
	if _, err := l.ApprovedApp(ctx, "notes"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("an approved app before the decision: %v", err)
	}
	if a, err := l.DecideApp(ctx, "sha1", "approved", "alice", "fine"); err != nil || a.State != "approved" || a.DecidedBy != "alice" {
		t.Fatalf("decided: %+v %v", a, err)
	}
	if _, err := l.DecideApp(ctx, "sha1", "rejected", "bob", ""); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("decided twice: %v", err)
	}
	if a, err := l.ApprovedApp(ctx, "notes"); err != nil || a.SHA256 != "sha1" || string(a.Report) != `{"ok":true}` {
		t.Fatalf("the approved app: %+v %v", a, err)
	}

	for _, actor := range []string{"person:alice", "agent:a", "person:bob"} {
		must(t, l.Audit(ctx, eventlog.AuditEntry{Actor: actor, Action: "file_write", Target: "/x", Outcome: "ok"}))
	}
	es, err := l.AuditSearch(ctx, eventlog.AuditQuery{Actor: "person:"})
	if err != nil || len(es) != 2 || es[0].Actor != "person:alice" || es[1].Actor != "person:bob" || es[0].ID >= es[1].ID {
		t.Fatalf("the audit by an actor's prefix: %+v %v", es, err)
	}

	in, _, err := l.AddInput(ctx, eventlog.Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue", TraceID: "trace1"})
	must(t, err)
	if got, err := l.InputOfTrace(ctx, "a", "trace1"); err != nil || got.ID != in.ID || got.Seq != in.Seq || got.Seq == 0 {
		t.Fatalf("the input of a trace: %+v (want id %d, seq %d) %v", got, in.ID, in.Seq, err)
	}
}
