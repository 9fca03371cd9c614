package control

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
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
)

// The gate of the App Builder: zero trust on "the agent built it". A
// submitted package is re-validated from scratch (a fresh unpack, every
// check, host names resolved and refused when they cannot be), compared
// with the last approved version of the same app, and becomes shareable
// only when a person approves that exact package, by its sha256.

// appsDir is where submitted packages are kept, by sha256.
func (s *Service) appsDir() string { return filepath.Join(s.Home, "apps") }

// AppPath is the stored package of sha256 sha.
func (s *Service) AppPath(sha string) string { return filepath.Join(s.appsDir(), sha+".taosapp") }

// SubmitApp takes a package (the bytes of a .taosapp), re-validates it and
// records it with its pre-gate report: pending a person's decision when
// it passes, refused (never shareable) when it does not. The same bytes
// again return the first record (created false).
func (s *Service) SubmitApp(ctx context.Context, a Actor, data []byte) (app eventlog.App, created bool, err error) {
	s.init()
	lim := appkit.DefaultLimits()
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	c := Call{Actor: a, Tool: "app.submit", Target: sha, Args: map[string]any{"sha256": sha, "bytes": len(data)}}
	if int64(len(data)) > lim.MaxArchive {
		return eventlog.App{}, false, s.Refuse(ctx, c, fmt.Errorf("%w: the package is larger than %d bytes", ErrTooLarge, lim.MaxArchive))
	}
	if len(data) == 0 {
		return eventlog.App{}, false, s.Refuse(ctx, c, Invalidf("package: is empty"))
	}
	if cur, err := s.Log.App(ctx, sha); err == nil {
		return cur, false, nil
	}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := os.MkdirAll(s.appsDir(), 0o700); err != nil {
			return "", err
		}
		path := s.AppPath(sha)
		if err := atomicfile.Write(path, data, 0o600); err != nil {
			return "", err
		}
		opt := appkit.Options{Resolver: s.AppResolver, Strict: true}
		if m := appkit.ReadManifest(data); m != nil {
			if prev, err := s.Log.ApprovedApp(ctx, m.ID); err == nil {
				opt.Against = s.AppPath(prev.SHA256) // what it adds over the approved version
			}
		}
		rep, err := appkit.Validate(ctx, path, opt)
		if err != nil {
			return "", err
		}
		rep.Source = sha
		report, _ := json.Marshal(rep)
		state := "pending"
		if !rep.OK {
			state = "refused"
		}
		var id, version string
		if rep.Manifest != nil {
			id, version = rep.Manifest.ID, rep.Manifest.Version
		}
		app, created, err = s.Log.AddApp(ctx, eventlog.App{SHA256: sha, ID: id, Version: version, State: state, Report: report, SubmittedBy: a.String()})
		return "", err
	})
	return app, created, err
}

// DecideApp records a person's decision on the pending package sha:
// "approve" makes it shareable, "reject" never. Only a person decides,
// and only on a package that passed the gate's checks.
func (s *Service) DecideApp(ctx context.Context, a Actor, sha, decision, message string) (eventlog.App, error) {
	c := Call{Actor: a, Tool: "app." + decision, Target: sha, Args: map[string]string{"sha256": sha, "decision": decision}}
	if err := api.CheckAppDecision(decision, message); err != nil {
		return eventlog.App{}, s.Refuse(ctx, c, Invalidf("%v", err))
	}
	if !a.Person() {
		return eventlog.App{}, s.Refuse(ctx, c, fmt.Errorf("%w: only a person decides whether an app may be shared", ErrForbidden))
	}
	cur, err := s.Log.App(ctx, sha)
	if err != nil {
		return eventlog.App{}, err
	}
	c.Args = map[string]string{"sha256": sha, "app": cur.ID, "version": cur.Version, "decision": decision}
	if cur.State == "refused" {
		return eventlog.App{}, s.Refuse(ctx, c, fmt.Errorf("app package %s failed the gate's checks: it can never be approved: %w", sha, eventlog.ErrConflict))
	}
	state := api.AppState(decision)
	var out eventlog.App
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		out, err = s.Log.DecideApp(ctx, sha, state, a.String(), Bound(message, api.MaxMessage))
		return "", err
	})
	return out, err
}

// Apps lists the submitted packages, newest first (of app id when not "").
func (s *Service) Apps(ctx context.Context, id string) ([]eventlog.App, error) {
	return s.Log.Apps(ctx, id)
}

// App returns the package of sha256 sha, with its report.
func (s *Service) App(ctx context.Context, sha string) (eventlog.App, error) {
	if len(sha) != 64 {
		return eventlog.App{}, Invalidf("sha256: want 64 hex digits")
	}
	return s.Log.App(ctx, sha)
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
func (s *Service) PreviewApp(ctx context.Context, a Actor, sha string) (string, time.Time, error) {
	s.init()
	c := Call{Actor: a, Tool: "app.preview", Target: sha, Args: map[string]string{"sha256": sha}}
	if !a.Person() {
		return "", time.Time{}, s.Refuse(ctx, c, fmt.Errorf("%w: a preview is for a person to look at", ErrForbidden))
	}
	cur, err := s.App(ctx, sha)
	if err != nil {
		return "", time.Time{}, err
	}
	if cur.State == "refused" {
		return "", time.Time{}, s.Refuse(ctx, c, fmt.Errorf("app package %s failed the gate's checks; it is not previewed: %w", sha, eventlog.ErrConflict))
	}
	data, err := os.ReadFile(s.AppPath(sha))
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
	err = s.Do(ctx, c, func(context.Context) (string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.previews == nil {
			s.previews = map[string]*preview{}
		}
		for t, q := range s.previews {
			if time.Now().After(q.expires) {
				delete(s.previews, t)
			}
		}
		s.previews[tok] = p
		return "", nil
	})
	return tok, p.expires, err
}

// PreviewFile is the file at path ("" for the entry; its name is
// returned) of the preview of
// token, with the policy its entry page declares; ErrNotFound when the
// token is unknown or expired, or the package has no such file.
func (s *Service) PreviewFile(token, path string) (name string, data []byte, policy string, err error) {
	s.mu.Lock()
	p := s.previews[token]
	s.mu.Unlock()
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
