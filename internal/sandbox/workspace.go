package sandbox

import (
	"fmt"
	"os"
	"syscall"

	"github.com/taosagent/taosagent/internal/agenttree"
)

// handOver gives every entry of the workspace to uid:gid for a run made by
// root, and returns the function that gives everything back to the
// workspace directory's owner afterwards. Both go through agenttree:
// symbolic links are changed, never followed, nothing outside the
// workspace is reached, and a regular file with more than one link is left
// alone, so a hard link made in the sandbox cannot make root chown a file
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
		t, err := agenttree.Open(ws)
		if err != nil {
			return ""
		}
		defer t.Close()
		skipped, _ := t.ChownAll(owner, group, true)
		if skipped > 0 {
			return fmt.Sprintf("%d hard-linked file(s) in the workspace were left owned by the sandbox user", skipped)
		}
		return ""
	}, nil
}

func chownTree(root string, uid, gid int, bestEffort bool) error {
	t, err := agenttree.Open(root)
	if err != nil {
		return err
	}
	defer t.Close()
	_, err = t.ChownAll(uid, gid, bestEffort)
	return err
}
