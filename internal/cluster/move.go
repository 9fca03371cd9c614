package cluster

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/agenttree"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/pgstore"
)

// moved are the parts of a home an agent's move carries, by their name
// in its archive: its own directory (opencode's sessions, its workdir)
// and its local MCP servers' state.
var moved = []struct{ name, dir string }{{"agent", "agents"}, {"mcp", "mcp"}}

// Move moves agent to the daemon target (control.Cluster). On the
// storage the agent's directory is on, a pin is all it takes: it moves
// between its turns. On other storage (per-node directories), its
// owner packs its directory and its MCP servers' state into the
// database between its turns, and target unpacks them before it runs
// it (copy is true). Either way it stays pinned to target.
func (k *Keeper) Move(ctx context.Context, agent, target string) (api.Move, error) {
	out := api.Move{Agent: agent, To: target}
	v, err := k.look(ctx)
	if err != nil {
		return out, err
	}
	daemons, placements, moves := v.daemons, v.placements, v.moves
	owner, _ := live(v.leases)
	out.From = owner[agent].Owner
	var to *pgstore.Daemon
	for i := range daemons {
		if daemons[i].ID == target {
			to = &daemons[i]
		}
	}
	p, m := placements[agent], moves[agent]
	switch {
	case to == nil:
		return out, fmt.Errorf("%w: %q: %v", eventlog.ErrNotFound, target, pgstore.ErrUnknownDaemon)
	case !to.Live:
		return out, fmt.Errorf("%w: the daemon %s is not live", eventlog.ErrConflict, target)
	case to.Draining:
		return out, fmt.Errorf("%w: the daemon %s is draining", eventlog.ErrConflict, target)
	case out.From == target && m.State == "":
		return out, fmt.Errorf("%w: agent %s runs on %s already", eventlog.ErrConflict, agent, target)
	}
	if m.State != pgstore.MovePacked && (p.Storage == "" || p.Storage == to.Storage) {
		// Its directory is there already: a pin moves it. A move asked
		// before (to other storage) is called off.
		if m.State != "" {
			if err := k.Log.CallOffMove(ctx, agent); err != nil {
				return out, err
			}
		}
		return out, k.Log.Pin(ctx, agent, target)
	}
	if m.State != pgstore.MovePacked && !slices.ContainsFunc(daemons, func(d pgstore.Daemon) bool { return d.Live && d.Storage == p.Storage }) {
		return out, fmt.Errorf("%w: agent %s's directory is on the storage %s, which no live daemon has: start the daemon it was on, then move it", eventlog.ErrConflict, agent, p.Storage)
	}
	out.Copy = true
	return out, k.Log.AskMove(ctx, agent, target)
}

// pack gives up agent, held here, for its move m: it stops at once
// (no longer Here), and beside the keeper's rounds (which renew its
// lease meanwhile) its files are packed into the database under its
// lease, with its placement on the move's target, and removed here;
// then its lease is freed. If they cannot be packed, the move fails (its
// error recorded) and the agent runs here again.
func (k *Keeper) pack(ctx context.Context, agents Agents, name string, m pgstore.Move) {
	k.Logger.Info("packing an agent between its turns to move it", "agent", name, "to", m.Target)
	k.mu.Lock()
	k.leaving[name] = true
	k.mu.Unlock()
	agents.Drop(name)
	k.moves.Go(func() {
		le, _ := k.Held(name) // as renewed
		done, err := k.Log.Pack(ctx, le, k.Self.ID, k.Self.Dir, func(w io.Writer) error { return k.archive(w, name) })
		switch {
		case errors.Is(err, pgstore.ErrFenced):
			k.Logger.Error("lost an agent while packing it", "agent", name, "err", err)
			k.mu.Lock()
			delete(k.held, name)
			delete(k.leaving, name)
			k.mu.Unlock()
		case err != nil && ctx.Err() != nil:
			// The daemon stops: the move stays asked, for the agent's
			// next owner.
		case err != nil:
			k.Logger.Error("could not pack an agent to move it; it stays here", "agent", name, "err", err)
			k.moveFailed(ctx, name, err)
			k.start(ctx, agents, name, "")
		default:
			// The database holds its files now, for the target alone.
			if err := k.remove(name); err != nil {
				k.Logger.Warn("removing the files of an agent moved away", "agent", name, "err", err)
			}
			k.Logger.Info("packed an agent for its move", "agent", name, "to", done.Target, "bytes", done.Size)
			k.free(name)
		}
	})
}

// endMove ends agent's move to this daemon, which holds it already: it
// stays, pinned here.
func (k *Keeper) endMove(ctx context.Context, name string) {
	le, _ := k.Held(name)
	err := k.Log.Pin(ctx, name, k.Self.ID)
	if err == nil {
		err = k.Log.Moved(ctx, le)
	}
	if err != nil {
		k.Logger.Warn("ending a move to the daemon an agent is on", "agent", name, "err", err)
	}
}

// archive writes agent's files (moved) of this daemon's home to w, a
// gzipped tar archive, read through os.Root: a link the agent planted is
// stored as a link, never followed.
func (k *Keeper) archive(w io.Writer, agent string) error {
	root, err := os.OpenRoot(k.Home.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// The fastest compression: the archive crosses the network once, and
	// a move is bounded by the time its agent waits.
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, part := range moved {
		dir := part.dir + "/" + agent
		if _, err := root.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := agenttree.Archive(tw, root, dir, part.name); err != nil {
			return fmt.Errorf("pack %s: %w", dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// remove removes agent's files (moved) from this daemon's home; a link
// is removed, never followed.
func (k *Keeper) remove(agent string) error {
	root, err := os.OpenRoot(k.Home.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	for _, part := range moved {
		errs = append(errs, root.RemoveAll(part.dir+"/"+agent))
	}
	return errors.Join(errs...)
}

// unpack writes agent's files from its move's archive r into this
// daemon's home: each part is extracted beside its place (never
// following a link, owners as recorded), then takes the place of what
// was there, if anything; a part the archive does not hold is removed.
func (k *Keeper) unpack(agent string, r io.Reader) error {
	root, err := os.OpenRoot(k.Home.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("the move's archive: %w", err)
	}
	stage := func(dir string) string { return dir + "/.move-" + agent }
	xs := map[string]*agenttree.Extractor{}
	defer func() {
		for _, x := range xs {
			x.Root.Close()
		}
	}()
	for _, part := range moved {
		if err := root.RemoveAll(stage(part.dir)); err != nil {
			return err
		}
	}
	tr := tar.NewReader(gz)
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the move's archive: %w", err)
		}
		name, ok := agenttree.EntryName(hd)
		part, rel, _ := strings.Cut(name, "/")
		var dir string
		for _, p := range moved {
			if p.name == part {
				dir = p.dir
			}
		}
		if !ok || dir == "" {
			return fmt.Errorf("the move's archive: an entry out of place: %q", hd.Name)
		}
		x := xs[part]
		if x == nil {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := root.Mkdir(stage(dir), 0o700); err != nil {
				return err
			}
			sub, err := root.OpenRoot(stage(dir))
			if err != nil {
				return err
			}
			x = &agenttree.Extractor{Root: sub}
			xs[part] = x
		}
		if rel == "" {
			rel = "."
		}
		if err := x.Extract(tr, hd, rel); err != nil {
			return fmt.Errorf("unpack %s: %w", name, err)
		}
	}
	for _, part := range moved {
		final := part.dir + "/" + agent
		if err := root.RemoveAll(final); err != nil {
			return err
		}
		x := xs[part.name]
		if x == nil {
			continue
		}
		if err := x.Finish(); err != nil {
			return err
		}
		if err := root.Rename(stage(part.dir), final); err != nil {
			return err
		}
	}
	return nil
}

// arrive takes in agent's files once this daemon holds the lease le
// of an agent whose move m was packed for it: beside the keeper's rounds
// (which renew the lease meanwhile), with the agent not Here yet, the
// files are unpacked and the move ends; then the agent runs here. At
// another path of the agents' directory than the source's, its session
// is let go (opencode's sessions name their directory): its next
// message starts a new conversation. Unpacking that fails is recorded
// on the move, and the lease freed, to try again at a later round.
func (k *Keeper) arrive(ctx context.Context, agents Agents, le pgstore.Lease, m pgstore.Move) {
	k.mu.Lock()
	k.leaving[m.Agent] = true
	k.mu.Unlock()
	k.moves.Go(func() {
		err := k.unpack(m.Agent, k.Log.Packed(ctx, m.Agent))
		if err == nil && m.Dir != k.Self.Dir {
			k.Logger.Warn("an agent moved from another path of the agents' directory: its next message starts a new conversation", "agent", m.Agent, "from", m.Dir, "here", k.Self.Dir)
			err = k.Log.SetSession(ctx, m.Agent, "")
		}
		if err == nil {
			err = k.Log.Moved(ctx, le)
		}
		if err != nil {
			if ctx.Err() == nil {
				k.Logger.Error("could not unpack an agent moved here; trying again", "agent", m.Agent, "err", err)
				k.moveFailed(ctx, m.Agent, err)
			}
			k.free(m.Agent)
			return
		}
		k.Logger.Info("unpacked an agent moved here, and took it", "agent", m.Agent, "from", m.Source, "bytes", m.Size, "token", le.Token)
		k.start(ctx, agents, m.Agent, le.Previous)
	})
}

// moveFailed records err as the last failure of agent's move.
func (k *Keeper) moveFailed(ctx context.Context, agent string, err error) {
	if ferr := k.Log.MoveFailed(context.WithoutCancel(ctx), agent, err.Error()); ferr != nil {
		k.Logger.Warn("recording a move's failure", "agent", agent, "err", ferr)
	}
}
