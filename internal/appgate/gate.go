// Package appgate is the App Builder's side of the host: a workspace the
// builder works in, the factory's tools over it (scaffold, validate, run
// in a disposable sandbox, submit), the builder asked for an app, and the
// gate, which re-checks every submitted package from scratch and shares
// one only when a person approves that exact package. It decides nothing
// about who may: each action is a control.Call through
// control.Service.Do (its tier from control.Actions, the audit).
package appgate

import (
	"sync"

	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/netguard"
)

// Gate runs the App Builder's actions. Set the fields, then use it; it is
// safe for concurrent use.
type Gate struct {
	Control *control.Service // every action goes through its Do
	// AppResolver resolves the host names of submitted apps (nil: the
	// system's resolver).
	AppResolver netguard.Resolver
	// BuildIDs, when set, gives each build run (app_run) a host uid of its
	// own while it runs (sandbox.Sandbox.BuildIDs).
	BuildIDs *hostid.Pool

	once     sync.Once
	mu       sync.Mutex
	previews map[string]*preview // open previews of apps, by token
}

func (g *Gate) init() {
	g.once.Do(func() { g.previews = map[string]*preview{} })
}
