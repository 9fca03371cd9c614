package appgate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// The factory tools of the App Builder: validate an app's workspace, run a
// command over it in a fresh disposable sandbox, submit it to the gate.
// An agent names a workspace inside its own opencode project directory
// (HOME/agents/NAME/work), by a path relative to it; a person names any
// directory by its absolute path.

// workspace resolves dir for actor a to a real directory.
func (g *Gate) workspace(a control.Actor, dir string) (string, error) {
	var p string
	if a.Kind == control.Agent {
		root := filepath.Join(home.Home{Dir: g.Control.Home}.Agent(a.Name), "work")
		if dir == "" {
			dir = "."
		}
		if filepath.IsAbs(dir) {
			return "", control.Invalidf("dir: a path inside your workspace, relative to it (%q is absolute)", dir)
		}
		p = filepath.Join(root, dir)
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", control.Invalidf("dir: %s does not exist in your workspace", dir)
		}
		rootReal, err := filepath.EvalSymlinks(root)
		if err != nil || (real != rootReal && !strings.HasPrefix(real, rootReal+string(filepath.Separator))) {
			return "", control.Invalidf("dir: %s is outside your workspace", dir)
		}
		p = real
	} else {
		if !filepath.IsAbs(dir) {
			return "", control.Invalidf("dir: want an absolute path")
		}
		p = filepath.Clean(dir)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return "", control.Invalidf("dir: %s is not a directory", dir)
	}
	return p, nil
}

// ValidateWorkspace runs every check of the gate over the app in dir and
// returns the report: findings as data a model can act on.
func (g *Gate) ValidateWorkspace(ctx context.Context, a control.Actor, dir string) (*appkit.Report, error) {
	ws, err := g.workspace(a, dir)
	if err != nil {
		return nil, err
	}
	return appkit.Validate(ctx, ws, appkit.Options{Resolver: g.AppResolver})
}

// SubmitWorkspace packages the app in dir (as it is) and submits it to the
// gate: the report a person will see comes back.
func (g *Gate) SubmitWorkspace(ctx context.Context, a control.Actor, dir string) (*appkit.Report, error) {
	ws, err := g.workspace(a, dir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "taosagent-app-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "app.taosapp")
	if rep, err := appkit.Package(ctx, ws, out, appkit.Options{Resolver: g.AppResolver}); err != nil {
		if rep != nil {
			return rep, nil // it fails validation: the findings say why; nothing was submitted
		}
		return nil, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	app, _, err := g.SubmitApp(ctx, a, data)
	if err != nil {
		return nil, err
	}
	var rep appkit.Report
	if err := json.Unmarshal(app.Report, &rep); err != nil {
		return nil, err
	}
	rep.Source = fmt.Sprintf("submitted as %s (%s): a person decides", app.SHA256, app.State)
	return &rep, nil
}

// RunInWorkspace runs command over the app in dir in a fresh disposable
// sandbox: no network, the default limits (time, CPU, memory, processes,
// files, a bounded workspace and /tmp), its output captured.
func (g *Gate) RunInWorkspace(ctx context.Context, a control.Actor, dir string, command []string) (*sandbox.Result, error) {
	c := control.Call{Actor: a, Tool: "app.run", Target: dir, Args: map[string]any{"dir": dir, "command": command}}
	if len(command) == 0 || len(command) > 256 {
		return nil, g.Control.Refuse(ctx, c, control.Invalidf("command: want a program and at most 255 arguments"))
	}
	ws, err := g.workspace(a, dir)
	if err != nil {
		return nil, g.Control.Refuse(ctx, c, err)
	}
	var res *sandbox.Result
	err = g.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		sb := sandbox.New()
		sb.BuildIDs = g.BuildIDs
		res, err = sb.Run(ctx, sandbox.Spec{Workspace: ws, Command: command})
		return "", err
	})
	return res, err
}
