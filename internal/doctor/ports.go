package doctor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/hostctl"
)

// Who holds a declared port.
const (
	heldByNone     = "free"
	heldByOwner    = "owner"
	heldByStale    = "stale"    // a process of its service that outlived it
	heldByStranger = "stranger" // anything else: never touched
)

// portUse is who holds one declared port, and why that verdict.
type portUse struct {
	owner  hostctl.PortOwner
	holder Process
	whose  string
	why    string
	// active: the owning service is active (a free port then is odd).
	active bool
}

// usePort finds who holds o's port. The owner is the service's main
// process or one in its control group, while the service is active, or a
// running container of the declaration that publishes the port. A stale
// process is one of the service (in its control group, or running its
// ExecStart's command line) that is not the owner: left by a unit that stopped or
// failed, or started beside it. Anything else is a stranger.
//
// held is who listens on the port (Listeners), nil to look now.
func (e *Env) usePort(ctx context.Context, c hostctl.Config, o hostctl.PortOwner, held map[int]Process) portUse {
	u := portUse{owner: o, whose: heldByNone}
	if held == nil {
		held = Listeners(o.Port)
	}
	p, isHeld := held[o.Port]
	if o.Service != "" {
		svc, _ := c.Service(o.Service)
		st, err := e.Systemd.Status(ctx, svc.Unit)
		u.active = err == nil && st.ActiveState == "active"
		if !isHeld {
			return u
		}
		u.holder, u.whose = p, heldByStranger
		ofService := err == nil && p.PID > 0 && (inCgroup(p.PID, st.ControlGroup) || runsCommand(p, st))
		switch {
		case u.active && st.MainPID > 0 && descends(p.PID, st.MainPID):
			u.whose, u.why = heldByOwner, fmt.Sprintf("its main process (pid %d)", st.MainPID)
		case u.active && inCgroup(p.PID, st.ControlGroup):
			u.whose, u.why = heldByOwner, "a process of its unit "+svc.Unit
		case ofService && !u.active:
			u.whose, u.why = heldByStale, fmt.Sprintf("%s is %s, yet a process of it holds the port", svc.Unit, st.ActiveState)
		case ofService:
			u.whose, u.why = heldByStale, fmt.Sprintf("it runs %s's program outside %s's processes (main pid %d)", svc.Name, svc.Unit, st.MainPID)
		}
		return u
	}
	if !isHeld {
		return u
	}
	u.holder, u.whose = p, heldByStranger
	k, _ := c.Container(o.Container)
	for _, cs := range c.LookContainer(ctx, k, time.Now()).Containers {
		for _, hp := range cs.Ports {
			if cs.State == "running" && strings.HasSuffix(strings.SplitN(hp, "->", 2)[0], ":"+strconv.Itoa(o.Port)) {
				u.whose, u.why = heldByOwner, "published by its container "+cs.Name
			}
		}
	}
	return u
}

// runsCommand reports whether p runs the unit's ExecStart: the same
// program file (whatever links lead to it: /bin is /usr/bin on Debian) with
// the same command line. The program alone would not do: a stranger's
// python3 is not a python service's.
func runsCommand(p Process, st hostctl.UnitStatus) bool {
	if st.ExecPath == "" || strings.Join(p.Cmdline, " ") != st.ExecArgv {
		return false
	}
	a, err1 := os.Stat(filepath.Join("/proc", strconv.Itoa(p.PID), "exe"))
	b, err2 := os.Stat(st.ExecPath)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// descends reports whether pid is root or one of its descendants.
func descends(pid, root int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == root {
			return true
		}
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		j := bytes.LastIndexByte(b, ')')
		if err != nil || j < 0 {
			return false
		}
		f := strings.Fields(string(b[j+1:])) // state, ppid, …
		if len(f) < 2 {
			return false
		}
		pid, _ = strconv.Atoi(f[1])
	}
	return pid == root
}

// inCgroup reports whether pid is in the control group cg (or below it).
func inCgroup(pid int, cg string) bool {
	if cg == "" || cg == "/" {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3) // id:controllers:path
		if len(f) == 3 && (f[2] == cg || strings.HasPrefix(f[2], cg+"/")) {
			return true
		}
	}
	return false
}

// checkPorts says who holds each declared port.
func checkPorts(ctx context.Context, e *Env) []Finding {
	const id = "ports"
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return ok(id, "not checked: the managed-host file is not valid (see host-file)")
	}
	owners := c.Ports()
	if len(owners) == 0 {
		return ok(id, "no port declared for a managed service or container")
	}
	ports := make([]int, len(owners))
	for i, o := range owners {
		ports[i] = o.Port
	}
	held := Listeners(ports...)
	uses := make([]portUse, len(owners))
	var wg sync.WaitGroup
	for i, o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uses[i] = e.usePort(ctx, c, o, held)
		}()
	}
	wg.Wait()
	var out []Finding
	for i, o := range owners {
		u := uses[i]
		switch u.whose {
		case heldByStale:
			out = append(out, Finding{ID: id, Severity: Error, Summary: fmt.Sprintf("port %d of %s is held by a stale process of it: %s", o.Port, o, u.holder.Name),
				Details: u.holder.String() + "; " + u.why, Recipe: "free-port:" + strconv.Itoa(o.Port)})
		case heldByStranger:
			out = append(out, Finding{ID: id, Severity: Error, Summary: fmt.Sprintf("port %d of %s is held by another program: %s", o.Port, o, u.holder.Name),
				Details: u.holder.String() + ". taosagent never stops a program that is not the service's own: stop it yourself, or move one of them"})
		case heldByNone:
			if u.active {
				out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("nothing listens on port %d, though %s is active", o.Port, o)})
			}
		}
	}
	if len(out) == 0 {
		return ok(id, plural(len(owners), "declared port is", "declared ports are")+" held by their owners or free")
	}
	return out
}

// freeDeclaredPort stops the stale process of a declared service that
// holds port, and nothing else: not the service's own process, not a
// stranger's.
func freeDeclaredPort(ctx context.Context, e *Env, arg string, dry bool, step func(string)) (string, error) {
	port, err := strconv.Atoi(arg)
	if err != nil {
		return "", fmt.Errorf("free-port:%s: not a port number", arg)
	}
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return "", err
	}
	o, declared := c.Port(port)
	if !declared {
		return "", fmt.Errorf("port %d is not declared for a managed service or container in %s: taosagent frees only those", port, e.Home.HostFile())
	}
	u := e.usePort(ctx, c, o, nil)
	switch u.whose {
	case heldByNone:
		step(fmt.Sprintf("port %d is free", port))
		return "", nil
	case heldByOwner:
		return "", fmt.Errorf("port %d is held by %s's own process (%s): not stale", port, o, u.why)
	case heldByStranger:
		return "", fmt.Errorf("port %d is held by %s, which is not %s's: taosagent never stops it; stop it yourself", port, u.holder, o)
	}
	step(fmt.Sprintf("stop the stale process of %s holding port %d: %s (%s)", o, port, u.holder, u.why))
	if dry {
		return "", nil
	}
	return "", stopProcess(u.holder.PID)
}
