package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/pgstore"
)

// Status is what the cluster's rows say: its daemons, and who owns and
// may run each agent (control.Cluster).
func (k *Keeper) Status(ctx context.Context) (api.Cluster, error) {
	out := api.Cluster{Daemon: k.Self.ID, Daemons: []api.ClusterDaemon{}, Agents: []api.ClusterAgent{}}
	v, err := k.look(ctx)
	if err != nil {
		return out, err
	}
	daemons, placements, moves := v.daemons, v.placements, v.moves
	names, err := k.Names(ctx)
	if err != nil {
		return out, err
	}
	owned, counts := live(v.leases)
	for _, d := range daemons {
		out.Daemons = append(out.Daemons, api.ClusterDaemon{ID: d.ID, Addr: d.Addr, Labels: d.Labels, Storage: d.Storage, Slots: d.Slots,
			Agents: counts[d.ID], Memory: d.Memory, Draining: d.Draining, Live: d.Live, Expires: d.Expires})
	}
	for _, name := range names {
		a := api.ClusterAgent{Agent: name, Pin: placements[name].Pin, Storage: placements[name].Storage}
		if le, ok := owned[name]; ok {
			a.Owner, a.Token, a.Expires = le.Owner, le.Token, le.Expires
		}
		if m, ok := moves[name]; ok {
			a.Move = &api.ClusterMove{To: m.Target, State: m.State, Bytes: m.Size, Error: m.Error, Asked: m.Asked}
		}
		out.Agents = append(out.Agents, a)
	}
	return out, nil
}

// Drain marks daemon ("" this one) draining, or not, and returns its id.
func (k *Keeper) Drain(ctx context.Context, daemon string, on bool) (string, error) {
	if daemon == "" {
		daemon = k.Self.ID
	}
	err := k.Log.SetDraining(ctx, daemon, on)
	if errors.Is(err, pgstore.ErrUnknownDaemon) {
		err = fmt.Errorf("%w: %v", eventlog.ErrNotFound, err)
	}
	return daemon, err
}

// Pin sets where agent may run.
func (k *Keeper) Pin(ctx context.Context, agent, pin string) error { return k.Log.Pin(ctx, agent, pin) }
