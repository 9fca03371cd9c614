package agent_test

import (
	"testing"

	"github.com/taosagent/taosagent/internal/testenv"
)

// The domain of agents depends on no adapter: not opencode's config, not
// the sandbox, not the store.
func TestTheDomainImportsNoAdapter(t *testing.T) {
	testenv.NoDeps(t, "/internal/opencode", "/internal/sandbox", "/internal/eventlog", "/internal/supervisor", "sqlite")
}
