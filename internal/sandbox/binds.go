package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/taosagent/taosagent/internal/randid"
)

// Bind is a host directory a service sees at another path: a workspace a
// person gave an agent.
//
// When the caller is root the service sees it through an idmapped mount
// (Linux 5.12 or later, on a file system that supports them: ext4, xfs,
// btrfs; tmpfs since 6.3): the directory's owner and group appear as the
// service's own uid and gid, and what the service creates there is
// written to disk as the directory's owner and group. So the service
// works in a person's project as that person, under its own uid, and no
// file's owner or mode is changed to let it in. Other owners' files keep
// what their modes allow to "others". The mount is nosuid and nodev, and
// the seccomp filters refuse to set a set-user-ID or set-group-ID bit
// anywhere (setidGuard): otherwise an agent could leave a program there
// that runs as the directory's owner (root, for a root-owned project)
// for whoever starts it on the host.
//
// Debian 12's bubblewrap has no id-mapping option, so the daemon makes
// the mount itself (open_tree, mount_setattr, move_mount) in a private
// staging directory, the outer layer binds it, and the daemon unmounts
// the staged copy as soon as the sandbox is built (the sandbox keeps its
// own).
//
// When the caller is not root the directory is bound as it is.
type Bind struct {
	Src string // host directory, absolute
	Dst string // where the service sees it, absolute
	RW  bool   // writable; otherwise read-only
}

// DefaultStageDir is Sandbox.StageDir's default.
const DefaultStageDir = "/run/taosagent/binds"

func (s *Sandbox) stageDir() string {
	if s.StageDir == "" {
		return DefaultStageDir
	}
	return s.StageDir
}

// binds returns the sandbox arguments and host paths of bs for a service
// running as uid:gid (root's case: each staged as an idmapped mount), and
// the staged mounts to release once the sandbox is built.
func (s *Sandbox) binds(bs []Bind, uid, gid int) (args []string, host []hostPath, staged []string, err error) {
	for _, b := range bs {
		if !filepath.IsAbs(b.Src) || !filepath.IsAbs(b.Dst) || filepath.Clean(b.Dst) != b.Dst || b.Dst == "/" {
			release(staged)
			return nil, nil, nil, fmt.Errorf("sandbox: bind %s at %s: both paths must be absolute and clean", b.Src, b.Dst)
		}
		op := "--ro-bind"
		if b.RW {
			op = "--bind"
		}
		src := b.Src
		if os.Geteuid() == 0 {
			p, err := stage(s.stageDir(), b.Src, uid, gid, b.RW)
			if err != nil {
				release(staged)
				return nil, nil, nil, fmt.Errorf("sandbox: bind %s: %w", b.Src, err)
			}
			staged = append(staged, p)
			host = append(host, hostPath{path: b.Dst, src: p, rw: b.RW})
			src = b.Dst // the outer layer has it there
		}
		args = append(args, op, src, b.Dst)
	}
	return args, host, staged, nil
}

// stage makes an idmapped mount of dir (opened following no link
// anywhere in its path) in which dir's owner and group are uid and gid,
// nosuid, nodev, read-only unless rw, and attaches it under the staging
// directory at.
//
// No link anywhere: a workspace inside another that an agent writes (as
// its owner, root for root's project) could otherwise be made to lead
// elsewhere, /etc say, by a link the agent put in its path.
func stage(at, dir string, uid, gid int, rw bool) (string, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return "", fmt.Errorf("open (no link may lead there): %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	ns, err := userns(int(st.Uid), uid, int(st.Gid), gid)
	if err != nil {
		return "", err
	}
	defer unix.Close(ns)
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return "", fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(ns)}
	if !rw {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return "", fmt.Errorf("an idmapped mount of %s is not possible here (%w): it needs Linux 5.12 or later and a file system that supports it (ext4, xfs, btrfs; tmpfs from 6.3)", dir, err)
	}
	if err := privateDir(at); err != nil {
		return "", err
	}
	p := filepath.Join(at, randid.Hex(8))
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("move_mount: %w", err)
	}
	return p, nil
}

// privateDir makes dir, mode 0700, a private mount of its own, so that
// nothing mounted there propagates to (or from) any other mount
// namespace.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if !isMountPoint(dir) {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	return unix.Mount("", dir, "", unix.MS_PRIVATE, "")
}

func isMountPoint(p string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// userns returns a user namespace (a descriptor) in which inUID and inGID
// are outUID and outGID on the host, as an idmapped mount takes it: a
// file of inUID is seen as outUID's, and outUID writes files of inUID.
// The namespace is made by a short-lived child that holds it open.
func userns(inUID, outUID, inGID, outGID int) (int, error) {
	cmd := exec.Command("/bin/cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: inUID, HostID: outUID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: inGID, HostID: outGID, Size: 1}},
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("a user namespace for the mount: %w", err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("a user namespace for the mount: %w", err)
	}
	return fd, nil
}

// release unmounts and removes staged mounts.
func release(staged []string) error {
	var errs []error
	for _, p := range staged {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SweepBinds releases every staged mount left in s.StageDir by a daemon
// that ended while a sandbox was being built, and the staging directory's
// own mount. The sandboxes built keep their own mounts. Root only;
// elsewhere it does nothing.
func (s *Sandbox) SweepBinds() error {
	if os.Geteuid() != 0 {
		return nil
	}
	dir := s.stageDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var staged []string
	for _, e := range ents {
		staged = append(staged, filepath.Join(dir, e.Name()))
	}
	err = release(staged)
	if isMountPoint(dir) {
		err = errors.Join(err, unix.Unmount(dir, unix.MNT_DETACH))
	}
	return err
}
