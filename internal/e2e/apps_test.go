package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The gate through the CLI and the API: the builder's workspace is
// submitted, re-validated by the daemon, pending; a person approves it by
// its sha256; the list shows it approved.
func TestAppSubmitAndApproveThroughTheCLI(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctxT(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "notes")
	if out, errs, code := d.run("app", "new", "Notes", "--dir", dir); code != 0 {
		t.Fatalf("app new: %s %s", out, errs)
	}
	out, errs, code := d.run("app", "submit", dir)
	if code != 0 || !strings.Contains(out, "local.notes 0.1.0") || !strings.Contains(out, ": pending") {
		t.Fatalf("app submit (exit %d): %s %s", code, out, errs)
	}
	sha := regexp.MustCompile(`[0-9a-f]{64}`).FindString(out)
	// A person previews it: a capability address, served from an opaque
	// origin (a sandbox with scripts only) under the app's own policy too.
	code, body := request(t, "POST", d.addr+"/v1/apps/"+sha+"/preview", d.c.Token, "")
	if code != 200 {
		t.Fatalf("preview: %d %s", code, body)
	}
	var pv struct{ URL string }
	json.Unmarshal([]byte(body), &pv)
	resp, err := http.Get(d.addr + pv.URL) // no token: the address is the capability
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Values("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<!doctype html>") || len(csp) != 2 || csp[0] != "sandbox allow-scripts" ||
		!strings.Contains(csp[1], "connect-src 'self'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("preview page: %d %v %q", resp.StatusCode, resp.Header, page[:min(len(page), 80)])
	}
	resp, _ = http.Get(d.addr + pv.URL + "app.js")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("preview script: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp.Body.Close()
	for _, u := range []string{pv.URL + "../../v1/agents", pv.URL + "nothere.js", "/apps/preview/" + strings.Repeat("0", 48) + "/"} {
		resp, _ := http.Get(d.addr + u)
		if resp.StatusCode == 200 {
			t.Errorf("%s: served", u)
		}
		resp.Body.Close()
	}
	out, errs, code = d.run("app", "approve", sha, "--message", "tried it")
	if code != 0 || !strings.Contains(out, "approved by") {
		t.Fatalf("app approve (exit %d): %s %s", code, out, errs)
	}
	out, _, _ = d.run("app", "list")
	if !strings.Contains(out, "approved") || !strings.Contains(out, sha) {
		t.Fatalf("app list:\n%s", out)
	}
	// Not a package: refused, exit 1, nothing shareable.
	bad := filepath.Join(t.TempDir(), "bad.taosapp")
	writeFile(t, bad, "not a zip")
	if out, _, code := d.run("app", "submit", bad); code != 1 || !strings.Contains(out, "refused") {
		t.Fatalf("a non-archive: exit %d\n%s", code, out)
	}
	if code, body := request(t, "POST", d.addr+"/v1/apps/"+sha+"/decision", d.c.Token, `{"decision":"maybe"}`); code != 422 {
		t.Fatalf("a bad decision: %d %s", code, body)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
