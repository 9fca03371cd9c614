package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/containers"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/snapshot"
)

// checkContainers looks at every managed container: missing, not running,
// restarting in a loop, unhealthy (its own check, or its health URL), or
// running another image than its pin.
func checkContainers(ctx context.Context, e *Env) []Finding {
	const id = "containers"
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return ok(id, "not checked: the managed-host file is not valid (see host-file)")
	}
	if len(c.Containers) == 0 {
		return ok(id, "no managed container declared ("+e.Home.HostFile()+")")
	}
	var out []Finding
	states := c.LookContainers(ctx, c.Containers, time.Now())
	for i, k := range c.Containers {
		st := states[i]
		fix := "unwedge-container:" + k.Name
		if st.Problem != "" {
			f := Finding{ID: id, Severity: Error, Summary: "container " + k.Name + ": " + st.Problem}
			if strings.Contains(st.Problem, "does not answer") {
				f.Details = "is the runtime's API service running? (podman: systemctl enable --now podman.socket)"
			} else if k.Unit != "" {
				f.Recipe = fix // its unit makes it again
			}
			out = append(out, f)
			continue
		}
		for _, cs := range st.Containers {
			for _, p := range cs.Problems {
				f := Finding{ID: id, Severity: Error, Summary: "container " + k.Name + " (" + cs.Name + "): " + p, Recipe: fix}
				if strings.Contains(p, "pinned") {
					// A restart runs the same image: a person redeploys.
					f.Recipe, f.Details = "", "redeploy it from the pinned image, or change the pin in "+e.Home.HostFile()
				}
				out = append(out, f)
			}
		}
		if k.HealthURL != "" && !st.Bad() {
			if code, err := e.probe(ctx, k.HealthURL); err != nil || code/100 != 2 {
				out = append(out, Finding{ID: id, Severity: Error, Summary: "container " + k.Name + " runs but is not healthy",
					Details: fmt.Sprintf("%s answered %d", k.HealthURL, code), Recipe: fix})
			}
		}
	}
	if len(out) == 0 {
		return ok(id, plural(len(c.Containers), "managed container runs", "managed containers run")+", healthy, on their pinned images")
	}
	return out
}

// unwedgeContainer gets a wedged container going again: its settings kept
// in a snapshot record, stopped (killed after its grace, or at once when
// the stop does not take), the stopped leftover removed where the
// declaration allows it, started again (by its unit when it has one), and
// then waited for until it runs and is healthy.
func unwedgeContainer(ctx context.Context, e *Env, name string, dry bool, step func(string)) (string, error) {
	if err := needArg(name, "container"); err != nil {
		return "", err
	}
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return "", err
	}
	k, found := c.Container(name)
	if !found {
		return "", fmt.Errorf("%q is not a managed container", name)
	}
	rt := c.Runtime()
	ids, err := rt.Find(ctx, k.Selector())
	if err != nil {
		return "", err
	}
	if len(ids) == 0 && k.Unit == "" {
		return "", fmt.Errorf("no container matches %s's %s, and no unit makes it: a person must create it", name, k.Selector())
	}
	var snaps []string
	for _, id := range ids {
		d, err := rt.Inspect(ctx, id)
		if err != nil {
			return "", err
		}
		step(fmt.Sprintf("keep the settings of %s (%.12s) in a snapshot record", d.Name, id))
		if !dry {
			sn, err := snapshot.Store{Dir: e.Home.Snapshots()}.Record("container:"+name, d.Raw, "before unwedge-container")
			if err != nil {
				return "", err
			}
			snaps = append(snaps, sn.ID)
		}
		if d.State.Running || d.State.Restarting || d.State.Status == "paused" {
			step(fmt.Sprintf("stop %s, killing it after %s", d.Name, k.StopGrace()))
			if !dry {
				if err := rt.Stop(ctx, id, k.StopGrace()); err != nil {
					step("the stop failed (" + err.Error() + "): kill it")
					if err := rt.Kill(ctx, id); err != nil {
						return strings.Join(snaps, " "), err
					}
				}
			}
		}
		switch {
		case k.Unit != "" && k.RemoveLeftover:
			step(fmt.Sprintf("remove the stopped %s: its unit %s makes it again", d.Name, k.Unit))
			if !dry {
				if err := rt.Remove(ctx, id); err != nil && !errors.Is(err, containers.ErrNotFound) {
					return strings.Join(snaps, " "), err
				}
			}
		case k.Unit == "":
			step("start " + d.Name)
			if !dry {
				if err := rt.Start(ctx, id); err != nil {
					return strings.Join(snaps, " "), err
				}
			}
		}
	}
	if k.Unit != "" {
		step("systemctl restart " + k.Unit)
		if !dry {
			if _, err := e.Systemd.Restart(ctx, k.Unit); err != nil {
				return strings.Join(snaps, " "), err
			}
		}
	}
	if dry {
		step("wait until it runs and is healthy")
		return "", nil
	}
	return strings.Join(snaps, " "), e.waitContainer(ctx, c, k, step)
}

// waitContainer waits until every container k declares runs, with no
// health check failing or still starting, and its health URL answers.
func (e *Env) waitContainer(ctx context.Context, c hostctl.Config, k hostctl.Container, step func(string)) error {
	wait := e.ContainerWait
	if wait <= 0 {
		wait = time.Minute
	}
	deadline := time.Now().Add(wait)
	var last string
	for {
		st := c.LookContainer(ctx, k, time.Now())
		last = st.Problem
		ready := last == "" && len(st.Containers) > 0
		for _, cs := range st.Containers {
			if cs.State != "running" || cs.Health == "starting" || cs.Health == "unhealthy" {
				ready, last = false, fmt.Sprintf("%s is %s", cs.Name, strings.TrimSpace(cs.State+" "+cs.Health))
			}
		}
		if ready && k.HealthURL != "" {
			if code, err := e.probe(ctx, k.HealthURL); err != nil || code/100 != 2 {
				ready, last = false, fmt.Sprintf("%s answered %d", k.HealthURL, code)
			}
		}
		if ready {
			step(k.Name + " runs and is healthy")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not running and healthy after %s: %s", k.Name, wait, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond): // the runtime tells no one when a check passes
		}
	}
}
