package doctor_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/testenv"
)

// rebuild-spa builds a web app in the build sandbox and swaps what is
// served in one rename, the previous build kept; a failed build, an
// output holding a link, or a page that no longer answers changes nothing
// served. doctor tells a served build that is not the last one, and a
// source changed since.
func TestRebuildSPAServesTheNewBuildAndRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the build sandbox")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sysd := testenv.NewFakeSystemd(t)
	h := home.Home{Dir: t.TempDir()}
	src, www := t.TempDir(), t.TempDir()
	serve := filepath.Join(www, "site")
	put := func(name, content string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("index.html", "<!doctype html><title>taOS</title>")
	put("VERSION", "1")
	// The build: version "link" plants a link, "noindex" drops the page,
	// "fail" fails.
	put("build.sh", `set -e
v=$(cat VERSION)
[ "$v" = fail ] && { echo "the build broke" >&2; exit 1; }
mkdir -p dist
[ "$v" = noindex ] || cp index.html dist/
echo "$v" > dist/version.txt
[ "$v" = link ] && ln -s /etc/shadow dist/shadow
true
`)
	os.MkdirAll(filepath.Join(src, "node_modules", "dep"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(src, "passwd")) // copied as a link, never followed by root

	port := freePortNumber(t)
	sysd.ExecUnit(t, "web.service", "/bin/busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", port), "-h", www)
	if _, err := sysd.Systemd.Start(ctx, "web.service"); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/site/", port)
	os.WriteFile(h.HostFile(), fmt.Appendf(nil, `{"services":[{"name":"web","unit":"web.service","ports":[%d]}],
		"spas":[{"name":"app","source":%q,"build":["sh","build.sh"],"output":"dist","serve":%q,"service":"web","url":%q}]}`,
		port, src, serve, base+"index.html"), 0o600)
	e := &doctor.Env{Home: h, Systemd: sysd.Systemd}
	fx := &doctor.Fixer{Env: e, Confirm: func(doctor.Recipe, string, []string) bool { return true }}
	served := func(file string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(serve, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	spa := func() []doctor.Finding {
		t.Helper()
		fs, err := doctor.Run(ctx, e.Fresh(), "spa")
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	if fs := spa(); len(fs) != 1 || fs[0].Recipe != "rebuild-spa:app" || !strings.Contains(fs[0].Summary, "never built") {
		t.Fatalf("before a build: %+v", fs)
	}

	// The first build: served where nothing was; the page answers.
	if err := fx.Apply(ctx, "rebuild-spa:app", false); err != nil {
		t.Fatal(err)
	}
	waitPage(t, base+"version.txt", "1")
	if fs := spa(); len(fs) != 1 || fs[0].Severity != doctor.OK {
		t.Fatalf("after the build: %+v", fs)
	}

	// The source changes: doctor says so; a rebuild serves it, keeping
	// the previous build beside it.
	put("VERSION", "2")
	if fs := spa(); len(fs) != 1 || fs[0].Severity != doctor.Warning || !strings.Contains(fs[0].Summary, "source changed") {
		t.Fatalf("a changed source: %+v", fs)
	}
	if err := fx.Apply(ctx, "rebuild-spa:app", false); err != nil {
		t.Fatal(err)
	}
	waitPage(t, base+"version.txt", "2")
	if b, _ := os.ReadFile(filepath.Join(www, "site.previous", "version.txt")); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("the previous build: %q", b)
	}

	// What cannot be served changes nothing served.
	for v, want := range map[string]string{"fail": "the build broke", "link": "is a link", "noindex": "the previous build is served again"} {
		put("VERSION", v)
		err := fx.Apply(ctx, "rebuild-spa:app", false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("version %s: %v, want %q", v, err, want)
		}
		if got := served("version.txt"); got != "2" {
			t.Fatalf("after version %s, %s is served", v, got)
		}
		if _, err := os.Lstat(filepath.Join(serve, "shadow")); err == nil {
			t.Fatal("a link reached the served files")
		}
	}
	waitPage(t, base+"version.txt", "2")
	put("VERSION", "2")
	if fs := spa(); len(fs) != 1 || fs[0].Severity != doctor.OK {
		t.Fatalf("back at version 2: %+v", fs)
	}

	// The served files changed by hand: doctor says they are not the
	// last build.
	os.WriteFile(filepath.Join(serve, "index.html"), []byte("defaced"), 0o644)
	if fs := spa(); len(fs) != 1 || fs[0].Severity != doctor.Error || !strings.Contains(fs[0].Summary, "not its last build") {
		t.Fatalf("defaced: %+v", fs)
	}
}

// waitPage waits until url answers want (the web server has its own pace).
func waitPage(t *testing.T, url, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got = strings.TrimSpace(string(b)); got == want {
			return
		}
	}
	t.Fatalf("%s: %q, want %q", url, got, want)
}
