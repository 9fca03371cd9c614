package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppNewValidatePackage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "notes")
	if code, _, errOut := run("app", "new", "Notes", "--dir", dir); code != 0 {
		t.Fatalf("app new: exit %d: %s", code, errOut)
	}
	code, out, errOut := run("app", "validate", dir, "--offline")
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("validate scaffold: exit %d\n%s%s", code, out, errOut)
	}
	pkg := filepath.Join(t.TempDir(), "notes.taosapp")
	code, out, errOut = run("app", "package", dir, "--out", pkg, "--offline")
	if code != 0 || !strings.Contains(out, "sha256") {
		t.Fatalf("package: exit %d\n%s%s", code, out, errOut)
	}
	// JSON report of the archive.
	code, out, _ = run("app", "validate", "--json", "--offline", pkg)
	var rep struct {
		OK       bool   `json:"ok"`
		SHA256   string `json:"sha256"`
		Findings []any  `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.OK || len(rep.SHA256) != 64 {
		t.Fatalf("validate --json: exit %d, %v\n%s", code, err, out)
	}

	// A failing app: exit 1, findings printed, no archive written.
	os.WriteFile(filepath.Join(dir, "index.html"), []byte(`<script src="http://evil.example.net/x.js"></script>`), 0o644)
	code, out, _ = run("app", "validate", dir, "--offline")
	if code != 1 || !strings.Contains(out, "web.script-source") || !strings.Contains(out, "web.csp-missing") || !strings.Contains(out, "FAIL") {
		t.Fatalf("validate failing app: exit %d\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.taosapp")
	if code, _, _ := run("app", "package", dir, "--out", bad, "--offline"); code != 1 {
		t.Fatalf("package of a failing app: exit %d", code)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("an archive was written for a failing app")
	}
}

func TestAppUsage(t *testing.T) {
	for _, args := range [][]string{{"app"}, {"app", "frob"}, {"app", "validate"}, {"app", "new"}, {"app", "validate", "a", "b"}} {
		if code, _, _ := run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := run("app", "validate", "/nonexistent/app"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing path: exit %d %s", code, errOut)
	}
}

func TestSandboxRun(t *testing.T) {
	ws, err := os.MkdirTemp("", "taosagent-cli-ws-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(ws)
	code, out, errOut := run("sandbox", "run", "--workspace", ws, "--", "/bin/sh", "-c", "echo hi > f; cat f; exit 3")
	if code != 3 || out != "hi\n" || !strings.Contains(errOut, "sandbox: exit 3") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if data, _ := os.ReadFile(filepath.Join(ws, "f")); string(data) != "hi\n" {
		t.Fatalf("workspace file = %q", data)
	}
	code, out, _ = run("sandbox", "run", "--workspace", ws, "--wall", "500ms", "--json", "--", "/bin/sleep", "60")
	var res struct {
		LimitHit string `json:"limit_hit"`
	}
	if json.Unmarshal([]byte(out), &res); code != 137 || res.LimitHit != "wall" {
		t.Fatalf("wall limit: exit %d, %s", code, out)
	}
	for _, args := range [][]string{
		{"sandbox"}, {"sandbox", "run", "--", "true"}, {"sandbox", "run", "--workspace", ws},
		{"sandbox", "run", "--workspace", ws, "--memory", "lots", "--", "true"},
	} {
		if code, _, _ := run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
