package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/supervisor"
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
	self := binary
	install := func(extra ...string) string {
		t.Helper()
		args := append([]string{"--root", root, "--listen", addr, "--opencode-bin", testenv.Opencode(t),
			"--systemctl", f.Systemd.Systemctl, "--journalctl", f.Systemd.Journalctl}, extra...)
		cmd := exec.Command(script, args...)
		cmd.Env = append(append(os.Environ(), "TAOSAGENT_BIN="+self, "FAKE_SYSTEMD_UNIT_PATH="+unitDir), f.Systemd.Env...)
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

	// An upgrade under a running turn: install of a rebuilt binary hands
	// the daemon over to it in place (a reload, not a restart); the turn
	// ends final on the same opencode process, the daemon keeps its pid.
	c := &client.Client{Base: "http://" + addr, Token: strings.TrimSpace(string(token))}
	warm, err := c.Send(ctx, "host", client.Message{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	waitTurn := func(acc client.Accepted) client.Event {
		var end client.Event
		c.Stream(ctx, "host", acc.Seq-1, func(e client.Event) bool {
			if e.Kind == "final" || e.Kind == "error" {
				end = e
				return false
			}
			return true
		})
		return end
	}
	if e := waitTurn(warm); e.Kind != "final" {
		t.Fatalf("the turn before the upgrade ended %s", e.Kind)
	}
	host, _ := c.Agent(ctx, "host")
	daemonPID := func() int {
		b, _ := os.ReadFile(filepath.Join(homeDir, "daemon.json"))
		var d struct{ PID int }
		json.Unmarshal(b, &d)
		return d.PID
	}
	pid := daemonPID()
	slow, err := c.Send(ctx, "host", client.Message{Text: "slow please"})
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := filepath.Join(t.TempDir(), "taosagent")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rebuilt, append(b, 0), 0o755); err != nil { // other bytes, the same program
		t.Fatal(err)
	}
	self = rebuilt
	owner := func() uint32 {
		st, err := os.Stat(filepath.Join(homeDir, "agents", "host", "work"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Uid
	}
	agentUID := owner()
	if out := install(); !strings.Contains(out, "handed over") {
		t.Fatalf("an install of a rebuilt binary:\n%s", out)
	}
	if e := waitTurn(slow); e.Kind != "final" {
		log, _ := os.ReadFile(filepath.Join(f.Dir, "taosagent.service.log"))
		oc, _ := os.ReadFile(filepath.Join(homeDir, "agents", "host.instance", "opencode.log"))
		t.Fatalf("the turn under the upgrade ended %s: %s\ndaemon log:\n%s\nopencode log:\n%s", e.Kind, e.Field("message"), log, oc)
	}
	// The new program has adopted the instance: the hand-over is over.
	waitFor(t, ctx, func() bool {
		log, _ := os.ReadFile(filepath.Join(f.Dir, "taosagent.service.log"))
		return strings.Contains(string(log), "state=adopted")
	})
	after, _ := c.Agent(ctx, "host")
	if after.Status.PID != host.Status.PID || daemonPID() != pid {
		t.Errorf("opencode %d → %d, the daemon %d → %d: want both kept", host.Status.PID, after.Status.PID, pid, daemonPID())
	}
	if u := owner(); u != agentUID {
		t.Errorf("the install handed the agent's tree from uid %d to %d", agentUID, u)
	}
	if st, _ := os.Stat(bin); st.Size() != int64(len(b)+1) {
		t.Error("the rebuilt binary was not installed")
	}

	// Uninstall: the service stops, the unit and the binary go, the home stays.
	install("--uninstall")
	// The stop left no instance running (the instances outlive only a
	// daemon that dies or hands over).
	if pids, err := supervisor.Leftovers(filepath.Join(homeDir, "run")); err != nil || len(pids) > 0 {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		log, _ := os.ReadFile(filepath.Join(f.Dir, "taosagent.service.log"))
		t.Errorf("opencode processes left running after the service stopped: %v %v\ndaemon log:\n%s", pids, err, log)
	}
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
