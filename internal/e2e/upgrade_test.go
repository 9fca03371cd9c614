package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/testenv"
)

// upgradeTo is the second opencode release the upgrade is tested with, a
// real one from the npm registry (its integrity as the registry publishes
// it: it is not pinned in the source).
const upgradeTo = "1.18.34"

// An operator upgrades the pinned opencode under a running daemon: setup
// installs the other release beside it, checks it (integrity, --version, a
// confined instance's health, a scripted turn through the codec), switches
// the home and tells the daemon; the agent's next turn runs on it. Then a
// rollback, and the turn after runs on the pinned one again.
func TestUpgradeAndRollbackOfOpencode(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	ctx := ctxT(t, 5*time.Minute)
	setup := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, binary, append([]string{"setup", "--home", home}, args...)...)
		cmd.Env = append(os.Environ(), "TAOSAGENT_OPENCODE=") // the home's own choice, as installed
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("setup %v: %v\n%s", args, err, out)
		}
		t.Logf("setup %v:\n%s", args, out)
		return string(out)
	}
	setup("--opencode-bin", testenv.Opencode(t))
	d := startIn(t, home, []string{"TAOSAGENT_OPENCODE="})
	d.agent(ctx, "worker", "")
	turnOn := func(want string) {
		t.Helper()
		acc := d.send(ctx, "worker", "hello", "")
		if evs := d.turnOf(ctx, "worker", acc.Seq, acc.Input); last(evs).Kind != "final" {
			t.Fatalf("turn: %v %s", kinds(evs), last(evs).Data)
		}
		a, err := d.c.Agent(ctx, "worker")
		if err != nil || a.Status == nil || a.Status.Opencode != want {
			t.Fatalf("the turn ran on opencode %+v, want %s (%v)", a.Status, want, err)
		}
	}
	turnOn(opencode.Version)

	out := setup("--opencode", upgradeTo)
	if !strings.Contains(out, "came through the codec") || !strings.Contains(out, "the running daemon moves each agent") {
		t.Fatalf("upgrade output:\n%s", out)
	}
	turnOn(upgradeTo)

	out = setup("--rollback")
	if !strings.Contains(out, "runs opencode "+opencode.Version) {
		t.Fatalf("rollback output:\n%s", out)
	}
	turnOn(opencode.Version)

	es, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "opencode.reload", Outcome: "ok"})
	if err != nil || len(es) < 2 {
		t.Fatalf("audit of the switches: %+v %v", es, err)
	}
	// A version that does not exist changes nothing.
	cmd := exec.CommandContext(ctx, binary, "setup", "--home", home, "--opencode", "0.0.1")
	cmd.Env = append(os.Environ(), "TAOSAGENT_OPENCODE=")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("an upgrade to a version that does not exist succeeded:\n%s", out)
	}
	turnOn(opencode.Version)
}
