package appgate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
)

// The gate of the App Builder: zero trust on "the agent built it". A
// submitted package is re-validated from scratch (a fresh unpack, every
// check, host names resolved and refused when they cannot be), compared
// with the last approved version of the same app, and becomes shareable
// only when a person approves that exact package, by its sha256.

// appsDir is where submitted packages are kept, by sha256.
func (g *Gate) appsDir() string { return filepath.Join(g.Control.Home, "apps") }

// AppPath is the stored package of sha256 sha.
func (g *Gate) AppPath(sha string) string { return filepath.Join(g.appsDir(), sha+".taosapp") }

// SubmitApp takes a package (the bytes of a .taosapp), re-validates it and
// records it with its pre-gate report: pending a person's decision when
// it passes, refused (never shareable) when it does not. The same bytes
// again return the first record (created false).
func (g *Gate) SubmitApp(ctx context.Context, a control.Actor, data []byte) (app eventlog.App, created bool, err error) {
	g.init()
	lim := appkit.DefaultLimits()
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	c := control.Call{Actor: a, Tool: "app.submit", Target: sha, Args: map[string]any{"sha256": sha, "bytes": len(data)}}
	if int64(len(data)) > lim.MaxArchive {
		return eventlog.App{}, false, g.Control.Refuse(ctx, c, fmt.Errorf("%w: the package is larger than %d bytes", control.ErrTooLarge, lim.MaxArchive))
	}
	if len(data) == 0 {
		return eventlog.App{}, false, g.Control.Refuse(ctx, c, control.Invalidf("package: is empty"))
	}
	if cur, err := g.Control.Log.App(ctx, sha); err == nil {
		return cur, false, nil
	}
	err = g.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := os.MkdirAll(g.appsDir(), 0o700); err != nil {
			return "", err
		}
		path := g.AppPath(sha)
		if err := atomicfile.Write(path, data, 0o600); err != nil {
			return "", err
		}
		opt := appkit.Options{Resolver: g.AppResolver, Strict: true}
		if m := appkit.ReadManifest(data); m != nil {
			if prev, err := g.Control.Log.ApprovedApp(ctx, m.ID); err == nil {
				opt.Against = g.AppPath(prev.SHA256) // what it adds over the approved version
			}
		}
		rep, err := appkit.Validate(ctx, path, opt)
		if err != nil {
			return "", err
		}
		rep.Source = sha
		report, _ := json.Marshal(rep)
		state := api.AppPending
		if !rep.OK {
			state = api.AppRefused
		}
		var id, version string
		if rep.Manifest != nil {
			id, version = rep.Manifest.ID, rep.Manifest.Version
		}
		app, created, err = g.Control.Log.AddApp(ctx, eventlog.App{SHA256: sha, ID: id, Version: version, State: state, Report: report, SubmittedBy: a.String()})
		return "", err
	})
	return app, created, err
}

// DecideApp records a person's decision on the pending package sha:
// "approve" makes it shareable, "reject" never. Only a person decides,
// and only on a package that passed the gate's checks.
func (g *Gate) DecideApp(ctx context.Context, a control.Actor, sha, decision, message string) (eventlog.App, error) {
	c := control.Call{Actor: a, Tool: "app." + decision, Target: sha, Args: map[string]string{"sha256": sha, "decision": decision}}
	if err := api.CheckAppDecision(decision, message); err != nil {
		return eventlog.App{}, g.Control.Refuse(ctx, c, control.Invalidf("%v", err))
	}
	if !a.Person() {
		return eventlog.App{}, g.Control.Refuse(ctx, c, fmt.Errorf("%w: only a person decides whether an app may be shared", control.ErrForbidden))
	}
	cur, err := g.Control.Log.App(ctx, sha)
	if err != nil {
		return eventlog.App{}, err
	}
	c.Args = map[string]string{"sha256": sha, "app": cur.ID, "version": cur.Version, "decision": decision}
	if cur.State == api.AppRefused {
		return eventlog.App{}, g.Control.Refuse(ctx, c, fmt.Errorf("app package %s failed the gate's checks: it can never be approved: %w", sha, eventlog.ErrConflict))
	}
	state := api.AppState(decision)
	var out eventlog.App
	err = g.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		out, err = g.Control.Log.DecideApp(ctx, sha, state, a.String(), control.Bound(message, api.MaxMessage))
		return "", err
	})
	return out, err
}

// Apps lists the submitted packages, newest first (of app id when not "").
func (g *Gate) Apps(ctx context.Context, id string) ([]eventlog.App, error) {
	return g.Control.Log.Apps(ctx, id)
}

// App returns the package of sha256 sha, with its report.
func (g *Gate) App(ctx context.Context, sha string) (eventlog.App, error) {
	if len(sha) != 64 {
		return eventlog.App{}, control.Invalidf("sha256: want 64 hex digits")
	}
	return g.Control.Log.App(ctx, sha)
}

// PreviewTTL is how long a preview address works.
const PreviewTTL = time.Hour

// preview is a capability to look at one package's files.
type preview struct {
	sha     string
	files   map[string][]byte
	entry   string
	policy  string
	expires time.Time
}

// PreviewApp opens a preview of package sha for a person: it returns a
// token, the capability part of the preview's address, good for
// PreviewTTL. Only a package that passed the gate's checks is previewed.
func (g *Gate) PreviewApp(ctx context.Context, a control.Actor, sha string) (string, time.Time, error) {
	g.init()
	c := control.Call{Actor: a, Tool: "app.preview", Target: sha, Args: map[string]string{"sha256": sha}}
	if !a.Person() {
		return "", time.Time{}, g.Control.Refuse(ctx, c, fmt.Errorf("%w: a preview is for a person to look at", control.ErrForbidden))
	}
	cur, err := g.App(ctx, sha)
	if err != nil {
		return "", time.Time{}, err
	}
	if cur.State == api.AppRefused {
		return "", time.Time{}, g.Control.Refuse(ctx, c, fmt.Errorf("app package %s failed the gate's checks; it is not previewed: %w", sha, eventlog.ErrConflict))
	}
	data, err := os.ReadFile(g.AppPath(sha))
	if err != nil {
		return "", time.Time{}, err
	}
	files, err := appkit.Files(data)
	if err != nil {
		return "", time.Time{}, err
	}
	var rep appkit.Report
	json.Unmarshal(cur.Report, &rep)
	entry := "index.html"
	if rep.Manifest != nil && rep.Manifest.Entry != "" {
		entry = rep.Manifest.Entry
	}
	tok := randid.Hex(24)
	p := &preview{sha: sha, files: files, entry: entry, policy: appkit.PagePolicy(files[entry]), expires: time.Now().Add(PreviewTTL)}
	err = g.Control.Do(ctx, c, func(context.Context) (string, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		for t, q := range g.previews {
			if time.Now().After(q.expires) {
				delete(g.previews, t)
			}
		}
		g.previews[tok] = p
		return "", nil
	})
	return tok, p.expires, err
}

// PreviewFile is the file at path ("" for the entry; its name is
// returned) of the preview of
// token, with the policy its entry page declares; ErrNotFound when the
// token is unknown or expired, or the package has no such file.
func (g *Gate) PreviewFile(token, path string) (name string, data []byte, policy string, err error) {
	g.mu.Lock()
	p := g.previews[token]
	g.mu.Unlock()
	if p == nil || time.Now().After(p.expires) {
		return "", nil, "", fmt.Errorf("preview: %w", eventlog.ErrNotFound)
	}
	if path == "" {
		path = p.entry
	}
	data, ok := p.files[path]
	if !ok {
		return "", nil, "", fmt.Errorf("%s: %w", path, eventlog.ErrNotFound)
	}
	return path, data, p.policy, nil
}
