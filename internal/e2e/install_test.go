package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/testenv"
)

// The install script in a temp root, with the systemd stand-in: install
// (binary, home, pinned opencode, token, unit enabled and started: the
// daemon answers), reinstall (nothing changes, the daemon keeps running),
// uninstall (the service and binary go, the home stays), and --purge.
func TestInstallScriptInATempRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := testenv.NewFakeSystemd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "install.sh")
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	install := func(extra ...string) string {
		t.Helper()
		args := append([]string{"--root", root, "--listen", addr, "--opencode-bin", testenv.Opencode(t),
			"--systemctl", f.Systemd.Systemctl, "--journalctl", f.Systemd.Journalctl}, extra...)
		cmd := exec.Command(script, args...)
		cmd.Env = append(append(os.Environ(), "TAOSAGENT_BIN="+binary, "FAKE_SYSTEMD_UNIT_PATH="+unitDir), f.Systemd.Env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh %v: %v\n%s", extra, err, out)
		}
		t.Logf("install.sh %v:\n%s", extra, out)
		return string(out)
	}
	bin := filepath.Join(root, "usr", "local", "bin", "taosagent")
	homeDir := filepath.Join(root, "var", "lib", "taosagent")
	unit := filepath.Join(unitDir, "taosagent.service")
	t.Cleanup(func() {
		exec.Command(f.Systemd.Systemctl, "stop", "taosagent.service").Run() // whatever a failure left running
	})

	install()
	for path, mode := range map[string]os.FileMode{bin: 0o755, homeDir: 0o700, filepath.Join(homeDir, "token"): 0o600, unit: 0o644} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v; want %04o", path, err, st, mode)
		}
	}
	u, _ := os.ReadFile(unit)
	if !strings.Contains(string(u), "ExecStart="+bin+" serve --home "+homeDir+" --listen "+addr) {
		t.Fatalf("unit:\n%s", u)
	}
	token, _ := os.ReadFile(filepath.Join(homeDir, "token"))
	healthy := func() bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/agents", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	ctx := ctxT(t, 2*time.Minute)
	waitFor(t, ctx, healthy) // the service the unit started answers
	calls := strings.Join(f.Calls(), "\n")
	if !strings.Contains(calls, "enable taosagent.service") || !strings.Contains(calls, "start taosagent.service") {
		t.Fatalf("systemctl calls:\n%s", calls)
	}
	before, _ := os.ReadFile(unit)
	binBefore, _ := os.Stat(bin)

	// Again: nothing changes, the daemon is left running.
	out := install()
	if !strings.Contains(out, "nothing to change") || strings.Contains(out, "restarted") {
		t.Fatalf("a second install changed something:\n%s", out)
	}
	if after, _ := os.ReadFile(unit); string(after) != string(before) {
		t.Fatal("the unit changed")
	}
	if st, _ := os.Stat(bin); !st.ModTime().Equal(binBefore.ModTime()) {
		t.Fatal("the binary was rewritten")
	}
	if !healthy() {
		t.Fatal("the daemon stopped answering after a reinstall")
	}

	// Uninstall: the service stops, the unit and the binary go, the home stays.
	install("--uninstall")
	for _, p := range []string{unit, bin} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after --uninstall", p)
		}
	}
	if _, err := os.Stat(filepath.Join(homeDir, "token")); err != nil {
		t.Errorf("the home was not kept: %v", err)
	}
	if healthy() {
		t.Error("the daemon still answers after --uninstall")
	}
	install("--uninstall", "--purge")
	if _, err := os.Stat(homeDir); !os.IsNotExist(err) {
		t.Errorf("the home is still there after --purge: %v", err)
	}
}
