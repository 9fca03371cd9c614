// Package cluster runs a daemon as one of several sharing a PostgreSQL
// database (serve --cluster): each agent is owned by one daemon at a
// time, through its lease (pgstore); the Keeper registers this daemon,
// renews the leases it holds, takes the agents placement gives it, gives
// up those it drains, and wakes its agents for the inputs other daemons
// store for them. Place is the one placement rule.
package cluster

import (
	"cmp"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/pgstore"
)

// Allows reports whether pin lets daemon d run an agent: "" lets any,
// "k=v" a daemon with that label, anything else names a daemon's id.
func Allows(pin string, d pgstore.Daemon) bool {
	switch {
	case pin == "":
		return true
	case strings.Contains(pin, "="):
		return slices.Contains(d.Labels, pin)
	default:
		return pin == d.ID
	}
}

// Place picks the daemon an agent without an owner goes to: among the
// live daemons not draining that its pin allows and that are on its
// directory's storage (once it has one), the one with the most free
// instance slots (its slots less the agents it holds, held), then the
// most free memory, then the first by id; "" if none may take it. Every
// daemon computes the same answer from the same rows, so that one alone
// asks for the agent's lease.
func Place(p pgstore.Placement, daemons []pgstore.Daemon, held map[string]int) string {
	var best *pgstore.Daemon
	free := func(d *pgstore.Daemon) int { return d.Slots - held[d.ID] }
	for i := range daemons {
		d := &daemons[i]
		if !d.Live || d.Draining || !Allows(p.Pin, *d) || (p.Storage != "" && p.Storage != d.Storage) {
			continue
		}
		if best == nil || cmp.Or(cmp.Compare(free(d), free(best)), cmp.Compare(d.Memory, best.Memory), cmp.Compare(best.ID, d.ID)) > 0 {
			best = d
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// Misplaced returns a live daemon other than self on storage whose
// agents' directory is at another path than dir, if any: the agents'
// directories must be at one path on every daemon sharing them, since
// opencode's sessions name their directory.
func Misplaced(daemons []pgstore.Daemon, self, storage, dir string) (pgstore.Daemon, bool) {
	for _, d := range daemons {
		if d.Live && d.ID != self && d.Storage == storage && d.Dir != "" && d.Dir != dir {
			return d, true
		}
	}
	return pgstore.Daemon{}, false
}
