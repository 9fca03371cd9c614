package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/pgstore"
)

// A move that failed, or whose archive waits for a daemon that is gone,
// is a warning naming the agent and what to do; one under way is not.
func TestClusterFindingsNameMovesThatDoNotGoOn(t *testing.T) {
	now := time.Now()
	in := pgstore.Inspection{Now: now,
		Daemons: []pgstore.Daemon{{ID: "d1", Live: true, Expires: now.Add(time.Second)}, {ID: "d2", Expires: now.Add(-time.Minute)}},
		Moves: map[string]pgstore.Move{
			"a": {Agent: "a", Target: "d2", State: pgstore.MovePacked},
			"b": {Agent: "b", Target: "d1", State: pgstore.MoveFailed, Error: "no space left on device"},
			"c": {Agent: "c", Target: "d1", State: pgstore.MoveAsked},
			"d": {Agent: "d", Target: "d1", State: pgstore.MovePacked, Error: "permission denied"},
		}}
	var warned []string
	for _, f := range clusterFindings(in) {
		if f.Severity == Warning {
			warned = append(warned, f.Summary)
		}
	}
	want := []string{"agent a waits, packed, for the daemon d2, which is not live",
		"the move of agent b to d1 failed: no space left on device",
		"the move of agent d to d1 is retried: permission denied"}
	if strings.Join(warned, "\n") != strings.Join(want, "\n") {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(warned, "\n"), strings.Join(want, "\n"))
	}
}
