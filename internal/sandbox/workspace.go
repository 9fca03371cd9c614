package sandbox

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// handOver gives every entry of the workspace to uid:gid for a run made by
// root, and returns the function that gives everything back to the
// workspace directory's owner afterwards. Symbolic links are changed, never
// followed. A regular file with more than one link is left alone on the way
// back, so a hard link made in the sandbox cannot make root chown a file
// outside the workspace; restore's result names how many were left.
func handOver(ws string, uid, gid int) (restore func() string, err error) {
	fi, err := os.Lstat(ws)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner, group := int(st.Uid), int(st.Gid)
	if err := chownTree(ws, uid, gid, false); err != nil {
		chownTree(ws, owner, group, true)
		return nil, err
	}
	return func() string {
		skipped := 0
		filepath.WalkDir(ws, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.Type().IsRegular() {
				if info, err := d.Info(); err == nil && info.Sys().(*syscall.Stat_t).Nlink > 1 {
					skipped++
					return nil
				}
			}
			os.Lchown(p, owner, group)
			return nil
		})
		if skipped > 0 {
			return fmt.Sprintf("%d hard-linked file(s) in the workspace were left owned by the sandbox user", skipped)
		}
		return ""
	}, nil
}

func chownTree(root string, uid, gid int, bestEffort bool) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if bestEffort {
				return nil
			}
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil && !bestEffort {
			return err
		}
		return nil
	})
}
