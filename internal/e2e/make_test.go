package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// `make run` installs only what running needs: the tests' browser and
// terminal multiplexer (hundreds of MB) come with `make test`. Run with no
// command on PATH, so that every check finds its command missing.
func TestMakeRunInstallsOnlyWhatRunningNeeds(t *testing.T) {
	t.Parallel()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	dry := func(target string) string {
		cmd := exec.Command(mk, "-n", "-C", "../..", target)
		cmd.Env = []string{"PATH=/nonexistent"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %s: %v\n%s", target, err, out)
		}
		return string(out)
	}
	run, test := dry("run"), dry("test")
	for _, pkg := range []string{"tmux", "chromium", "procps"} {
		if strings.Contains(run, pkg) {
			t.Errorf("make run would install %s:\n%s", pkg, run)
		}
		if !strings.Contains(test, pkg) {
			t.Errorf("make test would not install %s:\n%s", pkg, test)
		}
	}
	for _, pkg := range []string{"npm", "bubblewrap"} {
		if !strings.Contains(run, pkg) {
			t.Errorf("make run would not install %s:\n%s", pkg, run)
		}
	}
}
