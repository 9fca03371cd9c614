package agenttree

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestNothingOutsideTheTreeIsReached: a link planted at the end or in the
// middle of a path never leads MkdirAll, Lstat or ChownAll out of the
// tree, and a file hard-linked from outside is never chowned.
func TestNothingOutsideTheTreeIsReached(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	tree, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(tree, "link"))
	os.Link(victim, filepath.Join(tree, "hard"))
	os.Mkdir(filepath.Join(tree, "d"), 0o755)
	os.WriteFile(filepath.Join(tree, "d", "own"), nil, 0o644)

	tr, err := Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.MkdirAll("link/made", 0o700); err == nil {
		t.Error("MkdirAll went through a link out of the tree")
	}
	if _, err := tr.Lstat("link/victim"); err == nil {
		t.Error("Lstat went through a link out of the tree")
	}
	skipped, err := tr.ChownAll(65534, 65534, false)
	if err != nil || skipped != 1 {
		t.Fatalf("ChownAll: skipped %d, %v; want the hard link skipped", skipped, err)
	}
	for p, want := range map[string]uint32{victim: 0, outside: 0, filepath.Join(tree, "d", "own"): 65534} {
		fi, _ := os.Lstat(p)
		if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
			t.Errorf("%s belongs to %d, want %d", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "made")); err == nil {
		t.Error("a directory was made outside")
	}
	if _, err := Open(filepath.Join(tree, "link")); err == nil {
		t.Error("a tree was opened through a link")
	}
}
