package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/cluster"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// LeaseDefault is how long a daemon's hold on a PostgreSQL database lasts
// unrenewed (serve --lease): it renews three times in that time, and a
// daemon that died frees the database that long after its last renewal.
const LeaseDefault = 15 * time.Second

// store is the daemon's store, and what ends its hold on it.
type store struct {
	eventlog.Store
	// lost gets an error once if the daemon lost its hold on the
	// database (another daemon took it, or it could not renew in time):
	// the daemon stops, and its log writes nothing more.
	lost <-chan error
	// stop stops renewing and closes the store; with release it also
	// frees the database at once (a clean stop; a hand-over keeps the
	// lease for the next program).
	stop func(release bool)
	// problem is why the last renewal failed, nil once one succeeds.
	problem atomic.Pointer[string]
	// predecessor is the daemon this one took the database over from
	// (its lease lapsed), "" when none or itself.
	predecessor string
	// cluster is this daemon's place among several (serve --cluster),
	// nil when it holds the whole database.
	cluster *cluster.Keeper
}

// Problem says what is wrong with the store, "" if nothing: a database
// this daemon cannot reach to renew its hold on it.
func (s *store) Problem() string {
	if p := s.problem.Load(); p != nil {
		return *p
	}
	if s.cluster != nil {
		return s.cluster.Problem()
	}
	return ""
}

// openStore opens the home's SQLite log, or with cfg.DB the PostgreSQL
// database of that address. On PostgreSQL the daemon holds the whole
// database (the lease pgstore.Everything) while it runs, renewing it; its
// log is fenced by that lease, so that, paused or cut off past it, the
// daemon can never write again. A second daemon on the same database is
// refused at start with the holder's name (and stops what its home's last
// daemon left running: those instances served a database another holds
// now), or with cfg.Standby waits until the holder's lease lapsed and
// takes over. A daemon back within its lease (a restart, a crash) takes
// its own lease again.
func openStore(ctx context.Context, cfg Config, h home.Home, logger *slog.Logger) (*store, error) {
	if cfg.DB == "" {
		l, err := eventlog.Open(h.DB())
		if err != nil {
			return nil, err
		}
		return &store{Store: l, stop: func(bool) { l.Close() }}, nil
	}
	l, err := pgstore.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	owner := daemonID(h)
	if cfg.Cluster {
		return joinCluster(ctx, cfg, h, l, owner, logger)
	}
	if live, err := liveDaemons(ctx, l); err != nil || len(live) > 0 {
		l.Close()
		if err == nil {
			err = fmt.Errorf("daemons of a cluster run on this database (%s): start this one with --cluster too", strings.Join(live, ", "))
		}
		return nil, err
	}
	ttl := cfg.Lease
	le, err := l.Acquire(ctx, pgstore.Everything, owner, ttl)
	if errors.Is(err, pgstore.ErrLeased) {
		// What this home's last daemon left running served a database
		// another daemon holds now: it goes, and writes nothing.
		if pids, _ := supervisor.Sweep(h.Run()); len(pids) > 0 {
			logger.Warn("stopped the instances a daemon of this home left running: another daemon holds the database now", "pids", pids)
		}
	}
	for waited := false; errors.Is(err, pgstore.ErrLeased) && cfg.Standby; le, err = l.Acquire(ctx, pgstore.Everything, owner, ttl) {
		// A standby waits for the holder's lease to lapse, then takes
		// over.
		if !waited {
			logger.Info("standing by: another daemon holds the database", "err", err)
			waited = true
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(ttl / 10):
		}
	}
	if err != nil {
		l.Close()
		if errors.Is(err, pgstore.ErrLeased) {
			return nil, fmt.Errorf("another daemon runs on this database: %w; one daemon per database (or --standby, to take over when it stops)", err)
		}
		return nil, err
	}
	l.Fence(le)
	logger.Info("holding the database", "owner", owner, "token", le.Token, "lease", ttl)
	st := &store{Store: l}
	if le.Previous != "" && le.Previous != owner {
		st.predecessor = le.Previous
		logger.Warn("took the database over from another daemon", "from", le.Previous)
	}
	lost := make(chan error, 1)
	st.lost = lost
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		renew(rctx, l, le, ttl, lost, &st.problem, logger)
	}()
	st.stop = func(release bool) {
		cancel()
		<-done
		if release {
			if err := l.Release(context.Background(), le); err != nil {
				logger.Warn("could not free the database's lease; it lapses by itself", "err", err)
			}
		}
		l.Close()
	}
	return st, nil
}

// renew keeps le, three times per ttl, until ctx ends. A renewal refused
// (the lease lapsed, or another daemon took it) or none that succeeded
// before the lease's end sends the loss on lost.
func renew(ctx context.Context, l *pgstore.Log, le pgstore.Lease, ttl time.Duration, lost chan<- error, problem *atomic.Pointer[string], logger *slog.Logger) {
	until := time.Now().Add(ttl)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		next, err := l.Renew(rctx, le, ttl)
		cancel()
		switch {
		case err == nil:
			le, until = next, time.Now().Add(ttl)
			problem.Store(nil)
		case errors.Is(err, pgstore.ErrLost):
			lost <- fmt.Errorf("the database's lease was lost: %w", err)
			return
		case time.Now().After(until):
			lost <- fmt.Errorf("the database's lease lapsed, unrenewed: %w", err)
			return
		case ctx.Err() == nil:
			msg := fmt.Sprintf("the database does not answer (%v); this daemon stops at %s unless it does", err, until.UTC().Format(time.RFC3339))
			problem.Store(&msg)
			logger.Warn("renewing the database's lease", "err", err)
		}
	}
}

// daemonID names this daemon to the others on a database: its machine
// and its home, the same across its restarts.
func daemonID(h home.Home) string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(h.Dir)
	if err != nil {
		dir = h.Dir
	}
	return host + ":" + dir
}

// joinCluster makes this daemon one of a cluster on l (serve --cluster):
// it registers, and owns agents one by one through their leases, taken
// and renewed by its keeper (cluster.Keeper); its log is fenced per
// agent. The agents' directory's storage is checked: daemons that share
// it may take each other's agents over. A database that a daemon holds
// whole (serve without --cluster) is refused.
func joinCluster(ctx context.Context, cfg Config, h home.Home, l *pgstore.Log, owner string, logger *slog.Logger) (*store, error) {
	fail := func(err error) (*store, error) {
		l.Close()
		return nil, err
	}
	if holder, err := l.Holder(ctx); err != nil {
		return fail(err)
	} else if holder != nil {
		return fail(fmt.Errorf("a daemon that runs alone holds this database (%s, until %s): one daemon per database, or every one with --cluster",
			holder.Owner, holder.Expires.UTC().Format(time.RFC3339)))
	}
	storage, err := cluster.Storage(h.Agents())
	if err != nil {
		return fail(fmt.Errorf("the agents' directory's storage: %w", err))
	}
	dir, err := filepath.Abs(h.Agents())
	if err != nil {
		return fail(err)
	}
	// opencode's own sessions name their directory: a daemon that takes
	// an agent over must see its directory at the same path.
	if ds, err := l.Daemons(ctx); err != nil {
		return fail(err)
	} else if d, ok := cluster.Misplaced(ds, owner, storage, dir); ok {
		return fail(fmt.Errorf("the agents' directories' storage %s is at %s here but at %s on the daemon %s: mount it at the same path on every daemon (opencode's sessions name their directory)",
			storage, dir, d.Dir, d.ID))
	}
	k := &cluster.Keeper{Log: l, TTL: cfg.Lease, Logger: logger, Home: h,
		Self: pgstore.Daemon{ID: owner, Addr: cfg.Listen, Labels: cfg.Labels, Storage: storage, Dir: dir},
		Memory: func() int64 {
			_, free, _ := supervisor.Meminfo()
			return free
		},
		Names: func(ctx context.Context) ([]string, error) {
			as, err := l.Agents(ctx)
			names := make([]string, len(as))
			for i, a := range as {
				names[i] = a.Name
			}
			return names, err
		}}
	if err := k.Join(ctx); err != nil {
		return fail(err)
	}
	if ds, err := l.Daemons(ctx); err == nil {
		var same, other []string
		for _, d := range ds {
			switch {
			case !d.Live || d.ID == owner:
			case d.Storage == storage:
				same = append(same, d.ID)
			default:
				other = append(other, d.ID)
			}
		}
		logger.Info("joined the cluster", "daemon", owner, "storage", storage, "sharing_agents_with", same, "own_agents_directories", other)
	}
	return &store{Store: l, cluster: k, stop: func(release bool) {
		k.Leave(release)
		l.Close()
	}}, nil
}

// liveDaemons names the live daemons of a cluster on l.
func liveDaemons(ctx context.Context, l *pgstore.Log) ([]string, error) {
	ds, err := l.Daemons(ctx)
	var live []string
	for _, d := range ds {
		if d.Live {
			live = append(live, d.ID)
		}
	}
	return live, err
}
