package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/agenttree"
)

// Service describes a long-lived confined process: an agent's opencode.
//
// It sees what a build sees (a read-only /usr, a short allowlist of /etc,
// its own /proc, a minimal /dev, a private /tmp of Limits.Tmp bytes), plus
// its program read-only and its own directory read-write, each at its host
// path. It runs as an unprivileged uid in a user namespace, with its own
// pid, ipc, uts and cgroup namespaces, no capabilities, rlimits and the
// service seccomp filter, in a session of its own, and dies with its
// parent. It shares the host's network only if Network is set.
//
// The commands it runs for tools run in a second sandbox, nested in the
// first: SHELL names ToolShell, a script that starts every command in a
// fresh sandbox with no network at all, a new pid namespace (it cannot see
// or signal the service), an environment of PATH, HOME, TMPDIR and LANG
// only, the full seccomp filter (Denied), no further user namespaces, and
// only Workdir and /tmp writable. So nothing a tool runs can read the
// service's environment or memory, or reach any port, the service's own
// API included.
type Service struct {
	// Command is the program and its arguments. Command[0] is a host path,
	// mounted read-only at the same path.
	Command []string
	// Dir is the service's own host directory, mounted read-write at the
	// same path.
	Dir string
	// Workdir is the working directory: inside Dir, or the Dst of one of
	// Binds. Tools see it, and nothing else of Dir.
	Workdir string
	// Binds are host directories the service and its tools see at other
	// paths, read-only or read-write (see Bind). They are mounted after
	// Dir and ReadOnly.
	Binds []Bind
	// ToolHome, inside Dir, is its tools' HOME, kept between runs: what
	// they install with npm -g, pip --user or go install stays, and is on
	// their PATH. "": their HOME is Workdir.
	ToolHome string
	// ToolProxy is a host directory (the daemon's, not the agent's) that
	// holds ProxySocket, the agent's egress proxy, and Relay the host path
	// of taosagent's binary: with both, each tool runs behind a relay
	// (RunRelay) that is its one way out, named by its HTTPS_PROXY. The
	// proxy judges each request by the agent's egress policy.
	ToolProxy, Relay string
	// ReadOnly lists host paths mounted read-only at the same path after
	// Dir: the service's configuration, which it must not rewrite. When
	// the caller is root they must be readable by UID:GID.
	ReadOnly []string
	// Masks lists paths inside Dir that the service must see read-only
	// and empty, whatever the agent put there: a file (or a link) is
	// covered by Empty, a directory by an empty read-only directory. A
	// path that does not exist at the start is left alone (the service
	// must read what it masks only when it starts), so nothing is made in
	// Dir.
	Masks []string
	// Empty is a zero-length regular file outside Dir, readable by
	// UID:GID (required with Masks).
	Empty string
	// Cwd is the service's working directory (default Workdir). A
	// directory in ReadOnly keeps files the service would read from its
	// working directory (a runtime's .env, say) out of the agent's reach.
	Cwd string
	// Env is the service's whole environment, KEY=VALUE; SHELL is set to
	// ToolShell.
	Env []string
	// Network shares the network namespace of the thread that starts the
	// command: the host's (the service then reaches whatever the host
	// reaches, loopback included), or one the caller made for it (netns).
	// Unset, it has a loopback of its own only. Its tools never have more.
	Network bool
	// UID and GID are the host ids the service runs as when the caller is
	// root (0: the Sandbox's). Its Dir must belong to them (OwnDir).
	UID, GID int
	Limits   ServiceLimits
	// Detached lets the service outlive the process that started it: no
	// parent-death signal and no --die-with-parent, so that a daemon that
	// restarts (or is killed) finds it still running and adopts it. The
	// caller then answers for stopping it (its process group).
	Detached bool
}

// systemCAs is Debian's bundle of the certificate authorities the host
// trusts (/etc/ssl is in every sandbox).
const systemCAs = "/etc/ssl/certs/ca-certificates.crt"

// ToolShell is where a service finds the tool shell (its SHELL).
const ToolShell = "/run/taosagent/toolshell"

// ServiceLimits bound a service and everything it runs. A zero field takes
// its value from DefaultServiceLimits.
type ServiceLimits struct {
	Memory    int64 // data memory per process, in bytes (RLIMIT_DATA)
	Processes int   // processes and threads of the sandbox's uid (RLIMIT_NPROC)
	FileSize  int64 // largest file written, in bytes (RLIMIT_FSIZE)
	Tmp       int64 // size of the private /tmp, in bytes
}

// DefaultServiceLimits suit an opencode instance: 8 GiB of data memory
// per process, 2048 processes and threads, 1 GiB per file, 256 MiB of /tmp.
func DefaultServiceLimits() ServiceLimits {
	return ServiceLimits{Memory: 8 << 30, Processes: 2048, FileSize: 1 << 30, Tmp: 256 << 20}
}

// WithDefaults fills the zero fields of l from DefaultServiceLimits.
func (l ServiceLimits) WithDefaults() ServiceLimits {
	d := DefaultServiceLimits()
	if l.Memory <= 0 {
		l.Memory = d.Memory
	}
	if l.Processes <= 0 {
		l.Processes = d.Processes
	}
	if l.FileSize <= 0 {
		l.FileSize = d.FileSize
	}
	if l.Tmp <= 0 {
		l.Tmp = d.Tmp
	}
	return l
}

// etcService adds to a build's /etc what a networked service needs to
// resolve names.
var etcService = append(slices.Clone(etcAllowed), "resolv.conf", "hosts", "host.conf", "gai.conf")

// Command returns svc's command, not started: bubblewrap building the
// sandbox around svc.Command. The caller sets Stdout and Stderr, starts
// it, and then calls CloseFiles. It refuses with ErrUnavailable, naming
// the fix, when the sandbox cannot be built on this host; nothing runs
// unconfined.
//
// The command leads a process group of its own and, unless svc.Detached,
// gets SIGKILL when the thread that started it ends. When the caller is root, svc.Dir must
// belong to UID:GID (see OwnDir).
func (s *Sandbox) Command(ctx context.Context, svc Service) (*exec.Cmd, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	if len(svc.Command) == 0 || !filepath.IsAbs(svc.Command[0]) {
		return nil, errors.New("sandbox service: the command must be an absolute host path")
	}
	if !filepath.IsAbs(svc.Dir) || !filepath.IsAbs(svc.Workdir) || (!under(filepath.Clean(svc.Workdir), filepath.Clean(svc.Dir)) && bindAt(svc.Binds, svc.Workdir) == nil) {
		return nil, errors.New("sandbox service: dir and workdir must be absolute, the workdir inside the dir or one of its binds")
	}
	if svc.ToolHome != "" && (!filepath.IsAbs(svc.ToolHome) || !under(filepath.Clean(svc.ToolHome), filepath.Clean(svc.Dir))) {
		return nil, errors.New("sandbox service: the tools' home must be inside the dir")
	}
	lim := svc.Limits.WithDefaults()
	svcFilter, err := seccompProgram(serviceAllowed...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	toolFilter, err := seccompProgram()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, data := range [][]byte{svcFilter, []byte(s.toolShell(svc)), toolFilter} {
		f, err := memFile("taosagent-service", data)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		files = append(files, f) // fds 3, 4, 5
	}

	a := namespaceArgs(svc.Network, true)
	if svc.Detached && os.Geteuid() != 0 {
		// No outer layer: this bwrap is the one started, whose parent is
		// the caller. (Under an outer layer it dies with that layer.)
		a = slices.DeleteFunc(a, func(s string) bool { return s == "--die-with-parent" })
	}
	fsArgs, host := baseFS(etcService, lim.Tmp)
	a = append(a, fsArgs...)
	a = append(a, "--bind", svc.Dir, svc.Dir)
	host = append(host, hostPath{path: svc.Dir, rw: true})
	for _, p := range svc.ReadOnly {
		a = append(a, "--ro-bind", p, p)
		if !under(p, svc.Dir) {
			host = append(host, hostPath{path: p})
		}
	}
	uid, gid := s.UID, s.GID
	if svc.UID > 0 {
		uid, gid = svc.UID, svc.GID
	}
	bindArgs, bindHost, staged, err := s.binds(svc.Binds, uid, gid)
	if err != nil {
		closeAll()
		return nil, err
	}
	a = append(a, bindArgs...)
	host = append(host, bindHost...)
	masks, err := maskArgs(svc.Dir, svc.Binds, svc.Masks, svc.Empty)
	if err != nil {
		closeAll()
		release(staged)
		return nil, err
	}
	if len(masks) > 0 {
		a = append(a, masks...)
		host = append(host, hostPath{path: svc.Empty})
	}
	cwd := svc.Cwd
	if cwd == "" {
		cwd = svc.Workdir
	}
	if !under(svc.Command[0], svc.Dir) {
		a = append(a, "--ro-bind", svc.Command[0], svc.Command[0])
		host = append(host, hostPath{path: svc.Command[0]})
	}
	a = append(a, "--dir", filepath.Dir(ToolShell))
	if svc.ToolProxy != "" && svc.Relay != "" {
		a = append(a, "--ro-bind", svc.Relay, relayBin, "--ro-bind", svc.ToolProxy, relayDir)
		host = append(host, hostPath{path: svc.Relay}, hostPath{path: svc.ToolProxy})
	}
	a = append(a,
		"--perms", "0555", "--ro-bind-data", "4", ToolShell,
		"--perms", "0444", "--ro-bind-data", "5", filepath.Dir(ToolShell)+"/tools.bpf",
		"--remount-ro", "/",
		"--chdir", cwd,
		"--seccomp", "3",
		"--",
	)
	a = append(a, s.prlimitArgs(0, lim.Memory, lim.Processes, lim.FileSize)...)
	a = append(a, svc.Command...)

	built := 0
	if len(staged) > 0 {
		// The staged mounts go once the outer layer has bound them: it
		// says so on a pipe (or the pipe ends with it).
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			release(staged)
			return nil, err
		}
		files = append(files, w)
		built = 2 + len(files)
		go func() {
			r.Read(make([]byte, 1))
			r.Close()
			release(staged)
		}()
	}
	cmd := s.launchCopy(uid, gid, host, a, nil, svc.Detached, built)
	env := slices.DeleteFunc(slices.Clone(svc.Env), func(kv string) bool { return strings.HasPrefix(kv, "SHELL=") })
	cmd.Env = append(env, "SHELL="+ToolShell)
	cmd.Dir = "/"
	cmd.ExtraFiles = files
	return cmd, nil
}

// bindAt is the bind of bs whose Dst is path, or nil.
func bindAt(bs []Bind, path string) *Bind {
	for i := range bs {
		if bs[i].Dst == filepath.Clean(path) {
			return &bs[i]
		}
	}
	return nil
}

// maskArgs covers each of masks, paths inside dir or inside a bind of bs,
// with an empty read-only file or directory, by what the path is now
// (looked at through agenttree: a planted link is not followed).
func maskArgs(dir string, bs []Bind, masks []string, empty string) ([]string, error) {
	if len(masks) == 0 {
		return nil, nil
	}
	if fi, err := os.Lstat(empty); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 || under(empty, dir) {
		return nil, errors.New("sandbox service: masks need an empty regular file outside the service's directory")
	}
	trees := map[string]*agenttree.Tree{} // by host directory
	defer func() {
		for _, t := range trees {
			t.Close()
		}
	}()
	var a []string
	for _, m := range masks {
		// The directory m is in, as the service sees it and on the host.
		root, hostRoot := "", ""
		if under(m, dir) {
			root, hostRoot = dir, dir
		}
		for _, b := range bs {
			if under(m, b.Dst) && len(b.Dst) > len(root) {
				root, hostRoot = b.Dst, b.Src
			}
		}
		rel, err := filepath.Rel(root, m)
		if root == "" || err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("sandbox service: mask %s is not inside %s or a bind", m, dir)
		}
		t := trees[hostRoot]
		if t == nil {
			if t, err = agenttree.Open(hostRoot); err != nil {
				return nil, err
			}
			trees[hostRoot] = t
		}
		fi, err := t.Lstat(rel)
		switch {
		case err == nil && !fi.IsDir():
			a = append(a, "--ro-bind", empty, m)
		case err == nil:
			a = append(a, "--perms", "0555", "--tmpfs", m, "--remount-ro", m)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("sandbox service: mask %s: %w", m, err)
		}
	}
	return a, nil
}

// CloseFiles closes the parent's copies of the files a started command
// inherited.
func CloseFiles(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
}

// toolShell is the script a service runs as its shell: `SHELL -c CMD`
// runs CMD with bash in a nested sandbox (see Service). The tools see the
// service's binds as the service does.
func (s *Sandbox) toolShell(svc Service) string {
	workdir := svc.Workdir
	a := namespaceArgs(false, false)
	fsArgs, _ := baseFS(etcAllowed, 0)
	a = append(a, fsArgs...)
	a = append(a, "--bind", "/tmp", "/tmp")
	if bindAt(svc.Binds, workdir) == nil {
		a = append(a, "--bind", workdir, workdir)
	}
	for _, b := range svc.Binds {
		op := "--ro-bind"
		if b.RW {
			op = "--bind"
		}
		a = append(a, op, b.Dst, b.Dst)
	}
	home, path := workdir, "/usr/local/bin:/usr/bin:/bin"
	var env []string
	if th := svc.ToolHome; th != "" {
		home = th
		path = th + "/.local/bin:" + th + "/.npm-global/bin:" + th + "/go/bin:" + path
		a = append(a, "--bind", th, th)
		// npm's check of its own version would be one more request out,
		// and a notice in every install's output.
		env = append(env, "NPM_CONFIG_PREFIX", th+"/.npm-global", "GOPATH", th+"/go", "NPM_CONFIG_UPDATE_NOTIFIER", "false")
	}
	if _, err := os.Stat(systemCAs); err == nil {
		// node trusts its own list, not the system's, unless told.
		env = append(env, "NODE_EXTRA_CA_CERTS", systemCAs)
	}
	relay := svc.ToolProxy != "" && svc.Relay != ""
	if relay {
		a = append(a, "--ro-bind", relayBin, relayBin, "--ro-bind", relayDir, relayDir)
		for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
			env = append(env, k, relayProxy)
		}
		env = append(env, "NO_PROXY", "127.0.0.1,localhost", "no_proxy", "127.0.0.1,localhost")
	}
	a = append(a,
		"--remount-ro", "/",
		"--chdir", workdir,
		"--clearenv",
		"--setenv", "PATH", path,
		"--setenv", "HOME", home,
		"--setenv", "TMPDIR", "/tmp",
		"--setenv", "LANG", "C.UTF-8",
	)
	for i := 0; i < len(env); i += 2 {
		a = append(a, "--setenv", env[i], env[i+1])
	}
	a = append(a, "--seccomp", "9", "--")
	if relay {
		a = append(a, relayBin, RelayArg, relayAddr, relayDir+"/"+ProxySocket)
	}
	a = append(a, "/bin/bash")
	var b strings.Builder
	// env -i: bwrap itself must not hold the service's environment either,
	// as the tool could read it from /proc/1/environ.
	b.WriteString("#!/bin/sh\n# taosagent's tool shell: every command runs in a sandbox of its own.\nexec 9<" +
		shellQuote(filepath.Dir(ToolShell)+"/tools.bpf") + "\nexec /usr/bin/env -i /usr/bin/bwrap")
	for _, arg := range a {
		b.WriteString(" " + shellQuote(arg))
	}
	b.WriteString(" \"$@\"\n")
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// serviceAllowed are the calls of Denied a service may make: what the
// nested bwrap of its tool shell needs to build the tools' sandbox. The
// tools themselves get the full filter.
var serviceAllowed = []string{"mount", "umount2", "pivot_root", "unshare", "chroot"}

// OwnDir gives dir and everything under it to uid:gid, as a service
// started by root runs as them and writes there. Symbolic links are
// changed, never followed. For other callers it does nothing.
func (s *Sandbox) OwnDir(dir string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	t, err := agenttree.Open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	_, err = t.ChownAll(uid, gid, false)
	return err
}
