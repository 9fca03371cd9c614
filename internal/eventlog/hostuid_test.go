package eventlog

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/hostid"
)

// An agent keeps its host uid across restarts of the daemon; a deleted
// agent's uid is never handed out again, not even to a new agent of its
// name.
func TestAHostUIDIsAnAgentsForGood(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "taosagent.db")
	l := open(t, path)
	withAgentA(t, l)
	r := hostid.Range{First: 1 << 30, Count: 3}
	a1, err := l.HostUID(ctx, "a", r)
	if err != nil || a1 != r.First {
		t.Fatalf("a's uid: %d %v", a1, err)
	}
	b1, err := l.HostUID(ctx, "b", r)
	if err != nil || b1 != r.First+1 {
		t.Fatalf("b's uid: %d %v", b1, err)
	}
	l.Close()
	l = open(t, path)
	if again, err := l.HostUID(ctx, "a", r); err != nil || again != a1 {
		t.Fatalf("a's uid after a restart: %d %v", again, err)
	}
	if err := l.DeleteAgent(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	a2, err := l.HostUID(ctx, "a", r)
	if err != nil || a2 == a1 || a2 == b1 {
		t.Fatalf("the new a's uid: %d %v (old a %d, b %d)", a2, err, a1, b1)
	}
	if _, err := l.HostUID(ctx, "c", r); err == nil {
		t.Fatal("a uid past the range's end")
	}
}

// An agent's egress policy is stored with it.
func TestAnAgentsEgressIsStored(t *testing.T) {
	ctx := context.Background()
	l := open(t, "")
	withAgentA(t, l)
	a, err := l.Agent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	a.Egress = &egress.Policy{Mode: egress.Hosts, Hosts: []string{"example.com"}}
	if _, err := l.UpdateAgent(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := l.Agent(ctx, "a")
	if err != nil || got.EgressPolicy().String() != "hosts: example.com" {
		t.Fatalf("stored egress: %v %v", got.Egress, err)
	}
}
