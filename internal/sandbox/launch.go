package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// launchCopy is the one way a sandbox starts, for builds and services
// alike: bwrap with the inner arguments (namespaces, mounts, seccomp,
// command), run as the caller, or, when the caller is root, as an
// unprivileged uid:gid behind a privileged outer layer.
//
// The outer layer exists because an unprivileged bwrap must reach every
// path it mounts by its own rights: a workspace under /root, or an agent's
// directory under a mode-0700 home, would be out of its reach. So root's
// bwrap first builds a private mount namespace that holds just what the
// inner one needs (/usr, /etc, and the given host paths, each at its own
// path), then drops to UID:GID with setpriv, and the inner bwrap builds the
// sandbox from that view. Nothing of the outer view reaches the sandboxed
// command but what the inner arguments mount.
// copyDir is the outer layer's tmpfs that holds the bounded copy of a
// run's workspace (in copyDir/w, which the inner layer mounts at
// /workspace).
const copyDir = "/.taosagent-workspace"

// copyFailed is the exit status of a run whose workspace did not fit its
// disk limit on the way in, or could not be written back.
const copyFailed = 125

// copyBack is a run's workspace, worked on as a copy of at most size bytes.
type copyBack struct {
	ws   string
	size int64
}

// copyScript runs the inner layer ("$@") on a copy of the workspace $1 in
// the tmpfs at copyDir, then writes the copy back: changed and new files
// over the workspace, and what the run removed removed (found with shell
// builtins: every exec costs milliseconds). It runs in the outer layer as
// the sandbox's user; the command never sees the workspace itself, so what
// it can write to the host's disk is bounded by the tmpfs.
const copyScript = `exec 4<&-; ws=$1; shift; w=` + copyDir + `/w
cp -a "$ws" "$w" || { echo "taosagent: the workspace does not fit the run's disk limit" >&2; exit 125; }
"$@"; rc=$?
cp -a "$w"/. "$ws"/ || { echo "taosagent: the workspace could not be written back" >&2; exit 125; }
prune() {
	local f
	for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		if [ ! -e "$w/${f#"$ws"/}" ] && [ ! -L "$w/${f#"$ws"/}" ]; then rm -rf -- "$f"
		elif [ -d "$f" ] && [ ! -L "$f" ]; then prune "$f"; fi
	done
}
prune "$ws"
exit $rc`

// launchCopy is launch as uid:gid; with wc (root only), the run works on a
// bounded copy of its workspace (copyScript). Detached, the sandbox does
// not die with its parent (Service.Detached).
//
// With built > 0 (root only), the outer layer writes a byte to that
// descriptor once its mounts are made, and closes it, before it drops
// its privileges.
func (s *Sandbox) launchCopy(uid, gid int, host []hostPath, inner []string, wc *copyBack, detached bool, built int) *exec.Cmd {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if detached {
		attr.Pdeathsig = 0
	}
	if os.Geteuid() != 0 {
		cmd := exec.Command(s.Bwrap, inner...)
		cmd.SysProcAttr = attr
		return cmd
	}
	outer := []string{
		// A pid namespace of its own: when the outer bwrap dies, the
		// kernel kills everything in it. The parent-death signal alone
		// does not reach that far: the inner bwrap clears its own.
		"--unshare-pid",
	}
	if !detached {
		outer = append(outer, "--die-with-parent")
	}
	outer = append(outer,
		"--cap-add", "CAP_SETUID,CAP_SETGID",
		"--ro-bind", "/usr", "/usr",
		"--symlink", "usr/bin", "/bin",
		"--symlink", "usr/sbin", "/sbin",
		"--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64",
		"--ro-bind", "/etc", "/etc",
		// The host's /proc, not a new one: the kernel lets the inner,
		// unprivileged bwrap mount a proc of its own only where a fully
		// visible one is already mounted, and bwrap's fresh proc has
		// parts covered.
		"--bind", "/proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
	)
	made := map[string]bool{"/": true, "/tmp": true}
	for _, p := range host {
		if under(p.path, "/usr") || under(p.path, "/etc") || under(p.path, "/proc") {
			continue // mounted above with the host's own modes
		}
		// bwrap would make the parents mode 0700, owned by root: out of
		// the inner layer's reach.
		var parents []string
		for d := filepath.Dir(p.path); !made[d]; d = filepath.Dir(d) {
			parents = append(parents, d)
			made[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			outer = append(outer, "--perms", "0755", "--dir", parents[i])
		}
		op, src := "--ro-bind", p.path
		if p.src != "" {
			src = p.src
		}
		if p.rw {
			op = "--bind"
		}
		if p.fd != 0 {
			op, src = op+"-fd", strconv.Itoa(p.fd)
		}
		outer = append(outer, op, src, p.path)
	}
	if wc != nil {
		outer = append(outer, "--perms", "0777", "--size", strconv.FormatInt(wc.size, 10), "--tmpfs", copyDir)
	}
	outer = append(outer, "--chdir", "/", "--")
	if built > 0 {
		n := strconv.Itoa(built)
		outer = append(outer, "/bin/sh", "-c", "echo >&"+n+"; exec "+n+">&-; exec \"$@\"", "sh")
	}
	outer = append(outer,
		// --pdeathsig: the kernel clears the parent-death signal bwrap set
		// when setpriv changes the uid; set it again, so the inner layer
		// dies with the outer one.
		s.Setpriv, "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "--pdeathsig", "SIGKILL", "--")
	if wc != nil {
		outer = append(outer, "/bin/sh", "-c", copyScript, "sh", wc.ws)
	}
	outer = append(outer, s.Bwrap)
	cmd := exec.Command(s.Bwrap, append(outer, inner...)...)
	cmd.SysProcAttr = attr
	return cmd
}

// hostPath is a host path the inner sandbox mounts, and whether it is
// mounted writable.
type hostPath struct {
	path string
	// src, when set, is what the outer layer binds at path instead of
	// path itself (a staged Bind).
	src string
	rw  bool
	// fd, when not 0, is the directory itself, opened without following
	// a link (wsFD): the outer layer binds that directory, whatever the
	// path names by the time bwrap looks.
	fd int
}

// wsFD is the descriptor a run made by root passes its workspace on (the
// seccomp filter is 3). The copy script closes it before the command.
const wsFD = 4

// namespaceArgs are the namespaces and privileges every sandbox has: a user
// namespace with uid and gid 1000 (mapped to the caller, or to UID:GID for
// root), its own pid, ipc, uts and cgroup namespaces, no capabilities, its
// own session, and death with its parent. Builds and tools also get no
// network and no further user namespaces; a service decides.
func namespaceArgs(network, nestedUserns bool) []string {
	a := []string{
		"--unshare-user", "--uid", "1000", "--gid", "1000",
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--new-session",
		"--cap-drop", "ALL",
		"--hostname", "sandbox",
	}
	if !network {
		a = append(a, "--unshare-net")
	}
	if !nestedUserns {
		a = append(a, "--disable-userns")
	}
	return a
}

// baseFS is the file system every sandbox starts from: a read-only /usr
// with the usual symlinks, the allowed files of /etc, its own /proc, a
// minimal /dev and a fresh /tmp of tmpSize bytes (0: the tmpfs default).
// An allowed /etc entry that is a symbolic link out of /etc and /usr (a
// resolv.conf managed under /run, say) is mounted from its target, which
// is returned among the host paths the outer layer must hold.
func baseFS(etc []string, tmpSize int64) (args []string, host []hostPath) {
	a := []string{
		"--ro-bind", "/usr", "/usr",
		"--symlink", "usr/bin", "/bin",
		"--symlink", "usr/sbin", "/sbin",
		"--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64",
		"--proc", "/proc",
		"--dev", "/dev",
	}
	if tmpSize > 0 {
		a = append(a, "--size", strconv.FormatInt(tmpSize, 10))
	}
	a = append(a, "--tmpfs", "/tmp", "--dir", "/etc")
	for _, e := range etc {
		p := "/etc/" + e
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		src := p
		if !under(real, "/etc") && !under(real, "/usr") {
			src = real
			host = append(host, hostPath{path: real})
		}
		a = append(a, "--ro-bind", src, p)
	}
	return a, host
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
