package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/event"
)

func open(t testing.TB, path string) *Log {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "taosagent.db")
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// withAgentA gives l provider p with model m, and agent a on p/m.
func withAgentA(t testing.TB, l *Log) {
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

func TestAppendAssignsIncreasingSeqAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
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
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode: %v %v", fi.Mode(), err)
	}
	l2 := open(t, path)
	if l2.Head() != last {
		t.Fatalf("after reopen head %d, want %d", l2.Head(), last)
	}
	out, _ := l2.Append(ctx, delta("a", "x"))
	if out[0].Seq != last+1 {
		t.Fatalf("next seq %d, want %d", out[0].Seq, last+1)
	}
	var got []string
	l2.Scan(ctx, Query{Agent: "a"}, func(r Record) error {
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

func TestConcurrentAppendsShareCommits(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	var wg sync.WaitGroup
	for a := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := l.Append(ctx, delta(fmt.Sprint("agent", a), fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	commits, reqs := l.Stats()
	if reqs != 1600 || l.Head() != 1600 {
		t.Fatalf("requests %d, head %d; want 1600", reqs, l.Head())
	}
	if commits >= reqs {
		t.Fatalf("%d commits for %d concurrent requests: no grouping", commits, reqs)
	}
	t.Logf("%d requests in %d commits", reqs, commits)
}

// A subscriber that does not read while thousands of events are committed
// blocks nobody, and then gets every event once, in order.
func TestSlowSubscriberFallsBackToTheLog(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	sub, err := l.Subscribe("a", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 3 * subBuffer
	done := make(chan error)
	go func() {
		for i := range n {
			if _, err := l.Append(ctx, delta("a", fmt.Sprint(i)), delta("other", "x")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the writer blocked on a subscriber that does not read")
	}
	var seen int
	var last int64
	for seen < n {
		recs, err := sub.Next(ctx, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Agent != "a" || r.Seq <= last {
				t.Fatalf("record %d of %s after %d", r.Seq, r.Agent, last)
			}
			var e event.Event
			json.Unmarshal(r.Body, &e)
			var d event.DeltaData
			json.Unmarshal(e.Data, &d)
			if d.Text != fmt.Sprint(seen) {
				t.Fatalf("event %d is %q: a gap or a duplicate", seen, d.Text)
			}
			last = r.Seq
			seen++
		}
	}
	// Live again: the next event arrives without a log read.
	l.Append(ctx, delta("a", "live"))
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Seq != l.Head() {
		t.Fatalf("live event: %v %v", recs, err)
	}
}

func TestSubscriberFromCursorThenLive(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	out, _ := l.Append(ctx, delta("a", "0"), delta("a", "1"), delta("a", "2"))
	sub, _ := l.Subscribe("a", out[0].Seq, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 2 || recs[0].Seq != out[1].Seq {
		t.Fatalf("history after cursor: %v %v", recs, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.Append(ctx, delta("a", "3"))
	}()
	recs, err = sub.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Seq != out[2].Seq+1 {
		t.Fatalf("live: %v %v", recs, err)
	}
}

func TestPruneGivesAResetToAnOldCursor(t *testing.T) {
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
	if err != nil || len(recs) != 2 || recs[0].Kind != Reset || recs[1].Seq != kept[0].Seq {
		t.Fatalf("want reset then seq %d: %+v %v", kept[0].Seq, recs, err)
	}
	var rd ResetData
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

// A subscriber learns of a prune from the snapshot it reads, never from
// the in-memory floor alone: in the moment between a prune's commit and
// the floor's update, an old cursor still gets its reset.
func TestResetDoesNotDependOnTheMemoryFloor(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	old := delta("a", "old")
	old.Time = time.Now().Add(-48 * time.Hour)
	l.Append(ctx, old, old)
	kept, _ := l.Append(ctx, delta("a", "new"))
	if _, err := l.Prune(ctx, time.Now().Add(-24*time.Hour), time.Now()); err != nil {
		t.Fatal(err)
	}
	l.floor.Store(0) // as if the prune had committed and not yet told memory
	sub, _ := l.Subscribe("a", 1, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 2 || recs[0].Kind != Reset || recs[1].Seq != kept[0].Seq {
		t.Fatalf("want reset then seq %d: %+v %v", kept[0].Seq, recs, err)
	}
}

// A cursor beyond the last stored event (from another database, say) is
// told so, and then follows new events.
func TestCursorBeyondTheHeadIsReset(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	l.Append(ctx, delta("a", "one"), delta("a", "two"))
	sub, _ := l.Subscribe("a", 100, true)
	defer sub.Close()
	recs, err := sub.Next(ctx, 10)
	if err != nil || len(recs) != 1 || recs[0].Kind != Reset || recs[0].Seq != 2 {
		t.Fatalf("want one reset at the head: %+v %v", recs, err)
	}
	var rd ResetData
	json.Unmarshal(recs[0].Body, &rd)
	if rd.Reason != "beyond_head" || rd.After != 100 || rd.Head != 2 {
		t.Fatalf("reset data %+v", rd)
	}
	next, _ := l.Append(ctx, delta("a", "three"))
	if recs, err := sub.Next(ctx, 10); err != nil || len(recs) != 1 || recs[0].Seq != next[0].Seq {
		t.Fatalf("after the reset: %+v %v", recs, err)
	}
}

func TestProjectionsFollowTheEvents(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	in, created, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"})
	if err != nil || !created || in.Seq == 0 {
		t.Fatalf("add input: %+v %v %v", in, created, err)
	}
	again, created, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"})
	if err != nil || created || again.ID != in.ID {
		t.Fatalf("same client id must return the first input: %+v %v %v", again, created, err)
	}
	if _, _, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c1", Text: "other", Mode: "queue"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("reuse of a client id for another text: %v", err)
	}
	if _, _, err := l.AddInput(ctx, Input{Agent: "nobody", ClientID: "c1", Text: "x", Mode: "queue"}); !errors.Is(err, ErrNotFound) {
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

// A failing Update leaves no trace, and does not disturb others in its batch.
func TestFailedUpdateStoresNothing(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	l.Append(ctx, delta("a", "0"))
	head := l.Head()
	_, err := l.Update(ctx, func(tx *Tx) error {
		if _, err := tx.Append(delta("a", "doomed")); err != nil {
			return err
		}
		return errors.New("changed my mind")
	})
	if err == nil {
		t.Fatal("want the error")
	}
	out, err := l.Append(ctx, delta("a", "1"))
	must(t, err)
	if out[0].Seq != head+1 {
		t.Fatalf("seq %d after a failed update, want %d", out[0].Seq, head+1)
	}
	n := 0
	l.Scan(ctx, Query{}, func(Record) error { n++; return nil })
	if n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// encode must write what encoding/json writes: clients decode either.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	for _, e := range []event.Event{
		delta("a", "x"),
		{Seq: 7, Agent: "ag", Session: "s\"<>&\n", Turn: "t", Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), Kind: event.Final, Data: []byte(`{"text":"é"}`), Synthetic: true},
		{Seq: 1, Agent: "ünï", Time: time.Unix(0, 0).UTC(), Kind: event.Error},
	} {
		want, _ := json.Marshal(e)
		if got := encode(nil, e); string(got) != string(want) {
			t.Errorf("encode:\n got %s\nwant %s", got, want)
		}
	}
}

// A subscriber that reads while the writer outruns it must never take a
// record from past a gap: every event arrives once, in order. Round after
// round it reads from its buffer, stops until the writer overflows it,
// falls back to the log and catches up while the writer still appends.
func TestSubscriberKeepingUpPartlyLosesNothing(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	sub, _ := l.Subscribe("", 0, false)
	defer sub.Close()
	var got, written int
	var last int64
	read := func(upTo int) {
		for got < upTo {
			recs, err := sub.Next(ctx, 4*subBuffer)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Seq != last+1 {
					t.Fatalf("seq %d after %d: a gap or a duplicate", r.Seq, last)
				}
				last = r.Seq
				got++
			}
		}
	}
	const rounds, burst = 6, 4 * subBuffer
	for range rounds {
		// Caught up: the subscriber reads from its buffer.
		if _, err := l.Append(ctx, delta("a", "x")); err != nil {
			t.Fatal(err)
		}
		written++
		read(written)
		falls := sub.falls.Load()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			for i := 0; i < burst; i += 16 {
				evs := make([]event.Event, 16)
				for j := range evs {
					evs[j] = delta("a", "x")
				}
				l.AppendAsync(evs, nil)
			}
		}()
		written += burst
		for deadline := time.Now().Add(time.Minute); sub.falls.Load() == falls; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the writer never overflowed the subscriber's buffer")
			}
		}
		read(written)
		<-wrote
	}
}

// Under a steady stream of commits, the WAL is restarted after each
// checkpoint instead of growing with every commit: its size stays a small
// part of what was written through it.
func TestWALStaysSmallUnderASteadyStream(t *testing.T) {
	defer func(d time.Duration) { checkpointEvery = d }(checkpointEvery)
	checkpointEvery = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "taosagent.db")
	l := open(t, path)
	ctx := context.Background()
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				// The writer is never idle: a checkpoint on the side alone
				// would never find the WAL wholly copied.
				if _, err := l.Append(ctx, delta(fmt.Sprint("a", w), "some text")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	commits, _ := l.Stats()
	// Each commit writes at least one 4 KiB page to the WAL.
	written := commits * 4096
	t.Logf("%d commits, at least %d bytes through the WAL, WAL is %d bytes", commits, written, st.Size())
	if commits < 200 {
		t.Fatalf("only %d commits: the test did not stream", commits)
	}
	if st.Size() > written/2 {
		t.Fatalf("WAL is %d bytes after %d commits: it grows instead of restarting", st.Size(), commits)
	}
}

// An agent's last error is the one that ended its latest failed turn,
// still after a turn that ended well; none before any failed.
func TestLastError(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	turn := func(id string, end event.Kind, v any) {
		t.Helper()
		in, _, err := l.AddInput(ctx, Input{Agent: "a", ClientID: id, Text: "hi", Mode: "queue"})
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
func TestAuditPagesBackFromTheNewest(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	for i := range 7 {
		if err := l.Audit(ctx, AuditEntry{Actor: "operator (api)", Action: "x", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	targets := func(es []AuditEntry) (out []string) {
		for _, e := range es {
			out = append(out, e.Target)
		}
		return out
	}
	page, err := l.AuditSearch(ctx, AuditQuery{Newest: true, Limit: 3})
	if got := targets(page); err != nil || !slices.Equal(got, []string{"4", "5", "6"}) {
		t.Fatalf("newest page: %v %v", got, err)
	}
	page, _ = l.AuditSearch(ctx, AuditQuery{Newest: true, Limit: 3, Before: page[0].ID})
	if got := targets(page); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("the page before: %v", got)
	}
}

// A reader of only the latest turns begins at the n-th latest turn's start.
func TestRecentTurnsStart(t *testing.T) {
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
// ErrNeverRan.
func TestFollowTurn(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	in, _, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue", TraceID: "tr1"})
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
	err = l.FollowTurn(ctx, in, time.Minute, func(string) error { return nil }, func(turn string, evs []TurnEvent) bool {
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

	never, _, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c2", Text: "hi", Mode: "queue", TraceID: "tr2"})
	must(t, err)
	must(t, l.DeleteAgent(ctx, "a")) // its inbox is closed: the input ends without a turn
	idle := 0
	err = l.FollowTurn(ctx, never, 10*time.Millisecond, func(string) error { idle++; return nil }, func(string, []TurnEvent) bool { return false })
	if !errors.Is(err, ErrNeverRan) {
		t.Fatalf("an input that never ran: %v (after %d quiet spells)", err, idle)
	}
}

// TestAddAndStart: an input whose agent has nothing queued is stored and
// its turn started in one commit; one with an input ahead of it, a
// duplicate, or a start that fails is stored queued (or not at all) and
// starts nothing.
func TestAddAndStart(t *testing.T) {
	l := open(t, "")
	ctx := context.Background()
	withAgentA(t, l)
	starts := 0
	start := func(turn string, data []byte) func(Input) event.Event {
		return func(in Input) event.Event {
			starts++
			e := event.New("ses", event.TurnStarted, time.Now(), event.InputData{Input: in.ID})
			e.Agent, e.Turn = in.Agent, turn
			if data != nil {
				e.Data = data
			}
			return e
		}
	}
	commits, _ := l.Stats()
	in, created, started, startErr, err := l.AddAndStart(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_1", nil))
	if err != nil || startErr != nil || !created || !started || in.State != "running" || in.Turn != "turn_1" {
		t.Fatalf("idle inbox: %+v created=%v started=%v %v %v", in, created, started, startErr, err)
	}
	if c, _ := l.Stats(); c != commits+1 {
		t.Fatalf("%d commits for the input and its start, want 1", c-commits)
	}
	var kinds []event.Kind
	var seqs []int64
	must(t, l.Scan(ctx, Query{Agent: "a"}, func(r Record) error {
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
	again, created, started, _, err := l.AddAndStart(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_x", nil))
	if err != nil || created || started || again.ID != in.ID || starts != 1 {
		t.Fatalf("duplicate: %+v created=%v started=%v %v (starts %d)", again, created, started, err, starts)
	}

	// With an input queued ahead, the new one waits its turn.
	q1, _, err := l.AddInput(ctx, Input{Agent: "a", ClientID: "c2", Text: "first", Mode: "queue"})
	must(t, err)
	q2, created, started, _, err := l.AddAndStart(ctx, Input{Agent: "a", ClientID: "c3", Text: "second", Mode: "queue"}, start("turn_2", nil))
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
	in, created, started, startErr, err = b.AddAndStart(ctx, Input{Agent: "a", ClientID: "c1", Text: "hi", Mode: "queue"}, start("turn_3", []byte("{not json")))
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
