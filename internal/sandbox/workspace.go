package sandbox

import (
	"fmt"
	"os"
	"syscall"

	"github.com/taosagent/taosagent/internal/agenttree"
	"golang.org/x/sys/unix"
)

// handOver gives every entry of the workspace dir to uid:gid for a run
// made by root, and returns the function that gives everything back to
// the workspace directory's owner afterwards. Both go through agenttree,
// on the directory held open: symbolic links are changed, never followed,
// nothing outside the workspace is reached, and a regular file with more
// than one link is left alone, so a hard link made in the sandbox cannot
// make root chown a file outside the workspace; restore's result names
// how many were left.
func handOver(dir *os.File, uid, gid int) (restore func() string, err error) {
	fi, err := dir.Stat()
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner, group := int(st.Uid), int(st.Gid)
	t, err := agenttree.OpenFile(dir)
	if err != nil {
		return nil, err
	}
	if _, err := t.ChownAll(uid, gid, false); err != nil {
		t.ChownAll(owner, group, true)
		t.Close()
		return nil, err
	}
	return func() string {
		defer t.Close()
		skipped, _ := t.ChownAll(owner, group, true)
		if skipped > 0 {
			return fmt.Sprintf("%d hard-linked file(s) in the workspace were left owned by the sandbox user", skipped)
		}
		return ""
	}, nil
}

// openNoLinks opens dir, an absolute path with no symbolic link in it
// (resolved before), as an O_PATH descriptor; a link found in it now
// (swapped in since) is an error.
func openNoLinks(dir string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir), nil
}
