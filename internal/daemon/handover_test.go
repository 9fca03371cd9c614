package daemon

import (
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// After ignoreHangups, a SIGHUP neither ends this program, once it stops
// listening for it, nor the program it execs, before that one listens.
func TestHangupsAreIgnoredAcrossTheExec(t *testing.T) {
	if os.Getenv("TAOSAGENT_TEST_HANGUPS") == "1" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP) // as serve listens for it
		if err := ignoreHangups(); err != nil {
			os.Exit(3)
		}
		signal.Stop(hup) // as serve stops listening, before the exec
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		sh, _ := exec.LookPath("sh")
		syscall.Exec(sh, []string{"sh", "-c", "kill -HUP $$ && echo alive"}, os.Environ())
		os.Exit(4)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHangupsAreIgnoredAcrossTheExec$")
	cmd.Env = append(os.Environ(), "TAOSAGENT_TEST_HANGUPS=1")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "alive" {
		t.Fatalf("after ignoreHangups and a SIGHUP, then an exec and another: %q, %v; want it alive", out, err)
	}
}
