// Package hostops is what the host assistant does to the host it runs on:
// the host's status, the logs, the managed services' config files (each
// change snapshotted first), restarts of services and instances, and the
// recovery checks. It decides nothing about who may: every change is a
// control.Call through control.Service.Do (its tier from control.Actions,
// a person's approval where one is needed, the audit).
package hostops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/snapshot"
)

// Limits on what host tools return: a tool's output reaches a model.
const (
	MaxLogLines  = 500
	MaxLineBytes = 2000
	MaxConfig    = 256 << 10
)

// Ops does the host's operations. Set the fields, then use it; it is
// safe for concurrent use.
type Ops struct {
	Control   *control.Service // every change goes through its Do
	HostFile  string           // the managed-host declaration (hostctl)
	Systemd   hostctl.Systemd  // how managed services are reached
	Snapshots snapshot.Store
	// Doctor, when set, returns what the recovery checks look at (a fresh
	// environment for each run).
	Doctor func() *doctor.Env
}

// HostStatus is the state of the host as the host assistant sees it.
type HostStatus struct {
	Daemon   DaemonStatus    `json:"daemon"`
	Agents   []AgentBrief    `json:"agents"`
	Services []ServiceStatus `json:"services"`
	// Containers are the managed containers; absent when none is declared.
	Containers []hostctl.ContainerState `json:"containers,omitempty"`
	Disk       DiskStatus               `json:"disk"`
	Memory     MemoryStatus             `json:"memory"`
	Load       [3]float64               `json:"load"`
}

// DaemonStatus is taosagent's own state.
type DaemonStatus struct {
	Version       string `json:"version"`
	PID           int    `json:"pid"`
	UptimeSeconds int64  `json:"uptime_s"`
	Problem       string `json:"problem,omitempty"`
	EventsHead    int64  `json:"events_head"`
}

// AgentBrief is an agent in the host status.
type AgentBrief struct {
	Name        string `json:"name"`
	Model       string `json:"model"`
	State       string `json:"state"`
	Instance    string `json:"instance,omitempty"`
	Confined    bool   `json:"confined"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	CPUMillis   int64  `json:"cpu_ms,omitempty"`
	Queued      int    `json:"queued"`
}

// ServiceStatus is a managed service's state and health.
type ServiceStatus struct {
	Name   string              `json:"name"`
	Unit   string              `json:"unit"`
	Status *hostctl.UnitStatus `json:"status,omitempty"`
	Error  string              `json:"error,omitempty"`
	Health string              `json:"health,omitempty"` // ok, failing: …, or "" without a health URL
}

// DiskStatus is the home's filesystem.
type DiskStatus struct {
	Path       string `json:"path"`
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// MemoryStatus is the machine's memory.
type MemoryStatus struct {
	TotalBytes     int64 `json:"total_bytes"`
	AvailableBytes int64 `json:"available_bytes"`
}

// Host returns the managed-host declaration; a broken one is an error
// that names its fault.
func (o *Ops) Host() (hostctl.Config, error) { return hostctl.Load(o.HostFile) }

// Status reports the daemon, the agents, the managed services, disk,
// memory and load.
func (o *Ops) Status(ctx context.Context) (HostStatus, error) {
	st := HostStatus{Daemon: DaemonStatus{Version: o.Control.Version, PID: os.Getpid(), UptimeSeconds: int64(time.Since(o.Control.Started()).Seconds()),
		Problem: o.Control.Runner.Problem(), EventsHead: o.Control.Log.Head()}, Agents: []AgentBrief{}, Services: []ServiceStatus{}}
	views, err := o.Control.Agents(ctx)
	if err != nil {
		return st, err
	}
	for _, v := range views {
		b := AgentBrief{Name: v.Name, Model: v.Model, State: v.Status.State, Instance: v.Status.Instance, Confined: v.Status.Confined, Queued: v.Status.Queued}
		if u := v.Status.Usage; u != nil {
			b.MemoryBytes, b.CPUMillis = u.MemoryBytes, u.CPUMillis
		}
		st.Agents = append(st.Agents, b)
	}
	host, err := o.Host()
	if err != nil {
		st.Services = append(st.Services, ServiceStatus{Name: "(managed host)", Error: err.Error()})
	}
	for _, svc := range host.Services {
		ss := ServiceStatus{Name: svc.Name, Unit: svc.Unit}
		if us, err := o.Systemd.Status(ctx, svc.Unit); err != nil {
			ss.Error = err.Error()
		} else {
			ss.Status = &us
		}
		if svc.HealthURL != "" {
			ss.Health = probe(ctx, svc.HealthURL)
		}
		st.Services = append(st.Services, ss)
	}
	if len(host.Containers) > 0 {
		st.Containers = host.LookContainers(ctx, host.Containers, time.Now())
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(o.Control.Home, &fs) == nil {
		st.Disk = DiskStatus{Path: o.Control.Home, FreeBytes: fs.Bavail * uint64(fs.Bsize), TotalBytes: fs.Blocks * uint64(fs.Bsize)}
	}
	st.Memory = meminfo()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			st.Load[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	return st, nil
}

// probe asks a loopback health URL, briefly.
func probe(ctx context.Context, url string) string {
	code, err := hostctl.Probe(ctx, url, 3*time.Second)
	switch {
	case err != nil:
		return "failing: no answer"
	case code/100 != 2:
		return "failing: HTTP " + strconv.Itoa(code)
	}
	return "ok"
}

func meminfo() MemoryStatus {
	var m MemoryStatus
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			m.TotalBytes = kb << 10
		case "MemAvailable:":
			m.AvailableBytes = kb << 10
		}
	}
	return m
}

// LogsRequest selects log lines: of a managed service, of a managed
// container, or of an agent's opencode (exactly one of the three).
type LogsRequest struct {
	Service   string `json:"service,omitempty"`
	Container string `json:"container,omitempty"` // a declared container
	Agent     string `json:"agent,omitempty"`
	Lines     int    `json:"lines,omitempty"`   // default 100, at most MaxLogLines
	Pattern   string `json:"pattern,omitempty"` // only lines that contain it
	Since     string `json:"since,omitempty"`   // RFC 3339 time, or a duration back from now ("15m")
}

// Logs is what a log read returns: bounded, redacted, and marked as
// untrusted content.
type Logs struct {
	Note   string   `json:"note"`
	Source string   `json:"source"`
	Lines  []string `json:"lines"`
}

// Logs reads log lines, secrets redacted.
//
// An agent reads only the logs of agents it may read (see Events).
func (o *Ops) Logs(ctx context.Context, a control.Actor, r LogsRequest) (Logs, error) {
	if n := len(slices.DeleteFunc([]string{r.Service, r.Container, r.Agent}, func(s string) bool { return s == "" })); n != 1 {
		return Logs{}, control.Invalidf("service: give exactly one of service, container or agent")
	}
	if r.Lines <= 0 {
		r.Lines = 100
	}
	r.Lines = min(r.Lines, MaxLogLines)
	if len(r.Pattern) > 256 {
		return Logs{}, control.Invalidf("pattern: longer than 256 bytes")
	}
	since, err := control.ParseSince(r.Since, time.Now())
	if err != nil {
		return Logs{}, err
	}
	out := Logs{Note: control.UntrustedNote, Lines: []string{}}
	var lines []string
	switch {
	case r.Agent != "":
		if err := o.Control.MayRead(ctx, a, "logs", r.Agent); err != nil {
			return Logs{}, err
		}
		// The daemon's own copy of the instance's output, outside the
		// agent's tree: nothing the agent plants is followed.
		path := home.Home{Dir: o.Control.Home}.AgentLog(r.Agent)
		out.Source = "agent " + r.Agent + ": opencode.log"
		var err error
		if lines, err = hostctl.Tail(path, r.Lines, r.Pattern, 4<<20); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Logs{}, err
		}
		lines = afterTime(lines, since)
	case r.Container != "":
		host, err := o.Host()
		if err != nil {
			return Logs{}, err
		}
		k, ok := host.Container(r.Container)
		if !ok {
			return Logs{}, notDeclared("container", r.Container)
		}
		rt := host.Runtime()
		ids, err := rt.Find(ctx, k.Selector())
		if err != nil {
			return Logs{}, err
		}
		out.Source = "container " + k.Name + " (" + k.Selector().String() + ")"
		for _, id := range ids {
			ls, err := rt.Logs(ctx, id, r.Lines, since)
			if err != nil {
				return Logs{}, err
			}
			if pattern := r.Pattern; pattern != "" {
				ls = slices.DeleteFunc(ls, func(l string) bool { return !strings.Contains(l, pattern) })
			}
			lines = append(lines, ls...)
		}
		if len(lines) > r.Lines {
			lines = lines[len(lines)-r.Lines:]
		}
	default:
		host, err := o.Host()
		if err != nil {
			return Logs{}, err
		}
		svc, ok := host.Service(r.Service)
		if !ok {
			return Logs{}, notDeclared("service", r.Service)
		}
		if len(svc.Logs) == 0 {
			out.Source = "journal of " + svc.Unit
			if lines, err = o.Systemd.Journal(ctx, svc.Unit, r.Lines, since, r.Pattern); err != nil {
				return Logs{}, err
			}
		} else {
			for _, f := range svc.Logs {
				ls, err := hostctl.Tail(f, r.Lines, r.Pattern, 4<<20)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return Logs{}, err
				}
				lines = append(lines, afterTime(ls, since)...)
			}
			out.Source = strings.Join(svc.Logs, ", ")
			if len(lines) > r.Lines {
				lines = lines[len(lines)-r.Lines:]
			}
		}
	}
	for _, l := range lines {
		out.Lines = append(out.Lines, control.Bound(o.Control.Redact(l), MaxLineBytes))
	}
	return out, nil
}

// afterTime keeps the lines whose leading timestamp (RFC 3339 or ISO,
// the first field) is not before since; lines without one are kept.
func afterTime(lines []string, since time.Time) []string {
	if since.IsZero() {
		return lines
	}
	var out []string
	for _, l := range lines {
		f, _, _ := strings.Cut(l, " ")
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05-0700", "2006-01-02T15:04:05"} {
			if t, err := time.Parse(layout, f); err == nil {
				if t.Before(since) {
					l = ""
				}
				break
			}
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func notDeclared(what, name string) error {
	return control.Invalidf("%s: %q is not declared in the managed-host file", what, name)
}

// ConfigFile is a config file's contents as a tool shows them.
type ConfigFile struct {
	Note    string `json:"note"`
	Path    string `json:"path"`
	Service string `json:"service"`
	Format  string `json:"format"`
	Exists  bool   `json:"exists"`
	Content string `json:"content"`
}

// declared finds path among the managed services' config files.
func (o *Ops) declared(path string) (hostctl.Service, hostctl.ConfigFile, error) {
	host, err := o.Host()
	if err != nil {
		return hostctl.Service{}, hostctl.ConfigFile{}, err
	}
	svc, f, ok := host.ConfigFile(path)
	if !ok {
		return svc, f, notDeclared("path", path)
	}
	return svc, f, nil
}

// ConfigShow returns a declared config file, secrets redacted.
func (o *Ops) ConfigShow(ctx context.Context, path string) (ConfigFile, error) {
	svc, f, err := o.declared(path)
	if err != nil {
		return ConfigFile{}, err
	}
	out := ConfigFile{Note: control.UntrustedNote, Path: f.Path, Service: svc.Name, Format: f.Format}
	b, err := hostctl.ReadFile(f.Path, MaxConfig)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return out, nil
	case errors.Is(err, hostctl.ErrTooLarge):
		return out, fmt.Errorf("%w: %v", control.ErrTooLarge, err)
	case err != nil:
		return out, err
	}
	out.Exists, out.Content = true, o.Control.Redact(string(b))
	return out, nil
}

// ConfigSnapshot saves a copy of a declared config file (write tier).
func (o *Ops) ConfigSnapshot(ctx context.Context, a control.Actor, path string) (snapshot.Snapshot, error) {
	c := control.Call{Actor: a, Tool: "config_snapshot", Target: path, Args: map[string]string{"path": path}}
	if _, _, err := o.declared(path); err != nil {
		return snapshot.Snapshot{}, o.Control.Refuse(ctx, c, err)
	}
	var sn snapshot.Snapshot
	err := o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		sn, err = o.Snapshots.Take(path, "asked for by "+a.String())
		return sn.ID, err
	})
	return sn, err
}

// Snapshots lists the snapshots of path ("" for all), newest first.
func (o *Ops) SnapshotList(ctx context.Context, path string) ([]snapshot.Snapshot, error) {
	return o.Snapshots.List(path)
}

// ConfigWrite replaces a declared config file's contents (destructive):
// the contents are validated in the file's format first (invalid ones are
// refused before anyone is asked), and the file is snapshotted before it
// is written.
func (o *Ops) ConfigWrite(ctx context.Context, a control.Actor, path, content string) (snapshot.Snapshot, error) {
	c := control.Call{Actor: a, Tool: "config_write", Target: path, Args: map[string]string{"path": path, "content": content}}
	_, f, err := o.declared(path)
	if err == nil && len(content) > MaxConfig {
		err = fmt.Errorf("%w: content: longer than %d bytes", control.ErrTooLarge, MaxConfig)
	}
	if err == nil {
		if verr := hostctl.Validate(f.Format, []byte(content)); verr != nil {
			err = control.Invalidf("content: %v; nothing was written", verr)
		}
	}
	if err != nil {
		return snapshot.Snapshot{}, o.Control.Refuse(ctx, c, err)
	}
	var sn snapshot.Snapshot
	err = o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		sn, err = o.Snapshots.Write(path, []byte(content), "before config_write by "+a.String())
		return sn.ID, err
	})
	return sn, err
}

// ConfigRestore restores a snapshot of a declared config file
// (destructive); the file as it is now is snapshotted first.
func (o *Ops) ConfigRestore(ctx context.Context, a control.Actor, id string) (before snapshot.Snapshot, err error) {
	c := control.Call{Actor: a, Tool: "config_restore", Target: id, Args: map[string]string{"snapshot": id}}
	sn, err := o.Snapshots.Get(id)
	if err == nil {
		_, _, err = o.declared(sn.Path)
		c.Target = sn.Path + " ← " + id
	}
	if err != nil {
		return before, o.Control.Refuse(ctx, c, err)
	}
	err = o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		before, err = o.Snapshots.Restore(id)
		return before.ID, err
	})
	return before, err
}

// ServiceRestart restarts a managed service (destructive).
func (o *Ops) ServiceRestart(ctx context.Context, a control.Actor, name string) (hostctl.UnitStatus, error) {
	c := control.Call{Actor: a, Tool: "service_restart", Target: name, Args: map[string]string{"service": name}}
	host, err := o.Host()
	if err != nil {
		return hostctl.UnitStatus{}, o.Control.Refuse(ctx, c, err)
	}
	svc, ok := host.Service(name)
	if !ok {
		return hostctl.UnitStatus{}, o.Control.Refuse(ctx, c, notDeclared("service", name))
	}
	c.Target = name + " (" + svc.Unit + ")"
	var st hostctl.UnitStatus
	err = o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		st, err = o.Systemd.Restart(ctx, svc.Unit)
		return "", err
	})
	return st, err
}

// ContainersList reports every managed container as its runtime shows it.
func (o *Ops) ContainersList(ctx context.Context) ([]hostctl.ContainerState, error) {
	host, err := o.Host()
	if err != nil {
		return nil, err
	}
	return append([]hostctl.ContainerState{}, host.LookContainers(ctx, host.Containers, time.Now())...), nil
}

// ContainerRestart restarts a managed container (destructive): each
// container its declaration matches is stopped (killed after its grace)
// and started. The settings of each are kept in a snapshot record first.
func (o *Ops) ContainerRestart(ctx context.Context, a control.Actor, name string) (hostctl.ContainerState, error) {
	c := control.Call{Actor: a, Tool: "container_restart", Target: name, Args: map[string]string{"container": name}}
	host, err := o.Host()
	if err != nil {
		return hostctl.ContainerState{}, o.Control.Refuse(ctx, c, err)
	}
	k, ok := host.Container(name)
	if !ok {
		return hostctl.ContainerState{}, o.Control.Refuse(ctx, c, notDeclared("container", name))
	}
	c.Target = name + " (" + k.Selector().String() + ")"
	rt := host.Runtime()
	err = o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		ids, err := rt.Find(ctx, k.Selector())
		if err != nil {
			return "", err
		}
		if len(ids) == 0 {
			return "", control.Invalidf("container: no container matches %s's %s", name, k.Selector())
		}
		var snaps []string
		for _, id := range ids {
			d, err := rt.Inspect(ctx, id)
			if err != nil {
				return "", err
			}
			sn, err := o.Snapshots.Record("container:"+name, d.Raw, "before container_restart by "+a.String())
			if err != nil {
				return "", err
			}
			snaps = append(snaps, sn.ID)
			if err := rt.Restart(ctx, id, k.StopGrace()); err != nil {
				return strings.Join(snaps, " "), err
			}
		}
		return strings.Join(snaps, " "), nil
	})
	if err != nil {
		return hostctl.ContainerState{}, err
	}
	return host.LookContainer(ctx, k, time.Now()), nil
}

// AgentRestart stops a non-host agent's opencode (write tier); it starts
// afresh at the agent's next turn. The host's own instance is stopped only
// with a person's approval (InstanceKill).
func (o *Ops) AgentRestart(ctx context.Context, a control.Actor, name string) (bool, error) {
	c := control.Call{Actor: a, Tool: "agent_restart", Target: name, Args: map[string]string{"agent": name}}
	if name == agent.Host {
		return false, o.Control.Refuse(ctx, c, control.Invalidf("agent: the host agent's own instance is stopped only with a person's approval (instance_kill)"))
	}
	var was bool
	err := o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		if _, err := o.Control.Log.Agent(ctx, name); err != nil {
			return "", err
		}
		was = o.Control.Runner.StopInstance(name)
		return "", nil
	})
	return was, err
}

// InstanceKill stops any agent's opencode at once (destructive): a turn it
// runs ends interrupted.
func (o *Ops) InstanceKill(ctx context.Context, a control.Actor, name string) (bool, error) {
	c := control.Call{Actor: a, Tool: "instance_kill", Target: name, Args: map[string]string{"agent": name}}
	if _, err := o.Control.Log.Agent(ctx, name); err != nil {
		return false, o.Control.Refuse(ctx, c, err)
	}
	var was bool
	err := o.Control.Do(ctx, c, func(ctx context.Context) (string, error) {
		was = o.Control.Runner.StopInstance(name)
		return "", nil
	})
	return was, err
}

// Diagnose runs the recovery checks (all, or those named), as
// `taosagent doctor` does.
func (o *Ops) Diagnose(ctx context.Context, checks []string) ([]doctor.Finding, error) {
	if o.Doctor == nil {
		return nil, errors.New("diagnose is not available in this daemon")
	}
	e := o.Doctor()
	defer e.Close()
	fs, err := doctor.Run(ctx, e, checks...)
	if err != nil {
		return nil, control.Invalidf("checks: %v", err)
	}
	for i := range fs {
		fs[i].Summary, fs[i].Details = o.Control.Redact(fs[i].Summary), o.Control.Redact(fs[i].Details)
	}
	return fs, nil
}
