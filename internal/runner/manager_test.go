package runner

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Every state an instance reports is stored, in order, however fast the
// reports come: an instance event is committed like any other, never
// dropped from a full queue.
func TestInstanceEventsAreNeverDropped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "taosagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	sup, err := supervisor.New("/nonexistent/opencode", dir)
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{Home: dir, Store: log, Instances: Supervised(sup)})
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 2000
	for i := range n {
		m.onState("a", supervisor.Ready, i+1, nil)
	}
	// An event appended after them is committed after them all.
	if _, err := log.Append(ctx, event.New("", event.Status, time.Now(), event.StatusData{State: "idle"})); err != nil {
		t.Fatal(err)
	}
	var pids []int
	err = log.Scan(ctx, eventlog.Query{Agent: "a", Kinds: []event.Kind{event.Instance}}, func(r eventlog.Record) error {
		var e event.Event
		if err := json.Unmarshal(r.Body, &e); err != nil {
			return err
		}
		pids = append(pids, data[event.InstanceData](t, e).PID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != n {
		t.Fatalf("%d instance events stored, want %d", len(pids), n)
	}
	for i, pid := range pids {
		if pid != i+1 {
			t.Fatalf("event %d has pid %d: out of order", i, pid)
		}
	}
}
