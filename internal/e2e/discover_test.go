package e2e

import (
	"encoding/json"
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
	sysd := testenv.NewFakeSystemd(t)
	p := testenv.NewPodman(t)
	p.Container(t, "taos-desktop", nil, "sleep", "100000")
	p.Container(t, "postgres", nil, "sleep", "100000") // not taOS's

	// LiteLLM: its stand-in, its key in its environment file, named by
	// its config.
	proxy := &scriptedmodel.LiteLLM{Model: &scriptedmodel.Server{}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	const master = "sk-litellm-master-discovered-0123456789"
	proxy.SetKey(master, "qwen3-8b", "llama3-70b")
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':')+1:]
	etc := t.TempDir()
	cfg, env := filepath.Join(etc, "config.yaml"), filepath.Join(etc, "litellm.env")
	os.WriteFile(cfg, []byte("general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"), 0o600)
	os.WriteFile(env, []byte("LITELLM_MASTER_KEY="+master+"\n"), 0o600)
	opt := filepath.Join(t.TempDir(), "taos")
	os.MkdirAll(filepath.Join(opt, "desktop"), 0o755)
	os.WriteFile(filepath.Join(opt, "desktop", "package.json"), []byte(`{"scripts":{"build":"vite build"}}`), 0o644)
	unit := func(name string, u map[string]any) {
		b, _ := json.Marshal(u)
		os.WriteFile(filepath.Join(sysd.Dir, "units", name), b, 0o600)
	}
	unit("taos.service", map[string]any{"active": "active", "sub": "running", "workdir": opt,
		"exec": []string{"/usr/bin/python3", "-m", "uvicorn", "tinyagentos.app:app", "--port", "6969"}})
	unit("litellm.service", map[string]any{"active": "active", "sub": "running", "env_files": []string{env},
		"exec": []string{"/opt/litellm/bin/litellm", "--config", cfg, "--port", port}})
	unit("cron.service", map[string]any{"active": "active", "sub": "running"})

	d := start(t, "")
	discover := func(extra ...string) string {
		t.Helper()
		args := append([]string{"discover", "--home", d.home, "--systemctl", sysd.Systemd.Systemctl, "--journalctl", sysd.Systemd.Journalctl,
			"--container-socket", p.Socket}, extra...)
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "FAKE_SYSTEMD_DIR="+sysd.Dir)
		b, err := cmd.CombinedOutput()
		out := string(b)
		if code := cmd.ProcessState.ExitCode(); err != nil && code <= 0 {
			t.Fatal(err)
		} else if code != 0 {
			t.Fatalf("discover %v: exit %d\n%s", extra, code, out)
		}
		return out
	}

	// No terminal: the proposal is shown, and nothing is written.
	out := discover()
	for _, want := range []string{"service taos (taos.service), health http://127.0.0.1:6969/api/health",
		"service litellm (litellm.service), health http://127.0.0.1:" + port + "/health/liveliness, config " + cfg + " (yaml), config " + env + " (ini)",
		"container taos-desktop", "Found the model provider litellm: http://127.0.0.1:" + port + "/v1, its key from " + env + " (LITELLM_MASTER_KEY), models: qwen3-8b, llama3-70b",
		"not sure: " + filepath.Join(opt, "desktop") + ": a web app", "Nothing was written (no terminal to ask)", `+      "unit": "litellm.service",`} {
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
