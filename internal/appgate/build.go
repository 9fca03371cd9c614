package appgate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/control"
)

// NewApp writes the scaffold of an app named name into dir (which must not
// exist; for an agent, a path inside its workspace): the layout the
// builder edits rather than invents.
func (g *Gate) NewApp(ctx context.Context, a control.Actor, dir, name string) (*appkit.Manifest, string, error) {
	c := control.Call{Actor: a, Tool: "app.new", Target: dir, Args: map[string]string{"dir": dir, "name": name}}
	clean := filepath.Clean(dir)
	if dir == "" || clean == "." || filepath.Base(clean) == ".." {
		return nil, "", g.Control.Refuse(ctx, c, control.Invalidf("dir: want a new directory for the app"))
	}
	parent, err := g.workspace(a, filepath.Dir(clean))
	if err != nil {
		return nil, "", g.Control.Refuse(ctx, c, err)
	}
	target := filepath.Join(parent, filepath.Base(clean))
	var m *appkit.Manifest
	err = g.Control.Do(ctx, c, func(context.Context) (string, error) {
		var err error
		m, err = appkit.New(target, name)
		if errors.Is(err, appkit.ErrExists) {
			return "", control.Invalidf("dir: %s already exists; edit that app, or choose a new directory", dir)
		}
		if err != nil {
			return "", control.Invalidf("%s", err.Error())
		}
		// The files are the workspace's owner's (a confined agent's uid),
		// or its opencode could not edit them.
		return "", ownLike(parent, target)
	})
	return m, target, err
}

// ownLike gives the tree at target to the owner of dir, when they differ
// and the daemon may (it runs as root).
func ownLike(dir, target string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 || st.Uid == 0 {
		return nil
	}
	return filepath.WalkDir(target, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(st.Uid), int(st.Gid))
	})
}

// MaxBuildRequest bounds what a build request may say.
const MaxBuildRequest = 16 << 10

// Build is a build handed to the App Builder: the task it runs as. Its
// answer comes back to the caller's conversation as a message when it ends
// (control.WatchTasks); what it submitted waits at the gate.
type Build struct {
	Task api.Task `json:"task"`
	Next string   `json:"next"`
}

// BuildApp hands request to the built-in App Builder as a task (its own
// confined instance, its own turn) and returns at once: the builder's
// answer arrives in the caller's conversation when its turn ends, and what
// it submitted waits at the gate for a person. One brain: a person talks
// to the host assistant, which delegates here; the builder's work never
// runs in the caller's instance. Any agent with taosagent's tools may
// hand the builder a build (it needs no may_task); task_cancel stops it.
func (g *Gate) BuildApp(ctx context.Context, a control.Actor, request string) (Build, error) {
	g.init()
	c := control.Call{Actor: a, Tool: "app.build", Target: agent.Builder, Args: map[string]string{"request": control.Bound(request, 1024)}}
	switch {
	case a.Kind != control.Agent:
		return Build{}, g.Control.Refuse(ctx, c, control.Invalidf("an agent hands the App Builder a build (app_build); a person sends the builder a message"))
	case a.Name == agent.Builder:
		return Build{}, g.Control.Refuse(ctx, c, fmt.Errorf("%w: the builder does not delegate to itself", control.ErrForbidden))
	case strings.TrimSpace(request) == "":
		return Build{}, g.Control.Refuse(ctx, c, control.Invalidf("request: say what to build"))
	case len(request) > MaxBuildRequest:
		return Build{}, g.Control.Refuse(ctx, c, fmt.Errorf("%w: request: longer than %d bytes", control.ErrTooLarge, MaxBuildRequest))
	}
	b, err := g.Control.Log.Agent(ctx, agent.Builder)
	if err == nil && !b.Builtin {
		err = fmt.Errorf("%w: the agent named builder is not the built-in App Builder", control.ErrForbidden)
	}
	if err != nil {
		return Build{}, g.Control.Refuse(ctx, c, err)
	}
	t, err := g.Control.HandOver(ctx, c, agent.Builder, "A request for a web app, on behalf of the person "+a.Name+" serves:\n\n"+request)
	if err != nil {
		return Build{}, err
	}
	return Build{Task: t, Next: "the builder works on it in its own instance; its answer arrives in this conversation when it ends, and what it submits waits at the gate for a person. task_status {\"task\": \"" + t.ID + "\"} checks it"}, nil
}
