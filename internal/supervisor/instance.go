package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/agenttree"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// State is where an instance is in its life.
type State string

// Instance states, as reported to OnState.
const (
	Starting  State = "starting"
	Ready     State = "ready"
	Crashed   State = "crashed"   // the process died unasked; a restart follows
	Restarted State = "restarted" // ready again after a crash
	Stopped   State = "stopped"
	Adopted   State = "adopted" // ready: a process an earlier daemon left running, taken over (Adopt)
	Waiting   State = "waiting" // for a slot under the running-instance cap
	Failed    State = "failed"  // could not start; a retry follows with backoff
)

// Spec says how to run one agent's opencode.
type Spec struct {
	Name string // the agent's name; unique within a Supervisor
	// Dir is the agent's own directory, which the agent can write:
	// opencode's data, state and cache, and its workdir. The daemon
	// touches it only through agenttree.
	Dir string
	// RunDir is the daemon's own directory of the instance, outside Dir,
	// which the agent can never write: the opencode config (its XDG config
	// home, bound read-only), the HOME opencode sees (bound read-only,
	// empty, also its working directory) and the log. Default
	// Dir+".instance".
	RunDir  string
	Workdir string // opencode's project directory; default Dir/work, or the Dst of one of Binds
	// Binds are host directories (the agent's workspaces) the confined
	// instance and its tools see at other paths (sandbox.Bind). An
	// unconfined instance cannot have any.
	Binds []sandbox.Bind
	// Modules is a node_modules directory of the daemon's (the plugin
	// package's install, opencode.PluginPackage) that the tools of the
	// config directory import from: linked there as node_modules, and
	// bound read-only. "": none.
	Modules string
	Config  opencode.Config // written as the instance's opencode.json at every start
	// Files are more of the config directory, written at every start (what
	// an earlier start wrote there is removed first): paths relative to
	// it, "/" separated, under ConfigDirs ("skills/NAME/SKILL.md").
	Files map[string][]byte
	// Instructions are those of Files that opencode adds to every turn's
	// system prompt (the Library's rules), in order; part of the spec's
	// sum, as Files are.
	Instructions []string
	// Limits bound the confined instance; zero fields take the sandbox's
	// defaults. Unconfined instances have none.
	Limits sandbox.ServiceLimits
	// UID and GID are the host ids the confined instance runs as when the
	// daemon is root: the agent's own (0: the sandbox's). Its directory is
	// handed to them at start if it belongs to anyone else.
	UID, GID int
}

// Instance is one supervised `opencode serve`. Its methods are safe for
// concurrent use.
type Instance struct {
	sup  *Supervisor
	spec Spec

	mu       sync.Mutex // guards the fields below
	state    State
	client   *opencode.Client // nil unless Ready
	pid      int
	nw       *instanceNet  // the current process's network, nil for the host's
	ready    chan struct{} // closed when the current process is ready
	isReady  bool          // ready is closed
	exited   chan struct{} // closed when the current process is gone
	lastUsed time.Time
	readyAt  time.Time // when the current process became ready
	stopping bool
	restarts int
	version  string        // the opencode version the current process runs
	served   bool          // the current process handed out its client
	delay    time.Duration // the last restart delay (0: at once, after a process that served)

	slot    chan struct{} // closed when the instance may start (under the cap)
	hasSlot bool          // guarded by sup.mu
	slotAt  time.Time     // when it got its slot; guarded by sup.mu
	freeing bool          // stopped to make room for a waiter; guarded by sup.mu
	waitWhy error         // why it waits under the cap, if not the cap: memory; set before run

	// An adopted instance (Adopt) knows its spec's paths and sum only,
	// until an Ensure of the same spec gives it the rest (take).
	adopted  *procRecord // the process to adopt first; the run loop's
	partial  bool        // guarded by mu
	ensured  *Spec       // the whole spec, for the next start; guarded by mu
	adoptSum string      // the adopted process's Spec.sum

	stopCh chan struct{} // closed by stop
	done   chan struct{} // closed when the run loop has ended
}

// idleLocked reports whether the instance is ready and in no turn; the
// caller holds sup.mu.
func (i *Instance) idleLocked() bool {
	if i.sup.holds[i.spec.Name] > 0 {
		return false
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state == Ready || i.state == Restarted || i.state == Adopted
}

// Name is the agent's name.
func (i *Instance) Name() string { return i.spec.Name }

// Workdir is opencode's project directory.
func (i *Instance) Workdir() string { return i.spec.Workdir }

// State returns the current state.
func (i *Instance) State() State {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// PID is the current opencode process id, 0 when none runs.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.pid
}

// Usage is what an instance's processes hold now (api.Usage).
type Usage = api.Usage

// Usage sums the instance's whole process tree (its sandbox, opencode and
// every tool below it); zero when no process runs.
func (i *Instance) Usage() Usage {
	pid := i.PID()
	if pid <= 0 {
		return Usage{}
	}
	var u Usage
	page, hz := int64(os.Getpagesize()), int64(100) // USER_HZ is 100 on Linux
	for _, p := range processTree(pid) {
		u.Processes++
		u.MemoryBytes += p.rss * page
		u.CPUMillis += int64(p.cpu) * 1000 / hz
	}
	return u
}

// Restarts counts restarts after crashes.
func (i *Instance) Restarts() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.restarts
}

// Version is the opencode version the instance's process runs (or last
// ran).
func (i *Instance) Version() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.version
}

// Touch marks the instance as used now, which defers its idle stop.
func (i *Instance) Touch() {
	i.mu.Lock()
	i.lastUsed = time.Now()
	i.mu.Unlock()
}

// Client waits until the instance is ready and returns a client for the
// current process. After a restart the address changes: ask again.
func (i *Instance) Client(ctx context.Context) (*opencode.Client, error) {
	c, _, err := i.Current(ctx)
	return c, err
}

// Current waits until the instance is ready and returns a client for the
// current process and a channel closed when that process is gone.
func (i *Instance) Current(ctx context.Context) (*opencode.Client, <-chan struct{}, error) {
	for {
		i.mu.Lock()
		ready, c, exited, stopping := i.ready, i.client, i.exited, i.stopping
		i.mu.Unlock()
		if stopping {
			return nil, nil, ErrStopped
		}
		if c != nil {
			i.mu.Lock()
			i.served = true
			i.mu.Unlock()
			return c, exited, nil
		}
		select {
		case <-ready:
		case <-i.done:
			return nil, nil, ErrStopped
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// ErrStopped: the instance was stopped.
var ErrStopped = errors.New("supervisor: instance stopped")

func (i *Instance) setState(st State, pid int, err error) {
	i.mu.Lock()
	i.state = st
	i.mu.Unlock()
	i.sup.notify(i.spec.Name, st, pid, err)
}

// run keeps the instance's process alive until stop: it restarts it after
// every crash, with backoff. The backoff grows while processes die before
// they are ready, and starts over once a process has been ready and
// served: an isolated crash is repaired at once.
func (i *Instance) run() {
	defer close(i.done)
	defer i.sup.releaseSlot(i)
	select {
	case <-i.slot:
	default:
		i.setState(Waiting, 0, i.waitWhy)
		select {
		case <-i.slot:
		case <-i.stopCh:
			i.setState(Stopped, 0, nil)
			return
		}
	}
	backoff := i.sup.MinBackoff
	crashed := false
	for {
		var exit, err error
		if rec := i.adopted; rec != nil {
			i.adopted = nil
			exit, err = i.adoptOnce(*rec)
		} else {
			exit, err = i.runOnce(crashed)
		}
		if i.Stopping() {
			i.setState(Stopped, 0, nil)
			return
		}
		if !i.restartable() {
			// Adopted, and no Ensure has given it its spec: it cannot be
			// started again. The next Ensure makes a new instance.
			i.sup.forget(i)
			i.setState(Stopped, 0, err)
			return
		}
		i.mu.Lock()
		if err == nil && i.served {
			// It was ready and served: its replacement starts at once. The
			// backoff is for processes that die while starting.
			backoff = 0
		}
		i.served, i.delay = false, backoff
		i.mu.Unlock()
		if err != nil {
			i.setState(Failed, 0, err)
		} else {
			i.mu.Lock()
			i.restarts++
			i.mu.Unlock()
			i.setState(Crashed, 0, exit)
		}
		crashed = true
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-i.stopCh:
			}
		}
		if i.Stopping() {
			i.setState(Stopped, 0, nil)
			return
		}
		backoff = min(max(backoff*2, i.sup.MinBackoff), i.sup.MaxBackoff)
	}
}

// Stopping reports whether the instance is being stopped (for good: a new
// one of its agent is a new Instance). No caller gets its client any more.
func (i *Instance) Stopping() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stopping
}

// innerPort is where opencode listens inside a namespace of its own
// (Doors): nothing else listens there but the door.
const innerPort = 4096

// process is one opencode process the instance follows: one it started,
// or one an earlier daemon left running (Adopt).
type process struct {
	rec    procRecord
	nw     *instanceNet // nil: the host's network
	waited <-chan error // receives once the process has exited
	log    string       // where its output goes
	// logFrom is where its output begins in log: with rec.Port 0, the
	// port it listens on is read there.
	logFrom int64
}

// runOnce starts one process and follows it until it exits. It returns a
// start error (err), or the process's exit status after it was ready
// (exit).
func (i *Instance) runOnce(restart bool) (exit error, err error) {
	i.newProcess()
	i.setState(Starting, 0, nil)
	i.takeSpec()
	p, err := i.start()
	if err != nil {
		return nil, err
	}
	st := Ready
	if restart {
		st = Restarted
	}
	return i.follow(p, st)
}

// newProcess makes waiters from now on wait for the next process.
func (i *Instance) newProcess() {
	i.mu.Lock()
	if i.isReady {
		i.ready, i.isReady = make(chan struct{}), false
	}
	i.client, i.exited = nil, make(chan struct{})
	i.mu.Unlock()
}

// start starts one process, recorded before anything else can happen to
// it. Detached (Supervisor.Detached), it outlives the daemon, which adopts
// it again when it restarts (Adopt).
func (i *Instance) start() (*process, error) {
	s := i.sup
	token := randid.Hex(24)
	binary, version := s.Release()
	i.mu.Lock()
	i.version = version
	i.mu.Unlock()
	var nw *instanceNet // nil: the host's network
	port := 0           // on the host's network opencode picks one, and says which in its log
	var err error
	if s.Sandbox != nil && s.Doors != nil {
		if nw, err = s.openNet(i.spec.Name, i.spec.RunDir, i.hostIDs(), 0); err != nil {
			return nil, fmt.Errorf("the instance's network: %w", err)
		}
		port = innerPort
	}
	cmd, password, log, err := i.prepare(binary, token, port, nw != nil)
	if err != nil {
		nw.close()
		return nil, err
	}
	defer log.Close() // the process has its own
	logFrom, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		nw.close()
		return nil, err
	}
	if nw != nil {
		err = nw.ns.Do(cmd.Start) // forked inside: opencode is born in its namespace
	} else {
		err = cmd.Start()
	}
	sandbox.CloseFiles(cmd)
	if err != nil {
		nw.close()
		return nil, fmt.Errorf("start opencode: %w", err)
	}
	pid := cmd.Process.Pid
	rec := procRecord{Name: i.spec.Name, PID: pid, BootID: bootID(), Token: token, Password: password, Port: port,
		Doors: nw != nil, Version: version, Spec: s.sum(i.spec), Dir: i.spec.Dir, RunDir: i.spec.RunDir, Workdir: i.spec.Workdir}
	if pi, ok := readStat(pid); ok {
		rec.Start = pi.start
		if err := s.pids.add(rec); err != nil {
			s.Logger.Error("record instance pid", "agent", i.spec.Name, "err", err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	return &process{rec: rec, nw: nw, waited: waited, log: i.spec.logPath(), logFrom: logFrom}, nil
}

// follow waits for process p to answer as the pinned release, then serves
// its client (in state st) until it exits, and reaps what it leaves. It
// returns as runOnce does.
//
// It is long: one process's life in order (readiness, ready, exit), each
// way out handled where it happens.
func (i *Instance) follow(p *process, st State) (exit error, err error) {
	s := i.sup
	pid := p.rec.PID
	i.mu.Lock()
	i.pid, i.nw = pid, p.nw
	ready, exited := i.ready, i.exited
	if i.stopping {
		// stop ran before the pid was known: deliver its signal now.
		killGroup(pid, syscall.SIGTERM)
	}
	i.mu.Unlock()
	reap := func() {
		// The leader is gone; whatever it started goes with it, tools
		// included (they run in groups of their own).
		killGroup(pid, syscall.SIGKILL)
		killTagged(p.rec.Token)
		p.nw.close()
		s.pids.remove(pid)
		i.mu.Lock()
		i.pid, i.client, i.nw = 0, nil, nil
		i.mu.Unlock()
		close(exited)
	}
	kill := func() {
		killGroup(pid, syscall.SIGKILL)
		<-p.waited
		reap()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.StartTimeout)
	var client *opencode.Client
	checked := make(chan error, 1)
	go func() {
		c, err := i.connect(ctx, p)
		client = c
		checked <- err
	}()
	select {
	case err = <-checked:
		cancel()
		if err != nil {
			kill()
			return nil, fmt.Errorf("%w; see %s", err, p.log)
		}
	case werr := <-p.waited:
		cancel()
		<-checked
		reap()
		return nil, fmt.Errorf("opencode exited before it was ready (%v); see %s", werr, p.log)
	case <-i.stopCh:
		cancel()
		<-checked
		kill()
		return nil, ErrStopped
	}
	// The state is st by the time a caller of Client sees the client: a
	// hold released right after must find the instance idle.
	i.mu.Lock()
	i.client = client
	i.lastUsed = time.Now()
	i.readyAt = i.lastUsed
	i.isReady = true
	i.state = st
	close(ready)
	i.mu.Unlock()
	i.sup.notify(i.spec.Name, st, pid, nil)
	// Nothing may be left waiting behind an instance that nobody holds.
	s.mu.Lock()
	s.evictLocked()
	s.mu.Unlock()
	werr := <-p.waited
	reap()
	if werr == nil {
		werr = errors.New("exited with status 0")
	}
	return werr, nil
}

// connect finds where process p listens, and returns its client once it
// answers as its release. On the host's network the port is the one
// opencode said in its log (chosen by itself, so no other program can have
// taken it first), and is recorded; in a namespace of its own it is
// innerPort, reached through a forward on the host's loopback.
func (i *Instance) connect(ctx context.Context, p *process) (*opencode.Client, error) {
	if p.rec.Port == 0 {
		port, err := listeningPort(ctx, p.log, p.logFrom)
		if err != nil {
			return nil, err
		}
		p.rec.Port = port
		if err := i.sup.pids.update(p.rec); err != nil {
			i.sup.Logger.Error("record instance port", "agent", i.spec.Name, "err", err)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", p.rec.Port)
	if p.nw != nil {
		var err error
		if base, err = p.nw.forward(base); err != nil {
			return nil, err
		}
	}
	c := &opencode.Client{BaseURL: base, Password: p.rec.Password, Directory: i.spec.Workdir, HTTP: i.sup.httpClient}
	return c, checkVersion(ctx, c, p.rec.Version)
}

var listeningRE = regexp.MustCompile(`opencode server listening on http://127\.0\.0\.1:(\d+)`)

// listeningPort reads the port opencode says it listens on from its log,
// past offset from, as it is written, until ctx ends.
func listeningPort(ctx context.Context, path string, from int64) (int, error) {
	for {
		if f, err := os.Open(path); err == nil {
			b, _ := io.ReadAll(io.NewSectionReader(f, from, 1<<20))
			f.Close()
			if m := listeningRE.FindSubmatch(b); m != nil {
				return strconv.Atoi(string(m[1]))
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("opencode did not say where it listens in time: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkVersion asks /global/health with short timeouts until the pinned
// version answers or ctx ends: a request that lands too early is never
// answered, and one before opencode listens is refused.
func checkVersion(ctx context.Context, c *opencode.Client, version string) error {
	probe := *c
	probe.Timeout = time.Second
	var err error
	for {
		if err = probe.CheckVersionOf(ctx, version); err == nil || errors.Is(err, opencode.ErrWrongVersion) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("opencode was not ready in time: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logPath is the instance's log, in the daemon's directory.
func (sp Spec) logPath() string { return filepath.Join(sp.RunDir, "opencode.log") }

// toolHome is the agent's tools' HOME in its directory dir, kept between
// runs (sandbox.Service.ToolHome).
func toolHome(dir string) string { return filepath.Join(dir, "toolhome") }

// ownWorkdir is the working directory inside Dir: Workdir, unless that is
// a workspace (then Dir/work, made all the same).
func (sp Spec) ownWorkdir() string {
	if under(sp.Workdir, sp.Dir) {
		return sp.Workdir
	}
	return filepath.Join(sp.Dir, "work")
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// prepare lays out the agent's directories, writes its config and builds
// the command. opencode gets a fresh password, loopback only, nothing of
// the daemon's environment but PATH and locale, and reads configuration
// only from the daemon's directory (confineEnv). With doors, its config
// names the door's URLs and its fetches go to the door's egress proxy; the
// caller starts the command inside the instance's namespace.
//
// It is long: the command, its environment and its directories in the order
// opencode needs them.
func (i *Instance) prepare(binary, token string, port int, doors bool) (*exec.Cmd, string, *os.File, error) {
	d, run := i.spec.Dir, i.spec.RunDir
	cfgHome := filepath.Join(run, "config")
	cfgDir := filepath.Join(cfgHome, "opencode")
	home := filepath.Join(run, "home")
	xdg := map[string]string{
		"XDG_CONFIG_HOME": cfgHome,
		"XDG_DATA_HOME":   filepath.Join(d, "home", ".local", "share"),
		"XDG_CACHE_HOME":  filepath.Join(d, "home", ".cache"),
		"XDG_STATE_HOME":  filepath.Join(d, "home", ".local", "state"),
	}
	sb := i.sup.Sandbox // nil: unconfined
	ids := i.hostIDs()
	if sb == nil && len(i.spec.Binds) > 0 {
		return nil, "", nil, errors.New("workspaces are bound only into a confined instance's sandbox")
	}
	if err := agentDirs(d, i.spec.ownWorkdir(), xdg); err != nil {
		return nil, "", nil, err
	}
	for _, p := range []string{run, cfgHome, cfgDir, home} {
		if err := daemonDir(ids, p); err != nil {
			return nil, "", nil, err
		}
	}
	config := i.spec.Config
	if doors {
		config = rebase(config, i.sup.Doors.DaemonURL, door.URL)
	}
	config.Instructions = slices.Clone(config.Instructions)
	for _, p := range i.spec.Instructions {
		config.Instructions = append(config.Instructions, filepath.Join(cfgDir, filepath.FromSlash(p)))
	}
	cfg, err := config.ConfigJSON()
	if err != nil {
		return nil, "", nil, err
	}
	if err := writeConfigFiles(ids, cfgDir, i.spec.Files); err != nil {
		return nil, "", nil, err
	}
	// The tools' imports: a link the daemon makes in its own directory,
	// to its own install (opencode installs nothing in a directory it
	// cannot write).
	modules := filepath.Join(cfgDir, "node_modules")
	if err := os.RemoveAll(modules); err != nil {
		return nil, "", nil, err
	}
	if i.spec.Modules != "" {
		if err := os.Symlink(i.spec.Modules, modules); err != nil {
			return nil, "", nil, err
		}
	}
	empty := filepath.Join(run, "empty") // what the masks bind (masks)
	for path, b := range map[string][]byte{
		filepath.Join(cfgDir, "opencode.json"): cfg,
		// opencode writes this file into its config directory when it is
		// missing, and fails when it cannot; the directory is read-only
		// to a confined instance, so that it cannot rewrite its own
		// config.
		filepath.Join(cfgDir, ".gitignore"): []byte(opencode.ConfigGitignore),
		empty:                               nil,
	} {
		if err := daemonFile(ids, path, b); err != nil {
			return nil, "", nil, err
		}
	}
	password := randid.Hex(24)
	log, err := openLog(i.spec.logPath(), i.sup.LogCap)
	if err != nil {
		return nil, "", nil, err
	}
	env := append(confineEnv(), "HOME="+home, tokenVar+"="+token, "OPENCODE_SERVER_PASSWORD="+password)
	if i.spec.Config.Questions {
		// opencode serve offers the question tool only when told.
		env = append(env, "OPENCODE_ENABLE_QUESTION_TOOL=1")
	}
	for k, v := range xdg {
		env = append(env, k+"="+v)
	}
	args := []string{binary, "serve", "--hostname", "127.0.0.1", "--port", strconv.Itoa(port)}
	var cmd *exec.Cmd
	if sb != nil {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8")
		if doors {
			env = append(env, proxyEnv()...)
		}
		if err := ownDir(sb, ids, d); err != nil {
			log.Close()
			return nil, "", nil, fmt.Errorf("hand %s to the sandbox user: %w", d, err)
		}
		ro := []string{cfgHome, home}
		if i.spec.Modules != "" {
			ro = append(ro, i.spec.Modules)
		}
		svc := sandbox.Service{Command: args, Dir: d, Workdir: i.spec.Workdir, Binds: i.spec.Binds, ToolHome: toolHome(d),
			ReadOnly: ro, Cwd: home, Masks: masks(d, i.spec.Workdir, xdg["XDG_CACHE_HOME"]), Empty: empty,
			Env: env, Network: true, Limits: i.spec.Limits, Detached: i.sup.Detached}
		if ids != nil {
			svc.UID, svc.GID = ids.uid, ids.gid
		}
		if doors && i.sup.Doors.ToolProxy != nil && i.sup.Doors.Relay != "" {
			svc.ToolProxy, svc.Relay = toolProxyDir(run), i.sup.Doors.Relay
		}
		cmd, err = sb.Command(context.Background(), svc)
		if err != nil {
			log.Close()
			return nil, "", nil, err
		}
	} else {
		for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Dir = home
		cmd.Env = env
		// Its own process group, so stop and sweep reach the tools it
		// runs; detached, it outlives the daemon, which adopts it again
		// (Adopt); otherwise it dies with the thread that started it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if !i.sup.Detached {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}
	}
	cmd.Stdout, cmd.Stderr = log, log
	return cmd, password, log, nil
}

// confineEnv is opencode's environment switches: every place opencode
// 1.18.33 would read configuration or code from, other than its XDG config
// home, switched off (docs/CONFINEMENT.md lists them all, and how each is
// closed). The rest are kept out of the agent's reach by the layout:
// HOME and the working directory are the daemon's, read-only.
func confineEnv() []string {
	return []string{
		"OPENCODE_DISABLE_AUTOUPDATE=1",
		"OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_DISABLE_MODELS_FETCH=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1",
		// opencode.json(c) and .opencode/ up the tree from the project
		// directory, and AGENTS.md there as instructions.
		"OPENCODE_DISABLE_PROJECT_CONFIG=1",
		// ~/.claude (CLAUDE.md, skills); .claude/ and .agents/ skills up
		// the tree.
		"OPENCODE_DISABLE_CLAUDE_CODE=1",
		"OPENCODE_DISABLE_EXTERNAL_SKILLS=1",
		// Plugins opencode installs by itself into its cache and loads.
		"OPENCODE_DISABLE_DEFAULT_PLUGINS=1",
		// auth.json (in the data directory, which the agent can write):
		// provider credentials and "wellknown" remote config URLs. The
		// provider's key is in the config.
		"OPENCODE_AUTH_CONTENT={}",
		// opencode runs git in the project directory, which the agent
		// writes: no system or global git config, and none of the
		// repository's own settings that run a program.
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_COUNT=6",
		"GIT_CONFIG_KEY_0=core.fsmonitor", "GIT_CONFIG_VALUE_0=false",
		"GIT_CONFIG_KEY_1=core.hooksPath", "GIT_CONFIG_VALUE_1=/dev/null",
		"GIT_CONFIG_KEY_2=core.sshCommand", "GIT_CONFIG_VALUE_2=false",
		"GIT_CONFIG_KEY_3=core.pager", "GIT_CONFIG_VALUE_3=cat",
		"GIT_CONFIG_KEY_4=diff.external", "GIT_CONFIG_VALUE_4=",
		"GIT_CONFIG_KEY_5=core.attributesFile", "GIT_CONFIG_VALUE_5=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		// opencode installs a plugin package from npm at first boot; it is
		// not needed (94 MB per agent). A closed registry turns it off.
		"npm_config_registry=http://127.0.0.1:9/",
	}
}

// masks are the paths of the agent's tree where opencode 1.18.33 would
// find configuration or code that the switches of confineEnv do not turn
// off; the sandbox covers each, read-only and empty:
//
//   - opencode.json, opencode.jsonc and .opencode/ in the project
//     directory and every directory above it in the agent's tree: its
//     newer config loader walks up from the project directory for them
//     (and loads plugins, skills, agents and commands from .opencode/)
//     whatever OPENCODE_DISABLE_PROJECT_CONFIG says, and only when an
//     instance starts (it has no hot reload), so a name that does not
//     exist then needs no cover;
//   - its cache's bin/ (it runs rg from there when none is in PATH) and
//     node_modules/ (plugins and provider packages it imports).
//
// A workdir that is a workspace is covered alone: the directories above
// it in the sandbox are the sandbox's own, read-only.
func masks(dir, workdir, cache string) []string {
	var out []string
	for d := filepath.Clean(workdir); ; d = filepath.Dir(d) {
		for _, n := range []string{"opencode.json", "opencode.jsonc", ".opencode"} {
			out = append(out, filepath.Join(d, n))
		}
		if d == filepath.Clean(dir) || d == filepath.Dir(d) || !under(d, dir) {
			break
		}
	}
	return append(out, filepath.Join(cache, "opencode", "bin"), filepath.Join(cache, "opencode", "node_modules"))
}

// agentDirs makes the agent's directories inside its tree, through
// agenttree: the agent may have planted links anywhere in it.
func agentDirs(dir, workdir string, xdg map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	t, err := agenttree.Open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	// The cache's bin/ and node_modules/ too, so that they are masked
	// from the first start (masks).
	cache := filepath.Join(xdg["XDG_CACHE_HOME"], "opencode")
	for _, p := range []string{workdir, toolHome(dir), xdg["XDG_DATA_HOME"], filepath.Join(cache, "bin"), filepath.Join(cache, "node_modules"), xdg["XDG_STATE_HOME"]} {
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("prepare %s: outside the agent's directory", p)
		}
		if err := t.MkdirAll(rel, 0o700); err != nil {
			return fmt.Errorf("prepare %s: %w", p, err)
		}
	}
	return nil
}

// hostIDs are the host uid and gid a confined instance runs as when the
// daemon is root: its own, or the sandbox's. Nil when the daemon is not
// root or the instance is unconfined (it then runs as the daemon's user).
type hostIDs struct{ uid, gid int }

func (i *Instance) hostIDs() *hostIDs {
	sb := i.sup.Sandbox
	switch {
	case sb == nil || os.Geteuid() != 0:
		return nil
	case i.spec.UID > 0:
		return &hostIDs{i.spec.UID, i.spec.GID}
	}
	return &hostIDs{sb.UID, sb.GID}
}

// daemonDir makes dir, one of the daemon's own, readable by the instance's
// user and writable by nobody else: root:GID 0750 when the daemon is root,
// 0700 otherwise (the sandbox then maps to the daemon's own user).
func daemonDir(ids *hostIDs, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	if ids == nil {
		return os.Chmod(dir, 0o700)
	}
	return daemonShare(ids, dir, 0o750)
}

// ConfigDirs are the directories of an instance's config directory that
// Spec.Files fill: opencode loads skills and commands from them.
var ConfigDirs = []string{"skills", "commands", "rules", "tool"}

// writeConfigFiles replaces ConfigDirs in cfgDir, the daemon's own, with
// files.
func writeConfigFiles(ids *hostIDs, cfgDir string, files map[string][]byte) error {
	for _, d := range ConfigDirs {
		if err := os.RemoveAll(filepath.Join(cfgDir, d)); err != nil {
			return err
		}
	}
	for rel, b := range files {
		top, _, _ := strings.Cut(rel, "/")
		if !filepath.IsLocal(rel) || !slices.Contains(ConfigDirs, top) {
			return fmt.Errorf("a config file %q out of %v", rel, ConfigDirs)
		}
		p := filepath.Join(cfgDir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := daemonFile(ids, p, b); err != nil {
			return err
		}
	}
	// The directories made, readable to the instance's group as the
	// files are.
	for _, d := range ConfigDirs {
		err := filepath.WalkDir(filepath.Join(cfgDir, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return err
			}
			return daemonShare(ids, p, 0o750)
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// daemonShare gives path, the daemon's own, to root:GID with mode (root
// only; others keep 0600/0700).
func daemonShare(ids *hostIDs, path string, mode fs.FileMode) error {
	if ids == nil {
		return nil
	}
	if err := os.Lchown(path, 0, ids.gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// daemonFile writes b to path, one of the daemon's own files, readable by
// the instance's user and writable by nobody else (daemonShare 0640).
func daemonFile(ids *hostIDs, path string, b []byte) error {
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return err
	}
	return daemonShare(ids, path, 0o640)
}

// ownDir hands the agent's directory to the instance's uid, unless it
// already belongs to it (everything in it then was made by that uid or by
// an earlier hand-over). A tree of another uid (65534, before each agent
// had its own; or an agent re-created) is re-owned whole.
func ownDir(sb *sandbox.Sandbox, ids *hostIDs, dir string) error {
	if ids == nil {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == ids.uid && int(st.Gid) == ids.gid {
		return nil
	}
	return sb.OwnDir(dir, ids.uid, ids.gid)
}

func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		syscall.Kill(-pgid, sig)
	}
}

// beginStop marks the instance stopping, so that no one gets its client
// from now on, and sends SIGTERM to its group. It reports false if the
// instance was already stopping.
func (i *Instance) beginStop() bool {
	i.mu.Lock()
	if i.stopping {
		i.mu.Unlock()
		return false
	}
	i.stopping = true
	close(i.stopCh)
	pid := i.pid
	i.mu.Unlock()
	killGroup(pid, syscall.SIGTERM)
	return true
}

// stop ends the instance: SIGTERM to its process group, SIGKILL after the
// grace period; it returns when the run loop has ended.
func (i *Instance) stop() {
	if !i.beginStop() {
		<-i.done
		return
	}
	select {
	case <-i.done:
		return
	case <-time.After(i.sup.StopGrace):
	}
	killGroup(i.PID(), syscall.SIGKILL)
	<-i.done
}
