package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that talks to the daemon through this client carries nothing
// of the daemon: not its store (nor SQLite), its runner or its control
// service.
func TestTheClientCarriesNothingOfTheDaemon(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/internal/eventlog", "/internal/runner", "/internal/control", "/internal/supervisor", "sqlite"} {
			if strings.Contains(dep, bad) {
				t.Errorf("the client depends on %s", dep)
			}
		}
	}
}
