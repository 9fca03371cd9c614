package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/pgstore"
)

// MaxSkew is the difference between this machine's clock and the
// database's past which cluster warns: leases run on the database's
// clock, but the events' times are the daemons'.
const MaxSkew = time.Second

// checkCluster, for a daemon on PostgreSQL (doctor --db, or
// TAOSAGENT_DB): the database answers, which daemon holds it and whether
// its hold is renewed, and this machine's clock against the database's.
// It writes nothing to the database.
func checkCluster(ctx context.Context, e *Env) []Finding {
	const id = "cluster"
	if e.Postgres == "" {
		return ok(id, "not on PostgreSQL: the store is the home's SQLite file")
	}
	in, err := pgstore.Inspect(ctx, e.Postgres, e.timeout()*5)
	if err != nil {
		return []Finding{{ID: id, Severity: Critical, Summary: "the database does not answer: the daemon cannot run",
			Details: err.Error() + "; check that PostgreSQL runs and that --db (TAOSAGENT_DB) names it"}}
	}
	var out []Finding
	switch {
	case len(in.Daemons) > 0:
		out = append(out, clusterFindings(in)...)
	case in.Schema == 0:
		out = append(out, Finding{ID: id, Severity: OK, Summary: "the database answers; no daemon has used it yet (the first one makes its tables)"})
	case in.Holder == nil:
		out = append(out, Finding{ID: id, Severity: OK, Summary: "the database answers; no daemon holds it"})
	case in.Expired:
		out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("the hold of daemon %s on the database lapsed %s ago, unrenewed", in.Holder.Owner, in.Now.Sub(in.Holder.Expires).Round(time.Second)),
			Details: "that daemon stopped, or cannot reach the database; another daemon may take the database now"})
	default:
		out = append(out, Finding{ID: id, Severity: OK, Summary: fmt.Sprintf("daemon %s holds the database (token %d), renewed: %s left", in.Holder.Owner, in.Holder.Token, in.Holder.Expires.Sub(in.Now).Round(100*time.Millisecond))})
	}
	if skew := in.Skew.Abs(); skew > MaxSkew {
		out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("this machine's clock is %s off the database's", in.Skew.Round(time.Millisecond)),
			Details: "leases run on the database's clock, but events carry the daemons' times: keep the clocks in step (NTP, systemd-timesyncd)"})
	}
	return out
}

// clusterFindings is what cluster finds of daemons sharing the database
// (serve --cluster): which are live, and agents left without an owner
// (their daemon stopped renewing, and no live daemon may take them).
func clusterFindings(in pgstore.Inspection) []Finding {
	const id = "cluster"
	var live, gone []string
	for _, d := range in.Daemons {
		if d.Live {
			s := d.ID
			if d.Draining {
				s += " (draining)"
			}
			live = append(live, s)
		} else {
			gone = append(gone, fmt.Sprintf("%s (%s ago)", d.ID, in.Now.Sub(d.Expires).Round(time.Second)))
		}
	}
	owned := 0
	var orphans []string
	for _, le := range in.Leases {
		if le.Live {
			owned++
		} else {
			orphans = append(orphans, fmt.Sprintf("%s (its daemon %s stopped renewing %s ago)", le.Agent, le.Owner, in.Now.Sub(le.Expires).Round(time.Second)))
		}
	}
	var out []Finding
	f := Finding{ID: id, Severity: OK, Summary: fmt.Sprintf("a cluster: %d daemons live (%s), %d agents owned", len(live), strings.Join(live, ", "), owned)}
	if len(gone) > 0 {
		f.Details = "stopped: " + strings.Join(gone, ", ")
	}
	if len(live) == 0 {
		f.Severity, f.Summary = Critical, "a cluster with no live daemon: no agent runs"
	}
	out = append(out, f)
	if len(orphans) > 0 {
		out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("%d agents have no owner: %s", len(orphans), strings.Join(orphans, "; ")),
			Details: "a live daemon takes such an agent within a third of its lease; one that stays here has no live daemon its pin and its directory's storage allow (taosagent cluster pin AGENT \"\")"})
	}
	alive := map[string]bool{}
	for _, d := range in.Daemons {
		alive[d.ID] = d.Live
	}
	for _, name := range slices.Sorted(maps.Keys(in.Moves)) {
		m := in.Moves[name]
		switch {
		case m.State == pgstore.MoveFailed:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("the move of agent %s to %s failed: %s", name, m.Target, m.Error),
				Details: "nothing moved: the agent runs where it was; mend the cause, then move it again (taosagent move AGENT DAEMON)"})
		case m.State == pgstore.MovePacked && !alive[m.Target]:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("agent %s waits, packed, for the daemon %s, which is not live", name, m.Target),
				Details: "its files are in the database: start that daemon, or move the agent to another (taosagent move AGENT DAEMON)"})
		case m.Error != "":
			out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("the move of agent %s to %s is retried: %s", name, m.Target, m.Error),
				Details: "its files wait in the database; the target tries again at each round of its keeper"})
		}
	}
	return out
}
