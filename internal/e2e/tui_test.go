package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/testenv"
)

// tmux runs tmux on a server of the test's own.
type tmux struct {
	t      *testing.T
	socket string
}

func (x tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", x.socket}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen waits until the pane shows want, and returns it.
func (x tmux) screen(want string, within time.Duration) string {
	x.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := x.run("capture-pane", "-p", "-t", "tui")
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("the screen never showed %q:\n%s", want, s)
		}
		time.Sleep(200 * time.Millisecond) // a terminal has no change feed
	}
}

// `taosagent tui` opens opencode's own TUI on the host agent, under tmux as
// a person would run it: it attaches, with the host's taos tools
// connected; a message typed there is answered, and the turn is in the
// event log like any other.
func TestTUIUnderTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (make deps installs it)")
	}
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	x := tmux{t: t, socket: fmt.Sprintf("taosagent-test-%d", os.Getpid())}
	cmd := fmt.Sprintf("env TAOSAGENT_OPENCODE=%s %s tui --home %s --addr %s; sleep 60", testenv.Opencode(t), binary, d.home, d.addr)
	x.run("new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	x.screen("taos Connected", time.Minute) // opencode's TUI, with taosagent's MCP tools
	x.run("send-keys", "-t", "tui", "-l", "hello from the terminal")
	x.screen("hello from the terminal", 10*time.Second)
	x.run("send-keys", "-t", "tui", "Enter")

	var turn string
	var final client.Event
	err := d.c.Stream(ctx, "host", 0, func(e client.Event) bool {
		if e.Kind == "turn.started" && e.Field("mode") == "attached" {
			turn = e.Turn
		}
		if turn != "" && e.Turn == turn && (e.Kind == "final" || e.Kind == "error") {
			final = e
			return false
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if final.Kind != "final" || final.Field("text") != scriptedmodel.Answer {
		t.Fatalf("the TUI's turn ended with %s %s", final.Kind, final.Data)
	}
	x.screen(scriptedmodel.Answer, 10*time.Second)
	stdout, _, code := d.run("events", "host", "--home", d.home, "--addr", d.addr)
	if code != 0 || !strings.Contains(stdout, `"mode":"attached"`) || !strings.Contains(stdout, scriptedmodel.Answer) {
		t.Errorf("taosagent events host:\n%s", stdout)
	}
}

// `taosagent fix --chat` under tmux: the recovery assistant (a confined
// opencode on the scripted model, reached directly) is handed doctor's
// findings, picks a recipe, and the person confirms it at the terminal;
// the recipe acts, and it is audited.
func TestFixChatUnderTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (make deps installs it)")
	}
	r := newRecovery(t, false)
	os.WriteFile(filepath.Join(r.sysd.Dir, "units", "app.service"), []byte(`{"active":"failed","sub":"failed","pid":0}`), 0o600)
	_, modelURL := testenv.Model(t)
	x := tmux{t: t, socket: fmt.Sprintf("taosagent-fix-%d", os.Getpid())}
	cmd := fmt.Sprintf("env TAOSAGENT_OPENCODE=%s FAKE_SYSTEMD_DIR=%s %s fix --chat --home %s --listen %s --systemctl %s --journalctl %s --model-url %s --model %s; sleep 60",
		testenv.Opencode(t), r.sysd.Dir, binary, r.home, r.addr, r.sysd.Systemd.Systemctl, r.sysd.Systemd.Journalctl, modelURL, scriptedmodel.Models[0].ID)
	x.run("new-session", "-d", "-s", "tui", "-x", "200", "-y", "50", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	x.screen("service app is failed", 30*time.Second) // doctor's findings first
	x.screen("recovery>", 2*time.Minute)
	x.run("send-keys", "-t", "tui", "-l", `call recovery_fix {"recipe":"restart-service:app"}`)
	x.run("send-keys", "-t", "tui", "Enter")
	x.screen("Go ahead? [y/N]", time.Minute)
	if slices.ContainsFunc(r.sysd.Calls(), func(c string) bool { return strings.HasPrefix(c, "systemctl restart") }) {
		t.Fatal("the recipe ran before the person confirmed it")
	}
	x.run("send-keys", "-t", "tui", "y", "Enter")
	x.screen("The tool finished", time.Minute)
	if !slices.ContainsFunc(r.sysd.Calls(), func(c string) bool { return strings.HasPrefix(c, "systemctl restart app.service") }) {
		t.Fatalf("no restart: %q", r.sysd.Calls())
	}
	b, _ := os.ReadFile(filepath.Join(r.home, "recovery-audit.jsonl"))
	if !strings.Contains(string(b), `"action":"fix.restart-service"`) || !strings.Contains(string(b), `"outcome":"ok"`) {
		t.Errorf("recovery audit:\n%s", b)
	}
	x.run("send-keys", "-t", "tui", "-l", "exit")
	x.run("send-keys", "-t", "tui", "Enter")
}
