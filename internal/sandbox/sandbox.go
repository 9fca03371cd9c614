// Package sandbox runs untrusted commands — builds of generated code — in a
// disposable bubblewrap sandbox, and never anywhere else.
//
// A run sees a read-only /usr (with the usual /bin, /lib symlinks), a few
// harmless files of /etc, a fresh /tmp, /proc of its own pid namespace, a
// minimal /dev, and the workspace directory, mounted read-write at
// /workspace. Home directories, /root, /etc/shadow, taosagent's home and the
// daemon's token are simply absent. It has no network (a loopback of its own
// only), new pid, ipc, uts, cgroup and user namespaces, no capabilities, no
// way to make more user namespaces, a seccomp filter (see Denied), its own
// session, and it dies with its parent. Resource limits are rlimits set
// inside the sandbox, plus a wall clock kept by Run.
//
// If bubblewrap is missing or cannot create the namespaces, Run refuses with
// ErrUnavailable: there is no fallback to running on the host.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/hostid"
)

// ErrUnavailable means the sandbox cannot be built on this host. Nothing was run.
var ErrUnavailable = errors.New("sandbox unavailable")

// Limit names, as reported in Result.LimitHit.
const (
	LimitWall      = "wall"
	LimitCPU       = "cpu"
	LimitMemory    = "memory"
	LimitProcesses = "processes"
	LimitFileSize  = "file_size"
	LimitDisk      = "disk" // its workspace or its /tmp is full (Disk, Tmp)
)

// Limits bound one run. A zero field takes its value from DefaultLimits.
type Limits struct {
	Wall      time.Duration // wall-clock time; the whole sandbox is killed after it
	CPU       time.Duration // CPU time (RLIMIT_CPU), rounded up to whole seconds
	Memory    int64         // data memory in bytes: heap and other private writable mappings (RLIMIT_DATA)
	Processes int           // processes and threads of the sandbox's user (RLIMIT_NPROC)
	FileSize  int64         // largest file the command may write, in bytes (RLIMIT_FSIZE)
	Output    int64         // bytes kept of stdout and of stderr each; the rest is counted and dropped
	// Disk bounds the workspace, in bytes, for a run made by root (the
	// daemon): the command works on a copy of it in a tmpfs of this size,
	// written back to the host's disk when the command ends; a run killed
	// (wall clock, cancel) writes nothing back. Runs made by another user
	// work on the workspace itself, bounded only per file.
	Disk int64
	Tmp  int64 // the size of the run's /tmp (a tmpfs, in memory), in bytes
}

// DefaultLimits suit a web app's build: 5 minutes, 2 minutes of CPU, 4 GiB
// of data memory, 256 processes, 256 MiB per file, 1 GiB of workspace,
// 256 MiB of /tmp, 1 MiB of each output.
//
// Memory is bounded by RLIMIT_DATA rather than RLIMIT_AS: Go and V8 reserve
// large address ranges they never use, and fail at start under a tight
// address-space limit.
func DefaultLimits() Limits {
	return Limits{
		Wall:      5 * time.Minute,
		CPU:       2 * time.Minute,
		Memory:    4 << 30,
		Processes: 256,
		FileSize:  256 << 20,
		Output:    1 << 20,
		Disk:      1 << 30,
		Tmp:       256 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.Wall <= 0 {
		l.Wall = d.Wall
	}
	if l.CPU <= 0 {
		l.CPU = d.CPU
	}
	if l.Memory <= 0 {
		l.Memory = d.Memory
	}
	if l.Processes <= 0 {
		l.Processes = d.Processes
	}
	if l.FileSize <= 0 {
		l.FileSize = d.FileSize
	}
	if l.Output <= 0 {
		l.Output = d.Output
	}
	if l.Disk <= 0 {
		l.Disk = d.Disk
	}
	if l.Tmp <= 0 {
		l.Tmp = d.Tmp
	}
	return l
}

// Spec is one command to run.
type Spec struct {
	// Workspace is the host directory mounted read-write at /workspace,
	// which is also the working directory. It must exist.
	Workspace string
	// Command is the program and its arguments, as seen inside the sandbox.
	Command []string
	// Env adds KEY=VALUE pairs to the sandbox's environment, which otherwise
	// holds only PATH, HOME=/tmp, TMPDIR=/tmp and LANG. Nothing of the
	// caller's environment is passed on.
	Env []string
	// ReadOnly lists extra host paths (a toolchain, say) mounted read-only at
	// the same place.
	ReadOnly []string
	// Stdin feeds the command's standard input; nil means empty.
	Stdin  io.Reader
	Limits Limits
}

// Result reports how a run ended. A command that fails, is killed, or hits
// a limit is a Result, not an error.
type Result struct {
	ExitCode int `json:"exit_code"`
	// Signal names the signal that ended the command ("SIGKILL"), if any.
	// bubblewrap reports a death by signal N as exit status 128+N, so a
	// command that exits with such a status itself is reported the same way.
	Signal string `json:"signal,omitempty"`
	// LimitHit names the limit that ended the run or made it fail, if any
	// (LimitWall, LimitCPU, …). Wall time and file size are known for sure.
	// CPU is known from SIGXCPU, or inferred from a SIGKILL after at least
	// the CPU limit has passed (Go programs ignore SIGXCPU, and the hard
	// limit kills them a second later). Memory and processes are inferred
	// from the errors the command printed, as the kernel only makes the
	// allocation or the fork fail.
	LimitHit        string        `json:"limit_hit,omitempty"`
	Stdout          []byte        `json:"-"`
	Stderr          []byte        `json:"-"`
	StdoutDropped   int64         `json:"stdout_dropped,omitempty"`
	StderrDropped   int64         `json:"stderr_dropped,omitempty"`
	Duration        time.Duration `json:"duration_ns"`
	CPUTime         time.Duration `json:"cpu_time_ns"`
	WorkspaceNotice string        `json:"workspace_notice,omitempty"`
}

// OK reports whether the command exited with status 0 within its limits.
func (r *Result) OK() bool { return r.ExitCode == 0 && r.LimitHit == "" }

// Sandbox builds and runs sandboxes. The zero value is not ready; use New.
type Sandbox struct {
	// Bwrap is the bubblewrap binary. New sets it from PATH.
	Bwrap string
	// Prlimit is util-linux's prlimit, which sets the rlimits inside the
	// sandbox. It must live under /usr, which the sandbox can see.
	Prlimit string
	// Setpriv is util-linux's setpriv, with which root's outer layer drops
	// to UID:GID (see launch).
	Setpriv string
	// UID and GID are the unprivileged host ids a sandbox takes when the
	// caller is root (default 65534, nobody): the kernel exempts root from
	// the process limit, and root would own the sandbox's user namespace.
	// A build's workspace is handed to them for the run and handed back
	// after; a service's directory belongs to them.
	UID, GID int
	// BuildIDs, when set, gives each run made by root a uid (and the gid
	// of the same number) of its own from the pool, instead of UID:GID:
	// runs cannot see or signal one another, and the process limit is
	// each run's. An id is handed out again only when the run's workspace
	// was handed back whole.
	BuildIDs *hostid.Pool
	// StageDir is where root stages the idmapped mounts of services'
	// binds (Bind) while their sandboxes are built; one per daemon, as
	// SweepBinds clears it. Default DefaultStageDir.
	StageDir string

	mu      sync.Mutex
	checked bool // guarded by mu: Check has succeeded once
}

// New returns a Sandbox using the bwrap found in PATH. It does not check
// that bubblewrap works; Run does that on first use, or call Check.
func New() *Sandbox {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		bwrap = "bwrap"
	}
	return &Sandbox{Bwrap: bwrap, Prlimit: "/usr/bin/prlimit", Setpriv: "/usr/bin/setpriv", UID: 65534, GID: 65534}
}

// Check runs `true` in a sandbox with every namespace and the seccomp
// filter, and returns ErrUnavailable, with the reason and the fix, if that
// fails. A success is remembered.
func (s *Sandbox) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked {
		return nil
	}
	if _, err := exec.LookPath(s.Bwrap); err != nil {
		return fmt.Errorf("%w: bubblewrap (bwrap) is not installed; install the Debian package: apt-get install -y bubblewrap", ErrUnavailable)
	}
	if !strings.HasPrefix(s.Prlimit, "/usr/") {
		return fmt.Errorf("%w: prlimit must live under /usr, got %q", ErrUnavailable, s.Prlimit)
	}
	if _, err := os.Stat(s.Prlimit); err != nil {
		return fmt.Errorf("%w: prlimit not found at %s; install the Debian package util-linux", ErrUnavailable, s.Prlimit)
	}
	if _, err := os.Stat(s.Setpriv); err != nil && os.Geteuid() == 0 {
		return fmt.Errorf("%w: setpriv not found at %s; install the Debian package util-linux", ErrUnavailable, s.Setpriv)
	}
	dir, err := os.MkdirTemp("", "taosagent-sandbox-check-")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer os.RemoveAll(dir)
	res, err := s.run(ctx, Spec{Workspace: dir, Command: []string{"/usr/bin/true"}, Limits: Limits{Wall: 10 * time.Second}})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		msg := strings.TrimSpace(string(res.Stderr))
		if msg == "" {
			msg = "exit status " + strconv.Itoa(res.ExitCode)
		}
		return fmt.Errorf("%w: bubblewrap cannot create the sandbox here (%s); user namespaces must be enabled (sysctl user.max_user_namespaces > 0)", ErrUnavailable, msg)
	}
	s.checked = true
	return nil
}

// Run runs spec.Command in a fresh sandbox and waits for it. The error is
// ErrUnavailable if the sandbox cannot be built (nothing ran), a usage
// error for a bad Spec, or the context's error if ctx ended first (the
// sandbox is killed and its Result returned too).
func (s *Sandbox) Run(ctx context.Context, spec Spec) (*Result, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s.run(ctx, spec)
}

// run is long: bubblewrap's arguments in the order they apply, each
// confinement beside its reason.
func (s *Sandbox) run(ctx context.Context, spec Spec) (*Result, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, errors.New("sandbox run: no command")
	}
	ws, err := filepath.Abs(spec.Workspace)
	if err == nil {
		ws, err = filepath.EvalSymlinks(ws)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox run: workspace: %w", err)
	}
	if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("sandbox run: workspace %s is not a directory", spec.Workspace)
	}
	for _, p := range spec.ReadOnly {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("sandbox run: read-only path %q is not absolute", p)
		}
	}
	lim := spec.Limits.withDefaults()

	filter, err := seccompProgram()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	filterFile, err := memFile("taosagent-seccomp", filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer filterFile.Close()

	res := &Result{}
	var wsDir *os.File
	uid, gid := s.UID, s.GID
	if os.Geteuid() == 0 && s.BuildIDs != nil {
		id, release, err := s.BuildIDs.Acquire()
		if err != nil {
			return nil, err
		}
		uid, gid = id, id
		// Kept from the pool for good if the run leaves a file of its own
		// behind in the workspace.
		defer func() { release(res.WorkspaceNotice != "") }()
	}
	if os.Geteuid() == 0 {
		// One run at a time on a workspace: each hands it over and back,
		// and a second would take the first's id for the owner to give
		// it back to.
		defer lockWorkspace(ws)()
		// Root works on the directory ws resolved to, held open: a link
		// swapped into its path from now on is never followed.
		if wsDir, err = openNoLinks(ws); err != nil {
			return nil, fmt.Errorf("sandbox run: workspace %s changed while it was opened: %w", spec.Workspace, err)
		}
		defer wsDir.Close()
		restore, err := handOver(wsDir, uid, gid)
		if err != nil {
			return nil, fmt.Errorf("sandbox run: hand workspace to uid %d: %w", uid, err)
		}
		defer func() { res.WorkspaceNotice = restore() }()
	}

	// Run by root, the command works on a bounded copy of the workspace,
	// which the outer layer writes back when it ends.
	var wsCopy *copyBack
	if os.Geteuid() == 0 {
		wsCopy = &copyBack{ws: ws, size: lim.Disk}
	}
	inner, host := s.bwrapArgs(ws, wsDir != nil, spec, lim, wsCopy != nil)
	cmd := s.launchCopy(uid, gid, host, inner, wsCopy, false, 0)
	cmd.Env = sandboxEnv(spec.Env)
	cmd.Dir = "/"
	cmd.Stdin = spec.Stdin
	stdout := &capped{max: lim.Output}
	stderr := &capped{max: lim.Output}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{filterFile} // fd 3
	if wsDir != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, wsDir) // fd 4 (wsFD)
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start bwrap: %v", ErrUnavailable, err)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var wallHit, ctxDone atomic.Bool
	timer := time.AfterFunc(lim.Wall, func() { wallHit.Store(true); kill() })
	stopCtx := context.AfterFunc(ctx, func() { ctxDone.Store(true); kill() })
	waitErr := cmd.Wait()
	timer.Stop()
	stopCtx()
	res.Duration = time.Since(start)

	res.Stdout, res.StdoutDropped = stdout.buf.Bytes(), stdout.dropped
	res.Stderr, res.StderrDropped = stderr.buf.Bytes(), stderr.dropped
	if st := cmd.ProcessState; st != nil {
		res.CPUTime = st.UserTime() + st.SystemTime()
		res.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// bwrap itself was killed (by our wall clock or ctx).
			res.ExitCode = 128 + int(ws.Signal())
		}
	} else if waitErr != nil {
		return nil, fmt.Errorf("sandbox run: %w", waitErr)
	}
	if res.ExitCode > 128 && res.ExitCode <= 128+64 {
		res.Signal = signalName(syscall.Signal(res.ExitCode - 128))
	}
	wall, cancelled := wallHit.Load(), ctxDone.Load()
	res.LimitHit = limitHit(res, lim, wall)
	if cancelled && !wall {
		return res, ctx.Err()
	}
	return res, nil
}

// workspaces holds a lock per workspace that runs are using.
var workspaces = struct {
	sync.Mutex
	m map[string]*wsLock
}{m: map[string]*wsLock{}}

type wsLock struct {
	sync.Mutex
	users int
}

// lockWorkspace waits until no other run uses ws, and returns the unlock.
func lockWorkspace(ws string) (unlock func()) {
	workspaces.Lock()
	l := workspaces.m[ws]
	if l == nil {
		l = &wsLock{}
		workspaces.m[ws] = l
	}
	l.users++
	workspaces.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		workspaces.Lock()
		if l.users--; l.users == 0 {
			delete(workspaces.m, ws)
		}
		workspaces.Unlock()
	}
}

// bwrapArgs builds the sandbox, and lists the host paths it mounts (ws by
// its descriptor wsFD when held). Order matters: mounts are applied in
// order.
func (s *Sandbox) bwrapArgs(ws string, held bool, spec Spec, lim Limits, copied bool) ([]string, []hostPath) {
	a := namespaceArgs(false, false)
	fsArgs, host := baseFS(etcAllowed, lim.Tmp)
	a = append(a, fsArgs...)
	for _, p := range spec.ReadOnly {
		a = append(a, "--ro-bind", p, p)
		host = append(host, hostPath{path: p})
	}
	wsPath := hostPath{path: ws, rw: true}
	if held {
		wsPath.fd = wsFD
	}
	host = append(host, wsPath)
	cpu := int64((lim.CPU + time.Second - 1) / time.Second)
	src := ws
	if copied {
		src = copyDir + "/w" // the outer layer's bounded copy of ws
	}
	a = append(a,
		"--bind", src, "/workspace",
		"--remount-ro", "/",
		"--chdir", "/workspace",
		"--seccomp", "3",
		"--",
	)
	a = append(a, s.prlimitArgs(cpu, lim.Memory, lim.Processes, lim.FileSize)...)
	return append(a, spec.Command...), host
}

// prlimitArgs sets the rlimits inside the sandbox, then runs what follows.
// cpu 0 leaves CPU time unlimited. The soft CPU limit comes first:
// SIGXCPU names the cause; the hard one kills a command that ignores it a
// second later.
func (s *Sandbox) prlimitArgs(cpu int64, memory int64, procs int, fsize int64) []string {
	a := []string{s.Prlimit}
	if cpu > 0 {
		a = append(a, "--cpu="+strconv.FormatInt(cpu, 10)+":"+strconv.FormatInt(cpu+1, 10))
	}
	return append(a,
		"--data="+strconv.FormatInt(memory, 10),
		"--nproc="+strconv.Itoa(procs),
		"--fsize="+strconv.FormatInt(fsize, 10),
		"--core=0",
		"--",
	)
}

// etcAllowed are the entries of /etc a build may need and that hold no
// secret: dynamic linking, time zone, alternatives symlinks, CA certificates.
var etcAllowed = []string{
	"alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
	"nsswitch.conf", "ssl", "ca-certificates", "mime.types", "protocols", "services",
}

func sandboxEnv(extra []string) []string {
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=/tmp",
		"TMPDIR=/tmp",
		"LANG=C.UTF-8",
	}
	return append(env, extra...)
}

// limitHit decides which limit, if any, ended the run.
func limitHit(res *Result, lim Limits, wall bool) string {
	errs := string(res.Stderr)
	switch {
	case strings.Contains(errs, "fork") && (strings.Contains(errs, "Resource temporarily unavailable") || strings.Contains(errs, "retry")),
		strings.Contains(errs, "pthread_create failed"), strings.Contains(errs, "Cannot fork"):
		// A fork that failed is the cause even if the command then ran
		// out of time, or went on to exit 0: its output is incomplete.
		return LimitProcesses
	case wall:
		return LimitWall
	case res.Signal == "SIGXCPU", res.Signal == "SIGKILL" && res.Duration >= lim.CPU:
		return LimitCPU
	case res.Signal == "SIGXFSZ":
		return LimitFileSize
	case strings.Contains(errs, "No space left on device"), res.ExitCode == copyFailed:
		return LimitDisk
	case res.ExitCode == 0:
		return ""
	case strings.Contains(strings.ToLower(errs), "cannot allocate memory"), strings.Contains(errs, "out of memory"),
		strings.Contains(errs, "MemoryError"), strings.Contains(errs, "bad_alloc"):
		return LimitMemory
	}
	return ""
}

func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
		syscall.SIGILL: "SIGILL", syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT",
		syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
		syscall.SIGSEGV: "SIGSEGV", syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM",
		syscall.SIGTERM: "SIGTERM", syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ",
		syscall.SIGSYS: "SIGSYS", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
	}
	if n, ok := names[sig]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

// capped keeps the first max bytes written and counts the rest.
type capped struct {
	max     int64
	buf     bytes.Buffer
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - int64(c.buf.Len())
	switch {
	case room <= 0:
		c.dropped += int64(len(p))
	case int64(len(p)) > room:
		c.buf.Write(p[:room])
		c.dropped += int64(len(p)) - room
	default:
		c.buf.Write(p)
	}
	return len(p), nil
}

// memFile returns an unlinked temporary file holding data, positioned at
// its start, for passing to a child as a file descriptor.
func memFile(name string, data []byte) (*os.File, error) {
	f, err := os.CreateTemp("", name+"-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
