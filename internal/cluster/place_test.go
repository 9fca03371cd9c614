package cluster

import (
	"testing"

	"github.com/taosagent/taosagent/internal/pgstore"
)

func TestPlacementTakesTheFreestAllowedDaemon(t *testing.T) {
	ds := []pgstore.Daemon{
		{ID: "a", Live: true, Slots: 4, Memory: 8, Storage: "s1", Labels: []string{"node=cpu"}},
		{ID: "b", Live: true, Slots: 4, Memory: 9, Storage: "s1", Labels: []string{"node=gpu-box"}},
		{ID: "c", Live: true, Slots: 2, Memory: 99, Storage: "s2"},
		{ID: "d", Live: false, Slots: 99, Memory: 99, Storage: "s1"},
		{ID: "e", Live: true, Draining: true, Slots: 99, Memory: 99, Storage: "s1"},
	}
	for _, c := range []struct {
		name string
		p    pgstore.Placement
		held map[string]int
		want string
	}{
		{"most free slots, then memory", pgstore.Placement{}, nil, "b"},
		{"slots before memory", pgstore.Placement{}, map[string]int{"b": 1}, "a"},
		{"equal slots: more memory", pgstore.Placement{}, map[string]int{"b": 1, "a": 1}, "b"},
		{"pinned to a label", pgstore.Placement{Pin: "node=cpu"}, map[string]int{"a": 3}, "a"},
		{"pinned to a daemon", pgstore.Placement{Pin: "c"}, nil, "c"},
		{"pinned to a dead daemon", pgstore.Placement{Pin: "d"}, nil, ""},
		{"on its directory's storage", pgstore.Placement{Storage: "s2"}, nil, "c"},
		{"no live daemon on its storage", pgstore.Placement{Storage: "s3"}, nil, ""},
	} {
		if got := Place(c.p, ds, c.held); got != c.want {
			t.Errorf("%s: placed on %q, want %q", c.name, got, c.want)
		}
	}
	tie := []pgstore.Daemon{{ID: "y", Live: true, Slots: 1}, {ID: "x", Live: true, Slots: 1}}
	if got := Place(pgstore.Placement{}, tie, nil); got != "x" {
		t.Errorf("equal slots and memory: placed on %q, want the first by id", got)
	}
}
