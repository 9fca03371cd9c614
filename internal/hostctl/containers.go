package hostctl

import (
	"context"
	"sync"
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
	return c.LookContainers(ctx, []Container{k}, now)[0]
}

// LookContainers finds and inspects the containers of each declaration
// of ks, in their order: the runtime's list read once, the containers
// inspected concurrently.
func (c Config) LookContainers(ctx context.Context, ks []Container, now time.Time) []ContainerState {
	rt := c.Runtime()
	out := make([]ContainerState, len(ks))
	list, err := rt.List(ctx)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, k := range ks {
		st := ContainerState{Name: k.Name, Selector: k.Selector().String(), Containers: []containers.State{}}
		if err != nil {
			st.Problem = err.Error()
			out[i] = st
			continue
		}
		for _, s := range list {
			if k.Selector().Matches(s) {
				st.Containers = append(st.Containers, containers.State{ID: s.ID})
			}
		}
		if len(st.Containers) == 0 {
			st.Problem = "no container matches its " + st.Selector
		}
		out[i] = st
		for j := range st.Containers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				id := out[i].Containers[j].ID
				cs, _, err := rt.Look(ctx, id, k.Image, now)
				if err != nil {
					cs = containers.State{ID: id, Problems: []string{err.Error()}} // gone since the list
				}
				out[i].Containers[j] = cs
			}()
		}
	}
	wg.Wait()
	return out
}
