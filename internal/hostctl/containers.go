package hostctl

import (
	"context"
	"time"

	"github.com/taosagent/taosagent/internal/containers"
)

// ContainerState is a declared container as its runtime shows it now.
type ContainerState struct {
	Name     string `json:"name"`     // the declaration's
	Selector string `json:"selector"` // what the runtime was asked for
	// Containers are those the selector matched, each with its problems.
	Containers []containers.State `json:"containers"`
	// Problem is what is wrong with the declaration as a whole: the
	// runtime does not answer, or no container matches.
	Problem string `json:"problem,omitempty"`
}

// Bad reports whether anything is wrong with the declared container.
func (s ContainerState) Bad() bool {
	if s.Problem != "" {
		return true
	}
	for _, c := range s.Containers {
		if len(c.Problems) > 0 {
			return true
		}
	}
	return false
}

// LookContainer finds and inspects the containers k declares.
func (c Config) LookContainer(ctx context.Context, k Container, now time.Time) ContainerState {
	rt := c.Runtime()
	st := ContainerState{Name: k.Name, Selector: k.Selector().String(), Containers: []containers.State{}}
	ids, err := rt.Find(ctx, k.Selector())
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	if len(ids) == 0 {
		st.Problem = "no container matches its " + st.Selector
	}
	for _, id := range ids {
		cs, _, err := rt.Look(ctx, id, k.Image, now)
		if err != nil {
			cs = containers.State{ID: id, Problems: []string{err.Error()}} // gone since the list
		}
		st.Containers = append(st.Containers, cs)
	}
	return st
}
