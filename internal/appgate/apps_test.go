package appgate_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/testenv"
)

// appPackage makes the scaffold app, lets edit change it, and packages it
// as the builder would (spelling checks only: the gate resolves).
func appPackage(t *testing.T, edit func(dir string)) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := appkit.New(dir, "Notes"); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(dir)
	}
	out := filepath.Join(t.TempDir(), "app.taosapp")
	if _, err := appkit.Package(context.Background(), dir, out, appkit.Options{NoResolve: true}); err != nil {
		t.Fatalf("package: %v", err)
	}
	b, _ := os.ReadFile(out)
	return b
}

// zipDir makes the scaffold, lets edit change it, and zips it as it is,
// without validating it: what a hostile builder hands the gate.
func zipDir(t *testing.T, edit func(dir string)) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := appkit.New(dir, "Notes"); err != nil {
		t.Fatal(err)
	}
	edit(dir)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, _ := zw.Create(filepath.ToSlash(rel))
		b, _ := os.ReadFile(p)
		w.Write(b)
		return nil
	})
	zw.Close()
	return buf.Bytes()
}

func editManifest(t *testing.T, dir string, f func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, appkit.ManifestName)
	b, _ := os.ReadFile(p)
	var m map[string]any
	json.Unmarshal(b, &m)
	f(m)
	b, _ = json.MarshalIndent(m, "", "  ")
	os.WriteFile(p, b, 0o644)
}

func findings(t *testing.T, a eventlog.App) map[string]string {
	t.Helper()
	var rep appkit.Report
	if err := json.Unmarshal(a.Report, &rep); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range rep.Findings {
		out[f.Rule] = string(f.Severity)
	}
	return out
}

// The gate: a package is re-validated from scratch and becomes shareable
// only when a person approves that exact package; the next version is
// compared with the approved one; the decision is audited.
func TestTheGate(t *testing.T) {
	f := controltest.New(t)
	f.Apps.AppResolver = testenv.FakeDNS{"api.example.com": "93.184.216.34"}
	ctx := t.Context()
	builder := control.Actor{Kind: control.Agent, Name: "builder", Channel: control.MCP}

	v1 := appPackage(t, nil)
	a, _, err := f.Apps.SubmitApp(ctx, builder, v1)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != "pending" || a.ID != "local.notes" || a.Version != "0.1.0" {
		t.Fatalf("submitted: %+v", a)
	}
	// The same bytes again: the same record.
	if again, created, err := f.Apps.SubmitApp(ctx, builder, v1); err != nil || created || again.SHA256 != a.SHA256 || again.State != "pending" {
		t.Fatalf("resubmitted: %+v %v", again, err)
	}
	// The agent that built it cannot approve it.
	if _, err := f.Apps.DecideApp(ctx, builder, a.SHA256, "approve", ""); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("an agent approved its own app: %v", err)
	}
	a, err = f.Apps.DecideApp(ctx, controltest.Operator, a.SHA256, "approve", "looks fine")
	if err != nil || a.State != "approved" {
		t.Fatalf("approve: %+v %v", a, err)
	}
	if _, err := f.Apps.DecideApp(ctx, controltest.Operator, a.SHA256, "reject", ""); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a decided package decided again: %v", err)
	}

	// Version 2 asks for the network and a host: the report says what it
	// adds over the approved version.
	v2 := appPackage(t, func(dir string) {
		editManifest(t, dir, func(m map[string]any) {
			m["version"] = "0.2.0"
			m["capabilities"] = []string{"network"}
			m["network_allowlist"] = []string{"https://api.example.com"}
		})
	})
	b, _, err := f.Apps.SubmitApp(ctx, builder, v2)
	if err != nil {
		t.Fatal(err)
	}
	fs := findings(t, b)
	if b.State != "pending" || fs["diff.capability-added"] != "warning" || fs["diff.host-added"] != "warning" {
		t.Fatalf("v2: %s %v", b.State, fs)
	}

	// A package with a private key, or a host that does not resolve, is
	// refused by the gate, and can never be approved.
	// (packaging refuses a private key locally: the hostile builder zips
	// its workspace itself)
	keyed := zipDir(t, func(dir string) {
		editManifest(t, dir, func(m map[string]any) { m["version"] = "0.3.0" })
		os.WriteFile(filepath.Join(dir, "deploy.js"), []byte("const key = `-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----`;\n"), 0o644)
	})
	k, _, err := f.Apps.SubmitApp(ctx, builder, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if k.State != "refused" || findings(t, k)["secret.private-key"] != "error" {
		t.Fatalf("a package with a private key: %s %v", k.State, findings(t, k))
	}
	unresolved := appPackage(t, func(dir string) {
		editManifest(t, dir, func(m map[string]any) {
			m["version"] = "0.4.0"
			m["capabilities"] = []string{"network"}
			m["network_allowlist"] = []string{"https://nowhere.example.org"}
		})
	})
	c, _, err := f.Apps.SubmitApp(ctx, builder, unresolved)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "refused" || findings(t, c)["url.unresolvable"] != "error" {
		t.Fatalf("a host the gate cannot resolve: %s %v", c.State, findings(t, c))
	}
	if _, err := f.Apps.DecideApp(ctx, controltest.Operator, c.SHA256, "approve", ""); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a refused package was approved: %v", err)
	}
	// A preview is for a person, and only of a package that passed.
	if _, _, err := f.Apps.PreviewApp(ctx, builder, b.SHA256); !errors.Is(err, control.ErrForbidden) {
		t.Fatalf("an agent opened a preview: %v", err)
	}
	if _, _, err := f.Apps.PreviewApp(ctx, controltest.Operator, c.SHA256); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a refused package was previewed: %v", err)
	}
	tok, _, err := f.Apps.PreviewApp(ctx, controltest.Operator, b.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if name, page, policy, err := f.Apps.PreviewFile(tok, ""); err != nil || name != "index.html" || len(page) == 0 || !strings.Contains(policy, "default-src 'self'") {
		t.Fatalf("preview entry: %s %v %q", name, err, policy)
	}
	if _, _, _, err := f.Apps.PreviewFile(tok, "../manifest.json"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a path out of the package: %v", err)
	}
	// Bad input changes nothing.
	if _, _, err := f.Apps.SubmitApp(ctx, builder, []byte("not a zip")); err != nil {
		t.Fatalf("a non-archive is a refused record, not an error: %v", err)
	}
	if _, err := f.Apps.DecideApp(ctx, controltest.Operator, b.SHA256, "maybe", ""); err == nil {
		t.Fatal("a bad decision was taken")
	}
	// The audit has the submissions, the refusal of the agent and the approval.
	var approved, forbidden bool
	for _, e := range f.Audit(t, "app.approve") {
		approved = approved || (e.Phase == "outcome" && e.Outcome == "ok" && strings.HasPrefix(e.Actor, "operator"))
		forbidden = forbidden || (e.Outcome == "refused" && strings.HasPrefix(e.Actor, "agent builder"))
	}
	if !approved || !forbidden || len(f.Audit(t, "app.submit")) == 0 {
		t.Fatalf("audit: approve %v, refused agent %v", approved, forbidden)
	}
}
