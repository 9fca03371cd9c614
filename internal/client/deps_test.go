package client_test

import (
	"testing"

	"github.com/taosagent/taosagent/internal/testenv"
)

// A program that talks to the daemon through this client carries nothing
// of the daemon: not its store (nor SQLite), its runner, its supervisor or
// its control service.
func TestTheClientCarriesNothingOfTheDaemon(t *testing.T) {
	testenv.NoDeps(t, "/internal/eventlog", "/internal/runner", "/internal/control", "/internal/supervisor", "sqlite")
}
