package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/runner"
)

// Cluster is the daemon's place among several sharing one PostgreSQL
// database (serve --cluster; cluster.Keeper), nil when it runs alone.
type Cluster interface {
	Status(ctx context.Context) (api.Cluster, error)
	// Drain marks daemon ("" the one asked) draining, or not: its agents
	// move to other daemons between their turns.
	Drain(ctx context.Context, daemon string, on bool) (string, error)
	// Pin sets where agent may run.
	Pin(ctx context.Context, agent, pin string) error
	// Move moves agent to the daemon target, copying its files if
	// target is on other storage; it stays pinned there.
	Move(ctx context.Context, agent, target string) (api.Move, error)
}

// ErrNoCluster: the daemon runs alone, not as one of a cluster.
var ErrNoCluster = fmt.Errorf("%w: this daemon is not one of a cluster (serve --db … --cluster)", eventlog.ErrConflict)

// ClusterStatus shows the cluster's daemons and who runs which agent.
func (s *Service) ClusterStatus(ctx context.Context, a Actor) (api.Cluster, error) {
	if s.Cluster == nil {
		return api.Cluster{}, ErrNoCluster
	}
	return s.Cluster.Status(ctx)
}

// Drain drains a daemon of the cluster (or ends its drain), for a person
// only: an agent moves no agent.
func (s *Service) Drain(ctx context.Context, a Actor, req api.DrainRequest) error {
	c := Call{Actor: a, Tool: "cluster.drain", Target: req.Daemon, Args: map[string]string{"daemon": req.Daemon, "off": fmt.Sprint(req.Off)}}
	var err error
	switch {
	case s.Cluster == nil:
		err = ErrNoCluster
	case a.Kind == Agent:
		err = fmt.Errorf("%w: only a person drains a daemon", ErrForbidden)
	}
	if err != nil {
		return s.Refuse(ctx, c, err)
	}
	return s.Do(ctx, c, func(ctx context.Context) (string, error) {
		id, err := s.Cluster.Drain(ctx, req.Daemon, !req.Off)
		c.Target = id
		return "", err
	})
}

// Pin sets where agent name may run in the cluster: a daemon's id, a
// label k=v, or "" for any daemon. It moves the agent between its turns
// if its owner is not allowed any more. A person only.
func (s *Service) Pin(ctx context.Context, a Actor, name string, req api.PinRequest) error {
	c := Call{Actor: a, Tool: "cluster.pin", Target: name, Args: map[string]string{"agent": name, "pin": req.Pin}}
	err := checkPin(req.Pin)
	switch {
	case s.Cluster == nil:
		err = ErrNoCluster
	case a.Kind == Agent:
		err = fmt.Errorf("%w: only a person pins an agent", ErrForbidden)
	}
	if err == nil {
		_, err = s.Log.Agent(ctx, name)
	}
	if err != nil {
		return s.Refuse(ctx, c, err)
	}
	return s.Do(ctx, c, func(ctx context.Context) (string, error) { return "", s.Cluster.Pin(ctx, name, req.Pin) })
}

// Move moves agent name to a daemon of the cluster (taosagent move): on
// other storage its files are copied, through the database, between its
// turns. A person only.
func (s *Service) Move(ctx context.Context, a Actor, name string, req api.MoveRequest) (api.Move, error) {
	c := Call{Actor: a, Tool: "cluster.move", Target: name, Args: map[string]string{"agent": name, "daemon": req.Daemon}}
	var err error
	switch {
	case s.Cluster == nil:
		err = ErrNoCluster
	case a.Kind == Agent:
		err = fmt.Errorf("%w: only a person moves an agent", ErrForbidden)
	case req.Daemon == "" || strings.Contains(req.Daemon, "="):
		err = fmt.Errorf("%w: daemon: a daemon's id (GET /v1/cluster lists them)", runner.ErrInvalid)
	default:
		err = checkPin(req.Daemon)
	}
	if err == nil {
		_, err = s.Log.Agent(ctx, name)
	}
	if err != nil {
		return api.Move{}, s.Refuse(ctx, c, err)
	}
	var out api.Move
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		out, err = s.Cluster.Move(ctx, name, req.Daemon)
		return "", err
	})
	return out, err
}

// checkPin is nil for "", a label k=v or a daemon's id (host:home): at
// most 512 printable characters, no comma, no space.
func checkPin(pin string) error {
	bad := errors.New("pin: a daemon's id (GET /v1/cluster lists them), a label k=v, or \"\" for any daemon")
	if len(pin) > 512 || strings.ContainsAny(pin, ", ") || strings.IndexFunc(pin, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("%w: %v", runner.ErrInvalid, bad)
	}
	if k, v, ok := strings.Cut(pin, "="); ok && (k == "" || v == "") {
		return fmt.Errorf("%w: %v", runner.ErrInvalid, bad)
	}
	return nil
}
