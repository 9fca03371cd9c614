package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	sub, _ := l.subscribe("", 0, false)
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

// The database holds what agents said and did: only the daemon's user
// reads it.
func TestTheDatabaseIsTheDaemonsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	l := open(t, path)
	if _, err := l.Append(context.Background(), delta("a", "x")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode: %v %v", fi.Mode(), err)
	}
}
