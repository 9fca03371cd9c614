package doctor

import (
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostid"
)

// The recovery CLI's builds run as the last uid of the build range of
// the uid base the home's daemon ran with, not of the default base: with
// serve --uid-base, the default's range is not taosagent's.
func TestRecoveryBuildsTakeTheirUIDFromTheDaemonsRange(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	if got, want := recoveryBuilds(h), hostid.RecoveryBuilds(hostid.DefaultBase); got != want {
		t.Fatalf("no daemon ever ran: %v, want the default's %v", got, want)
	}
	const base = 3_000_000
	if err := h.Record(home.Daemon{PID: 1, Addr: "127.0.0.1:1", Started: time.Now(), UIDBase: base}); err != nil {
		t.Fatal(err)
	}
	got, want := recoveryBuilds(h), hostid.RecoveryBuilds(base)
	if got != want || got == hostid.RecoveryBuilds(hostid.DefaultBase) {
		t.Fatalf("a daemon ran with --uid-base %d: %v, want %v", base, got, want)
	}
}
