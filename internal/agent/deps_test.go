package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The domain of agents depends on no adapter: not opencode's config, not
// the sandbox, not the store.
func TestTheDomainImportsNoAdapter(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/internal/opencode", "/internal/sandbox", "/internal/eventlog", "/internal/supervisor", "sqlite"} {
			if strings.Contains(dep, bad) {
				t.Errorf("agent depends on %s", dep)
			}
		}
	}
}
