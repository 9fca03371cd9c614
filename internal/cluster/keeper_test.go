package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/cluster"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/testenv"
)

// agents is the runner as a keeper sees it: what it was told.
type agents struct {
	mu    sync.Mutex
	taken []string // agent<predecessor
	drops []string
	busy  map[string]bool
}

func (a *agents) Take(_ context.Context, name, prev string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.taken = append(a.taken, name+"<"+prev)
	return nil
}

func (a *agents) Drop(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.drops = append(a.drops, name)
}

func (a *agents) Busy(_ context.Context, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.busy[name]
}

func (a *agents) Wake(string) {}

func (a *agents) Serve(_ context.Context, name string, body []byte) ([]byte, string, string) {
	if string(body) == "fail" {
		return nil, "conflict", "no turn of " + name
	}
	return []byte(`"done for ` + name + `"`), "", ""
}

func (a *agents) seen() (taken, drops []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.taken), slices.Clone(a.drops)
}

// Two daemons' keepers on one database, driven round by round: the
// agents spread, each daemon writes only for its own (a message for any),
// a drain waits for the agent's turn and then hands it over, and the
// cluster's workers run on one daemon alone.
func TestKeepersShareTheAgentsOfOneDatabase(t *testing.T) {
	pg := testenv.NewPostgres(t)
	dsn := pg.Database(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	names := func(context.Context) ([]string, error) { return []string{"a", "b"}, nil }
	var workers [2]atomic.Int32
	type member struct {
		k   *cluster.Keeper
		log *pgstore.Log
		ag  *agents
	}
	var ms [2]member
	for i, id := range []string{"d1", "d2"} {
		l, err := pgstore.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		k := &cluster.Keeper{Log: l, TTL: time.Minute, Names: names, Logger: slog.New(slog.DiscardHandler),
			Self: pgstore.Daemon{ID: id, Storage: "s", Slots: 2},
			Workers: func(ctx context.Context) {
				workers[i].Add(1)
				<-ctx.Done()
				workers[i].Add(-1)
			}}
		if err := k.Join(ctx); err != nil {
			t.Fatal(err)
		}
		ms[i] = member{k, l, &agents{busy: map[string]bool{}}}
	}
	d1, d2 := ms[0], ms[1]
	if err := d1.log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := d1.log.CreateAgent(ctx, agent.Agent{Name: name, Model: "p/m", Models: []string{"p/m"}}); err != nil {
			t.Fatal(err)
		}
	}
	d1.k.Step(ctx, d1.ag)
	d2.k.Step(ctx, d2.ag)
	if got, _ := d1.ag.seen(); !slices.Equal(got, []string{"a<"}) {
		t.Fatalf("d1 took %v, want a (the first agent, on the first daemon of equal ones)", got)
	}
	if got, _ := d2.ag.seen(); !slices.Equal(got, []string{"b<"}) {
		t.Fatalf("d2 took %v, want b", got)
	}
	d1.k.Step(ctx, d1.ag) // a look at who owns b now
	if !d1.k.Here("a") || d1.k.Here("b") || d1.k.Owner("b") != "d2" {
		t.Fatalf("d1: a here %v, b here %v, b's owner %q", d1.k.Here("a"), d1.k.Here("b"), d1.k.Owner("b"))
	}
	if w1, w2 := workers[0].Load(), workers[1].Load(); w1+w2 != 1 {
		t.Fatalf("the cluster's workers run %d times on d1, %d on d2", w1, w2)
	}

	// Each writes its own agents' events, and anyone's messages.
	delta := func(agent string) event.Event {
		e := event.New("ses", event.Delta, time.Now(), event.DeltaData{Text: "x"})
		e.Agent = agent
		return e
	}
	if _, err := d1.log.Append(ctx, delta("a")); err != nil {
		t.Fatalf("d1 writing for its agent: %v", err)
	}
	if _, err := d1.log.Append(ctx, delta("b")); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("d1 writing for d2's agent: %v", err)
	}
	if _, _, err := d1.log.AddInput(ctx, eventlog.Input{Agent: "b", ClientID: "m1", Text: "hi", Mode: "queue"}); err != nil {
		t.Fatalf("d1 storing a message for d2's agent: %v", err)
	}

	// A drain waits for the turn, then hands the agent over.
	d1.ag.busy["a"] = true
	if _, err := d1.k.Drain(ctx, "", true); err != nil {
		t.Fatal(err)
	}
	d1.k.Step(ctx, d1.ag)
	if _, drops := d1.ag.seen(); len(drops) != 0 || !d1.k.Here("a") {
		t.Fatalf("a draining daemon gave up an agent in its turn: %v", drops)
	}
	d1.ag.mu.Lock()
	d1.ag.busy["a"] = false
	d1.ag.mu.Unlock()
	d1.k.Step(ctx, d1.ag)
	if _, drops := d1.ag.seen(); !slices.Equal(drops, []string{"a"}) || d1.k.Here("a") {
		t.Fatalf("a draining daemon, its agent idle, dropped %v", drops)
	}
	d2.k.Step(ctx, d2.ag)
	if got, _ := d2.ag.seen(); !slices.Equal(got, []string{"b<", "a<d1"}) {
		t.Fatalf("d2 took %v, want a from d1", got)
	}
	if _, err := d1.log.Append(ctx, delta("a")); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("d1 writing for the agent it gave up: %v", err)
	}
	if _, err := d2.log.Append(ctx, delta("a")); err != nil {
		t.Fatalf("d2 writing for the agent it took: %v", err)
	}

	// A pin moves b to d1 between its turns (d1's drain ended).
	if _, err := d1.k.Drain(ctx, "d1", false); err != nil {
		t.Fatal(err)
	}
	if err := d1.k.Pin(ctx, "b", "d1"); err != nil {
		t.Fatal(err)
	}
	d2.k.Step(ctx, d2.ag)
	d1.k.Step(ctx, d1.ag)
	if got, _ := d1.ag.seen(); !slices.Contains(got, "b<d2") {
		t.Fatalf("b pinned to d1: d1 took %v", got)
	}
	// A move on the same storage is a pin: nothing is copied.
	if m, err := d1.k.Move(ctx, "a", "d1"); err != nil || m.Copy || m.From != "d2" {
		t.Fatalf("a moved to d1 on its storage: %+v %v", m, err)
	}
	d2.k.Step(ctx, d2.ag)
	d1.k.Step(ctx, d1.ag)
	if got, _ := d1.ag.seen(); !slices.Contains(got, "a<d2") {
		t.Fatalf("a moved to d1: d1 took %v", got)
	}
	st, err := d2.k.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Agents {
		if want := map[string]string{"a": "d1", "b": "d1"}[a.Agent]; a.Owner != want || a.Move != nil {
			t.Fatalf("status: %s on %q, want %q", a.Agent, a.Owner, want)
		}
	}

	// What only an agent's owner can do, asked through another daemon:
	// stored, picked up by the owner's keeper, answered.
	rctx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	running.Go(func() { d1.k.Run(rctx, d1.ag) })
	defer func() { stop(); running.Wait() }()
	if res, code, msg, err := d2.k.Forward(ctx, "a", []byte("abort")); err != nil || code != "" || string(res) != `"done for a"` {
		t.Fatalf("a request for a's owner through d2: %q %q %q %v", res, code, msg, err)
	}
	if _, code, msg, err := d2.k.Forward(ctx, "a", []byte("fail")); err != nil || code != "conflict" || msg != "no turn of a" {
		t.Fatalf("a failing request: %q %q %v", code, msg, err)
	}
	if _, err := d1.k.Drain(ctx, "nobody", true); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("draining a daemon that never joined: %v", err)
	}
}
