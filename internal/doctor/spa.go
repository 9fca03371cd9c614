package doctor

import (
	"context"
	"fmt"
	"os"

	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/spa"
)

// checkSPAs compares each web app's served files with its last build, and
// its source with what that build was made from.
func checkSPAs(ctx context.Context, e *Env) []Finding {
	const id = "spa"
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return ok(id, "not checked: the managed-host file is not valid (see host-file)")
	}
	if len(c.SPAs) == 0 {
		return ok(id, "no web app declared")
	}
	var out []Finding
	for _, a := range c.SPAs {
		fix := "rebuild-spa:" + a.Name
		last, built, err := spa.LastBuilt(e.Home.SPA(a.Name))
		switch {
		case err != nil:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: "web app " + a.Name + ": the record of its last build cannot be read", Details: err.Error(), Recipe: fix})
			continue
		case !built:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: "web app " + a.Name + " was never built by taosagent: what is served cannot be checked", Recipe: fix})
			continue
		}
		served, _, err := spa.Digest(a.Serve, nil)
		switch {
		case err != nil:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "web app " + a.Name + ": its served files cannot be read", Details: err.Error(), Recipe: fix})
			continue
		case served != last.Output:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "web app " + a.Name + ": the served files are not its last build (" + last.Time.Format("2006-01-02 15:04") + ")",
				Details: a.Serve + " changed since: by hand, or by another program", Recipe: fix})
			continue
		}
		src, _, err := spa.SourceDigest(a)
		switch {
		case err != nil:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: "web app " + a.Name + ": its source cannot be read", Details: err.Error()})
		case src != last.Source:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: "web app " + a.Name + ": its source changed since the served build (" + last.Time.Format("2006-01-02 15:04") + ")", Recipe: fix})
		}
	}
	if len(out) == 0 {
		return ok(id, plural(len(c.SPAs), "web app serves", "web apps serve")+" the last build of the source as it is")
	}
	return out
}

// rebuildSPA builds a web app in the build sandbox and serves the result.
func rebuildSPA(ctx context.Context, e *Env, name string, dry bool, step func(string)) (string, error) {
	if err := needArg(name, "app"); err != nil {
		return "", err
	}
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return "", err
	}
	a, found := c.SPA(name)
	if !found {
		return "", fmt.Errorf("%q is not a declared web app", name)
	}
	if dry {
		step(fmt.Sprintf("build %s from %s with %q in the build sandbox, then serve its %s at %s (the build it replaces kept as %s.previous)", name, a.Source, a.Build, a.Output, a.Serve, a.Serve))
		return "", nil
	}
	sb := e.Sandbox
	if sb == nil {
		sb = sandbox.New()
		if os.Geteuid() == 0 {
			sb.BuildIDs = &hostid.Pool{Range: recoveryBuilds(e.Home)}
		}
	}
	r := &spa.Rebuilder{Sandbox: sb, State: e.Home.SPA(name)}
	_, err = r.Rebuild(ctx, a, step)
	return "", err
}

// recoveryBuilds is the host uid of the recovery CLI's builds: the last
// of the build range of the uid base the home's daemon last ran with
// (serve --uid-base, recorded in the home), the default's if none did.
func recoveryBuilds(h home.Home) hostid.Range {
	base := hostid.DefaultBase
	if d, ok := h.Recorded(); ok && d.UIDBase > 0 {
		base = d.UIDBase
	}
	return hostid.RecoveryBuilds(base)
}
