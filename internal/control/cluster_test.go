package control_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/runner"
)

// cluster records what the control service asked of the cluster.
type cluster struct{ asked []string }

func (c *cluster) Status(context.Context) (api.Cluster, error) { return api.Cluster{Daemon: "d1"}, nil }
func (c *cluster) Drain(_ context.Context, d string, on bool) (string, error) {
	c.asked = append(c.asked, "drain "+d)
	return d, nil
}
func (c *cluster) Pin(_ context.Context, a, pin string) error {
	c.asked = append(c.asked, "pin "+a+" "+pin)
	return nil
}
func (c *cluster) Move(_ context.Context, a, d string) (api.Move, error) {
	c.asked = append(c.asked, "move "+a+" "+d)
	return api.Move{Agent: a, To: d, Copy: true}, nil
}

// Where agents run is a person's to say: a drain, a pin or a move asked
// by an agent is refused (403), one with bad input is refused (422), one
// for an agent that does not exist is 404, none reaches the cluster, and
// each is audited, done or refused.
func TestOnlyAPersonPlacesAgentsInACluster(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	if err := f.Log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Log.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.Move(ctx, controltest.Operator, "a", api.MoveRequest{Daemon: "d2"}); !errors.Is(err, control.ErrNoCluster) {
		t.Fatalf("a move on a daemon alone: %v", err)
	}
	c := &cluster{}
	f.Svc.Cluster = c
	host := control.Actor{Kind: control.Agent, Name: "host", Channel: control.MCP}
	for _, err := range []error{
		f.Svc.Drain(ctx, host, api.DrainRequest{}),
		f.Svc.Pin(ctx, host, "a", api.PinRequest{Pin: "d2"}),
		func() error { _, err := f.Svc.Move(ctx, host, "a", api.MoveRequest{Daemon: "d2"}); return err }(),
	} {
		if !errors.Is(err, control.ErrForbidden) {
			t.Fatalf("an agent placing agents: %v, want forbidden", err)
		}
	}
	for _, req := range []string{"", "node=gpu", "a b", "d,2"} {
		if _, err := f.Svc.Move(ctx, controltest.Operator, "a", api.MoveRequest{Daemon: req}); !errors.Is(err, runner.ErrInvalid) {
			t.Fatalf("a move to %q: %v, want invalid", req, err)
		}
	}
	if _, err := f.Svc.Move(ctx, controltest.Operator, "nobody", api.MoveRequest{Daemon: "d2"}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a move of an agent that does not exist: %v", err)
	}
	if len(c.asked) != 0 {
		t.Fatalf("refused calls reached the cluster: %v", c.asked)
	}
	if m, err := f.Svc.Move(ctx, controltest.Operator, "a", api.MoveRequest{Daemon: "d2"}); err != nil || !m.Copy {
		t.Fatalf("a person's move: %+v %v", m, err)
	}
	if err := f.Svc.Pin(ctx, controltest.Operator, "a", api.PinRequest{Pin: "node=gpu"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.asked, []string{"move a d2", "pin a node=gpu"}) {
		t.Fatalf("the cluster was asked %v", c.asked)
	}
	// Each refusal, then the person's move: its intent and its outcome.
	var outcomes []string
	for _, e := range f.Audit(t, "cluster.move") {
		outcomes = append(outcomes, e.Outcome)
	}
	if want := []string{"refused", "refused", "refused", "refused", "refused", "refused", "refused", "pending", "ok"}; !slices.Equal(sortedCopy(outcomes), sortedCopy(want)) {
		t.Fatalf("cluster.move audited %v, want %v", outcomes, want)
	}
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }
