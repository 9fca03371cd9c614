package e2e

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/testenv"
)

// discover finds a taOS install from what its units say (their command
// lines, working directories and environment files), its containers
// through the runtime's API, and LiteLLM as a model provider; without a
// terminal it writes nothing, --yes writes it (snapshot first, audited),
// and a re-run proposes only what changed.
func TestDiscoverFindsATaOSInstall(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 3*time.Minute)
	p := testenv.NewPodman(t)
	p.Container(t, "taos-desktop", nil, "sleep", "100000")
	p.Container(t, "postgres", nil, "sleep", "100000") // not taOS's

	// A synthetic taOS box: its units, LiteLLM's config and key (the
	// LiteLLM stand-in listening where its unit says), taOS's config and
	// its desktop web app.
	proxy := &scriptedmodel.LiteLLM{Model: &scriptedmodel.Server{}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	const master = "sk-litellm-master-discovered-0123456789"
	proxy.SetKey(master, "qwen3-8b", "llama3-70b")
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':')+1:]
	root := t.TempDir()
	put := func(path, content string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755)
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put("/etc/systemd/system/taos.service", "[Service]\nWorkingDirectory=/opt/taos\nExecStart=/opt/taos/venv/bin/python -m uvicorn tinyagentos.app:app --host 0.0.0.0 --port 6969\n")
	put("/etc/systemd/system/litellm.service", "[Service]\nEnvironmentFile=/etc/litellm/litellm.env\nExecStart=/opt/litellm/bin/litellm --config /etc/litellm/config.yaml --port "+port+"\n")
	put("/lib/systemd/system/cron.service", "[Service]\nExecStart=/usr/sbin/cron -f\n")
	put("/etc/litellm/config.yaml", "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n")
	put("/etc/litellm/litellm.env", "LITELLM_MASTER_KEY="+master+"\n")
	put("/etc/taos/config.yaml", "port: 6969\n")
	put("/opt/taos/desktop/package.json", `{"scripts":{"build":"vite build"}}`)

	d := start(t, "")
	discover := func(extra ...string) string {
		t.Helper()
		args := append([]string{"discover", "--home", d.home, "--root", root, "--container-socket", p.Socket}, extra...)
		b, err := exec.Command(binary, args...).CombinedOutput()
		out := string(b)
		if err != nil {
			t.Fatalf("discover %v: %v\n%s", extra, err, out)
		}
		return out
	}

	// No terminal: the proposal is shown, and nothing is written.
	out := discover()
	for _, want := range []string{"service taos (taos.service), health http://127.0.0.1:6969/api/health, config /etc/taos/config.yaml (yaml)",
		"service litellm (litellm.service), health http://127.0.0.1:" + port + "/health/liveliness, config /etc/litellm/config.yaml (yaml), config /etc/litellm/litellm.env (ini)",
		"container taos-desktop", "Found the model provider litellm: http://127.0.0.1:" + port + "/v1, its key from /etc/litellm/litellm.env (LITELLM_MASTER_KEY), models: qwen3-8b, llama3-70b",
		"not sure: /opt/taos/desktop: a web app", "Nothing was written (no terminal to ask)", `+      "unit": "litellm.service",`} {
		if !strings.Contains(out, want) {
			t.Fatalf("discover lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"cron", "postgres", master} {
		if strings.Contains(out, not) {
			t.Fatalf("discover shows %q:\n%s", not, out)
		}
	}
	if _, err := os.Stat(filepath.Join(d.home, "host.json")); err == nil {
		t.Fatal("host.json was written without a yes")
	}

	// --yes: written (valid, snapshot first, audited), and the provider added.
	out = discover("--yes")
	c, err := hostctl.Load(filepath.Join(d.home, "host.json"))
	if err != nil || len(c.Services) != 3 || len(c.Containers) != 1 || c.ContainerSocket != p.Socket {
		t.Fatalf("written: %+v %v\n%s", c, err, out)
	}
	if s, _ := c.Service("litellm"); len(s.Ports) != 1 || len(s.Configs) != 2 {
		t.Fatalf("litellm: %+v", s)
	}
	ps, err := d.c.Providers(ctx)
	if err != nil || len(ps) != 2 || ps[1].ID != "litellm" || ps[1].Kind != "litellm" || len(ps[1].Models) != 2 || !ps[1].HasKey {
		t.Fatalf("providers: %+v %v", ps, err)
	}
	audit, _ := os.ReadFile(filepath.Join(d.home, "recovery-audit.jsonl"))
	if !strings.Contains(string(audit), `"action":"discover"`) {
		t.Fatalf("audit: %s", audit)
	}

	// Again: nothing new. Then a new container: only it is proposed.
	if out = discover("--yes"); !strings.Contains(out, "Nothing new") {
		t.Fatalf("a re-run:\n%s", out)
	}
	p.Container(t, "taos-worker", nil, "sleep", "100000")
	out = discover()
	if !strings.Contains(out, "container taos-worker") || strings.Contains(out, "service taos ") || strings.Count(out, "\n+") != 4 {
		t.Fatalf("after a new container:\n%s", out)
	}
}
