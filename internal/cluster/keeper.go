package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/randid"
)

// Agents is what the Keeper asks of the daemon's runner
// (runner.Manager).
type Agents interface {
	// Take starts running agent here, once its lease is this daemon's:
	// what its last owner left is recovered, naming predecessor (another
	// daemon's id: a failover; "" or this daemon's: a restart).
	Take(ctx context.Context, agent, predecessor string) error
	// Drop stops running agent here, its runner and its opencode.
	Drop(agent string)
	// Busy: agent has a turn running here, or inputs queued.
	Busy(ctx context.Context, agent string) bool
	// Wake has agent look at its inbox (an input another daemon stored).
	Wake(agent string)
	// Serve does what another daemon asked of agent's owner (Forward),
	// and returns the answer, or its error's kind and message.
	Serve(ctx context.Context, agent string, body []byte) (result []byte, code, msg string)
}

// AskWait bounds how long a request forwarded to an agent's owner waits
// for its answer.
const AskWait = 30 * time.Second

// Keeper keeps this daemon's place in its cluster: its registration, the
// leases of the agents it owns, and the agents placement gives it. Its
// methods are safe for concurrent use.
type Keeper struct {
	Log *pgstore.Log
	// Self is this daemon: its id, address, labels and storage (Storage);
	// Slots is its instance cap. Memory, when set, is its free memory,
	// read at each heartbeat.
	Self   pgstore.Daemon
	Memory func() int64
	TTL    time.Duration
	// Names lists the agents (the store's catalog).
	Names func(ctx context.Context) ([]string, error)
	// Workers, when set, is the work one daemon of the cluster does for
	// all (the schedules, the notifications, the tasks, retention): it
	// runs, until its context ends, on the daemon that holds the lease
	// WorkersLease, and moves as an agent does.
	Workers func(ctx context.Context)
	// Home is this daemon's home: an agent's move carries its files out
	// of it and into it.
	Home   home.Home
	Logger *slog.Logger

	mu      sync.Mutex
	held    map[string]pgstore.Lease // the agents this daemon owns
	leaving map[string]bool          // held, but not Here: being given up, or its files moving
	moves   sync.WaitGroup           // the packs and unpacks under way (move.go)
	from    int64                    // the log's head at Join: follow reads from there
	owners  map[string]string        // who owned the others, at the last look
	workers *running                 // Workers, while this daemon holds WorkersLease
	// lastWorkers is WorkersLease as this daemon last held it (Leave
	// frees it).
	lastWorkers pgstore.Lease
	until       time.Time // the registration's end, at the last heartbeat
	problem     atomic.Pointer[string]
}

// Join registers this daemon (its first heartbeat) and fences the log:
// from now on it writes for an agent only under that agent's lease. A
// database that does not answer is an error.
func (k *Keeper) Join(ctx context.Context) error {
	k.mu.Lock()
	k.held = map[string]pgstore.Lease{}
	k.leaving = map[string]bool{}
	k.owners = map[string]string{}
	k.from = k.Log.Head()
	k.mu.Unlock()
	k.Log.FenceAgents(k.Held)
	return k.heartbeat(ctx)
}

// Held returns the lease this daemon holds of agent, if it does.
func (k *Keeper) Held(agent string) (pgstore.Lease, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	le, ok := k.held[agent]
	return le, ok
}

// Here reports whether agent runs on this daemon: it holds the agent's
// lease and is not giving it up.
func (k *Keeper) Here(agent string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.held[agent]
	return ok && !k.leaving[agent]
}

// Owner names the daemon that owned agent at the keeper's last look, ""
// if none or unknown.
func (k *Keeper) Owner(agent string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.held[agent]; ok {
		return k.Self.ID
	}
	return k.owners[agent]
}

// Problem says what keeps this daemon from its cluster, "" if nothing: a
// database that does not answer its heartbeats.
func (k *Keeper) Problem() string {
	if p := k.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// Run keeps the daemon's place, three times per TTL, until ctx ends, and
// wakes agents for the inputs other daemons store for them. It leaves
// what it holds held: Leave ends it.
func (k *Keeper) Run(ctx context.Context, agents Agents) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer k.moves.Wait()
	defer k.stopWorkers()
	wg.Go(func() { k.follow(ctx, agents) })
	wg.Go(func() { k.serve(ctx, agents) })
	t := time.NewTicker(k.TTL / 3)
	defer t.Stop()
	for {
		k.tick(ctx, agents)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Leave ends this daemon's place, once Run returned and its agents
// stopped: with release, the leases it holds are freed at once for
// other daemons, and its registration ends; without (a hand-over to the
// next program), both stay, for it to take again.
func (k *Keeper) Leave(release bool) {
	if !release {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.mu.Lock()
	held := k.held
	k.held = map[string]pgstore.Lease{}
	k.mu.Unlock()
	for _, le := range held {
		k.Log.Release(ctx, le)
	}
	if k.lastWorkers.Token != 0 {
		k.Log.Release(ctx, k.lastWorkers)
	}
	k.Log.Leave(ctx, k.Self.ID)
}

// heartbeat renews this daemon's registration.
func (k *Keeper) heartbeat(ctx context.Context) error {
	d := k.Self
	if k.Memory != nil {
		d.Memory = k.Memory()
	}
	ctx, cancel := context.WithTimeout(ctx, k.TTL/3)
	defer cancel()
	if err := k.Log.Heartbeat(ctx, d, k.TTL); err != nil {
		return fmt.Errorf("the cluster's database: %w", err)
	}
	k.mu.Lock()
	k.until = time.Now().Add(k.TTL)
	k.mu.Unlock()
	return nil
}

// Step is one round of Run's, at once, and waits for the moves it began:
// the daemon's start takes the agents it owns before it serves.
func (k *Keeper) Step(ctx context.Context, agents Agents) {
	k.tick(ctx, agents)
	k.moves.Wait()
}

// tick is one round: the heartbeat, the renewals, then placement.
func (k *Keeper) tick(ctx context.Context, agents Agents) {
	if err := k.heartbeat(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		k.mu.Lock()
		until, n := k.until, len(k.held)
		k.mu.Unlock()
		msg := fmt.Sprintf("the database does not answer (%v); this daemon gives up its agents at %s unless it does", err, until.UTC().Format(time.RFC3339))
		k.problem.Store(&msg)
		if time.Now().After(until) && n > 0 {
			// Its leases have lapsed by now: another daemon may own
			// them. It stops them, writing nothing, and takes work again
			// once the database answers.
			k.Logger.Error("gave up every agent: the database did not answer within the lease", "agents", n)
			k.dropAll(agents)
		}
		if time.Now().After(until) {
			k.stopWorkers()
		}
		return
	}
	k.problem.Store(nil)
	k.renew(ctx, agents)
	k.lead(ctx)
	if err := k.place(ctx, agents); err != nil && ctx.Err() == nil {
		k.Logger.Warn("cluster placement", "err", err)
	}
}

// renew renews each lease held; one lost stops its agent here.
func (k *Keeper) renew(ctx context.Context, agents Agents) {
	k.mu.Lock()
	held := make([]pgstore.Lease, 0, len(k.held))
	for _, le := range k.held {
		held = append(held, le)
	}
	k.mu.Unlock()
	for _, le := range held {
		rctx, cancel := context.WithTimeout(ctx, k.TTL/3)
		next, err := k.Log.Renew(rctx, le, k.TTL)
		cancel()
		switch {
		case err == nil:
			k.mu.Lock()
			if _, ok := k.held[le.Agent]; ok {
				k.held[le.Agent] = next
			}
			k.mu.Unlock()
		case errors.Is(err, pgstore.ErrLost):
			k.Logger.Error("lost an agent: its lease lapsed or another daemon took it; stopping it here", "agent", le.Agent, "err", err)
			k.drop(agents, le.Agent)
		}
	}
}

// place gives up the agents this daemon should not keep (a drain, a pin
// elsewhere, an agent deleted) between their turns, and takes those
// placement gives it.
func (k *Keeper) place(ctx context.Context, agents Agents) error {
	names, err := k.Names(ctx)
	if err != nil {
		return err
	}
	v, err := k.look(ctx)
	if err != nil {
		return err
	}
	daemons, leases, placements, moves := v.daemons, v.leases, v.placements, v.moves
	var me pgstore.Daemon
	for _, d := range daemons {
		if d.ID == k.Self.ID {
			me = d
		}
	}
	owner, counts := live(leases)
	k.mu.Lock()
	k.owners = map[string]string{}
	for name, le := range owner {
		k.owners[name] = le.Owner
	}
	k.mu.Unlock()
	exists := map[string]bool{}
	for _, name := range names {
		exists[name] = true
	}
	for _, name := range names {
		p := placements[name]
		p.Agent = name
		m, moving := moves[name]
		if _, held := k.Held(name); held && !k.Here(name) {
			continue // being given up, or its files moving: under way
		}
		if k.Here(name) {
			if moving && m.State == pgstore.MoveAsked && !agents.Busy(ctx, name) {
				if m.Target == k.Self.ID {
					k.endMove(ctx, name)
				} else {
					k.pack(ctx, agents, name, m)
				}
				continue
			}
			if (me.Draining || !Allows(p.Pin, me)) && !agents.Busy(ctx, name) {
				k.Logger.Info("giving an agent up between its turns", "agent", name, "draining", me.Draining, "pin", p.Pin)
				k.release(agents, name)
			}
			continue
		}
		le, leased := owner[name]
		readopt := leased && le.Owner == k.Self.ID // this daemon, back within the lease
		if leased && !readopt {
			continue
		}
		if !readopt && Place(p, daemons, counts) != k.Self.ID {
			continue
		}
		got, err := k.Log.Acquire(ctx, name, k.Self.ID, k.TTL)
		if err != nil {
			if !errors.Is(err, pgstore.ErrLeased) {
				return err
			}
			continue // another daemon was quicker
		}
		counts[k.Self.ID]++
		if _, err := k.Log.SetStorage(ctx, name, k.Self.Storage); err != nil {
			k.Log.Release(ctx, got)
			return err
		}
		k.mu.Lock()
		k.held[name] = got
		k.mu.Unlock()
		if moving && m.State == pgstore.MovePacked && m.Target == k.Self.ID {
			k.arrive(ctx, agents, got, m) // then takes it
			continue
		}
		k.Logger.Info("took an agent", "agent", name, "token", got.Token, "from", got.Previous)
		k.start(ctx, agents, name, got.Previous)
	}
	// Agents deleted while held go.
	k.mu.Lock()
	var gone []string
	for name := range k.held {
		if !exists[name] {
			gone = append(gone, name)
		}
	}
	k.mu.Unlock()
	for _, name := range gone {
		k.release(agents, name)
	}
	return nil
}

// view is the cluster's rows, as one look reads them.
type view struct {
	daemons    []pgstore.Daemon
	leases     []pgstore.Lease
	placements map[string]pgstore.Placement
	moves      map[string]pgstore.Move
}

// look reads the cluster's rows.
func (k *Keeper) look(ctx context.Context) (v view, err error) {
	if v.daemons, err = k.Log.Daemons(ctx); err != nil {
		return v, err
	}
	if v.leases, err = k.Log.Leases(ctx); err != nil {
		return v, err
	}
	if v.placements, err = k.Log.Placements(ctx); err != nil {
		return v, err
	}
	v.moves, err = k.Log.Moves(ctx)
	return v, err
}

// WorkersLease is the lease of the cluster's workers (Keeper.Workers),
// beside the agents' (no agent's name starts with "*").
const WorkersLease = "*workers"

// running is Workers running here, under its lease.
type running struct {
	lease  pgstore.Lease
	cancel context.CancelFunc
	done   chan struct{}
}

// lead runs Workers while this daemon holds their lease: it renews it,
// or takes it once free; lost, the workers stop.
func (k *Keeper) lead(ctx context.Context) {
	if k.Workers == nil {
		return
	}
	if w := k.workers; w != nil {
		next, err := k.Log.Renew(ctx, w.lease, k.TTL)
		if errors.Is(err, pgstore.ErrLost) {
			k.Logger.Warn("the cluster's workers moved to another daemon", "err", err)
			k.stopWorkers()
		} else if err == nil {
			w.lease = next
		}
		return
	}
	le, err := k.Log.Acquire(ctx, WorkersLease, k.Self.ID, k.TTL)
	if err != nil {
		return // another daemon runs them, or the database did not answer
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &running{lease: le, cancel: cancel, done: make(chan struct{})}
	k.workers = w
	k.Logger.Info("running the cluster's workers (schedules, notifications, tasks, retention)")
	go func() {
		defer close(w.done)
		k.Workers(wctx)
	}()
}

// stopWorkers stops Workers here, and waits for them.
func (k *Keeper) stopWorkers() {
	if w := k.workers; w != nil {
		w.cancel()
		<-w.done
		k.workers = nil
		k.lastWorkers = w.lease
	}
}

// live is the live leases by agent, and how many each daemon holds.
func live(leases []pgstore.Lease) (owner map[string]pgstore.Lease, counts map[string]int) {
	owner, counts = map[string]pgstore.Lease{}, map[string]int{}
	for _, le := range leases {
		if le.Live {
			owner[le.Agent] = le
			counts[le.Owner]++
		}
	}
	return owner, counts
}

// release stops agent here while its lease is still this daemon's (what
// the stop writes is written), then frees the lease at once.
func (k *Keeper) release(agents Agents, name string) {
	// Not Here from now on (a message is only stored, for the next
	// owner), while the fence still lets the stop write what it writes.
	k.mu.Lock()
	k.leaving[name] = true
	k.mu.Unlock()
	agents.Drop(name)
	k.free(name)
}

// start runs agent, held here, on this daemon: Here from now on, and
// taken, what its last owner left recovered; from names that owner (as
// a failover unless it is this daemon). One that cannot start is given
// up.
func (k *Keeper) start(ctx context.Context, agents Agents, name, from string) {
	k.mu.Lock()
	delete(k.leaving, name)
	k.mu.Unlock()
	if from == k.Self.ID {
		from = ""
	}
	if err := agents.Take(ctx, name, from); err != nil {
		k.Logger.Error("an agent taken could not start here; giving it up", "agent", name, "err", err)
		k.release(agents, name)
	}
}

// free forgets agent, held here and not running, and frees its lease at
// once.
func (k *Keeper) free(name string) {
	k.mu.Lock()
	le, ok := k.held[name]
	delete(k.held, name)
	delete(k.leaving, name)
	k.mu.Unlock()
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), k.TTL/3)
		defer cancel()
		if err := k.Log.Release(ctx, le); err != nil {
			k.Logger.Warn("could not free an agent's lease; it lapses by itself", "agent", name, "err", err)
		}
	}
}

// drop stops agent here after its lease was lost: it is forgotten first,
// so that nothing the stop would write is even tried.
func (k *Keeper) drop(agents Agents, name string) {
	k.mu.Lock()
	delete(k.held, name)
	delete(k.leaving, name)
	k.mu.Unlock()
	agents.Drop(name)
}

func (k *Keeper) dropAll(agents Agents) {
	k.mu.Lock()
	var names []string
	for name := range k.held {
		names = append(names, name)
	}
	k.mu.Unlock()
	for _, name := range names {
		k.drop(agents, name)
	}
}

// follow wakes the agents held here for each input another daemon
// stores for them: the log's subscription is woken by the commits'
// notifications and reads by cursor, so that an input is picked up even
// when a notification is lost (after a reconnect, at the next read).
func (k *Keeper) follow(ctx context.Context, agents Agents) {
	k.mu.Lock()
	from := k.from
	k.mu.Unlock()
	// From the head at Join: what was stored while the agents were being
	// taken is seen too (a wake-up is idempotent).
	sub, err := k.Log.Subscribe("", from, false, event.InputAccepted)
	if err != nil {
		return
	}
	defer sub.Close()
	for {
		recs, err := sub.Next(ctx, 100)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(pgstore.Poll):
			}
			continue
		}
		for _, r := range recs {
			if r.Kind == event.InputAccepted && k.Here(r.Agent) {
				agents.Wake(r.Agent)
			}
		}
	}
}

// Forward asks agent's owner, through the database, to do what only it
// can (runner.Config.Forward): the request is stored, the owner's keeper
// picks it up (woken by a notification, or at its next read), and the
// answer comes back the same way, within AskWait.
func (k *Keeper) Forward(ctx context.Context, agent string, body []byte) (result []byte, code, msg string, err error) {
	r, err := k.Log.Ask(ctx, agent, body, AskWait)
	return r.Result, r.Code, r.Error, err
}

// serve does the requests other daemons store for the agents held here,
// each on a goroutine of its own: woken by their notifications, and
// reading every pgstore.Poll besides, so that none waits on a
// notification that was lost.
func (k *Keeper) serve(ctx context.Context, agents Agents) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		woken := k.Log.RequestsWoken()
		reqs, err := k.Log.Take(ctx, k.Here)
		if err != nil && ctx.Err() == nil {
			k.Logger.Warn("reading the requests for this daemon's agents", "err", err)
		}
		for _, r := range reqs {
			wg.Go(func() {
				r.Result, r.Code, r.Error = agents.Serve(ctx, r.Agent, r.Body)
				if err := k.Log.Answer(context.WithoutCancel(ctx), r); err != nil {
					k.Logger.Warn("answering a request of another daemon", "agent", r.Agent, "err", err)
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-woken:
		case <-time.After(pgstore.Poll):
		}
	}
}

// StorageFile names, in the agents' directory, the file that identifies
// the storage it is on: daemons that read the same id share the agents'
// directories (one mount of shared storage), and may take each other's
// agents over; others (per-node directories) may not.
const StorageFile = ".storage"

// Storage returns the id of the storage the agents' directory dir is on,
// made at the first call on that storage.
func Storage(dir string) (string, error) {
	path := filepath.Join(dir, StorageFile)
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	id := randid.ID("st")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		// Another daemon on the same storage made it meanwhile.
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	}
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(id + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return id, err
}
