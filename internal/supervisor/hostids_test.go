package supervisor

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// An agent's tree made before agents had uids of their own (owned by
// 65534) is handed whole to the agent's uid at its first start; the
// daemon's files of the instance take the agent's gid.
func TestAnAgentsTreeMovesToItsOwnUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("host uids are for a daemon run by root")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "agents", "a")
	for _, p := range []string{filepath.Join(tree, "work", "src"), filepath.Join(tree, "home", ".local", "share")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(tree, "work", "src", "main.go")
	os.WriteFile(file, []byte("package main"), 0o600)
	outside := filepath.Join(dir, "outside")
	os.WriteFile(outside, nil, 0o600)
	os.Symlink(outside, filepath.Join(tree, "work", "link"))
	filepath.Walk(tree, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })

	sb := sandbox.New()
	ids := &hostIDs{uid: hostid.DefaultBase + 3, gid: hostid.DefaultBase + 3}
	if err := ownDir(sb, ids, tree); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, filepath.Join(tree, "work"), file, filepath.Join(tree, "home", ".local", "share")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ids.uid || int(st.Gid) != ids.gid {
			t.Errorf("%s: %d:%d, want the agent's %d:%d", p, st.Uid, st.Gid, ids.uid, ids.gid)
		}
	}
	if fi, _ := os.Stat(outside); fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Error("a link in the tree led the hand-over outside it")
	}
	cfg := filepath.Join(dir, "instances", "a", "config")
	if err := daemonDir(ids, cfg); err != nil {
		t.Fatal(err)
	}
	if err := daemonFile(ids, filepath.Join(cfg, "opencode.json"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg, filepath.Join(cfg, "opencode.json")} {
		fi, _ := os.Stat(p)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || int(st.Gid) != ids.gid || fi.Mode().Perm()&0o027 != 0 {
			t.Errorf("%s: %d:%d %v, want root and the agent's gid, nothing for others", p, st.Uid, st.Gid, fi.Mode())
		}
	}
}
