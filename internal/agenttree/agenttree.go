// Package agenttree is the one way privileged code touches a directory an
// agent can write: its own directory, its workdir, an app's workspace.
//
// Every operation resolves its path inside the tree through an os.Root
// opened on a directory the agent cannot replace (its parent is the
// daemon's, or it is held open), so a symbolic link the agent plants, at
// the end of a path or in the middle, never leads outside the tree; and a
// regular file with more than one link (a hard link to a file elsewhere)
// is never chowned. Nothing here follows a path the agent chose out of its
// tree.
//
// The daemon's own files of an agent (its opencode config, its log, its
// gateway key) do not live in the tree at all (see home.Home.Instance).
package agenttree

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Tree is a directory an agent can write, opened for privileged code.
type Tree struct {
	root *os.Root
}

// Open opens dir, which must be a real directory, not a symbolic link.
func Open(dir string) (*Tree, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("agenttree: %s is not a directory", dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Tree{root: r}, nil
}

// OpenFile opens the directory f holds (an O_PATH descriptor will do),
// whatever its path names now.
func OpenFile(f *os.File) (*Tree, error) {
	r, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return nil, err
	}
	return &Tree{root: r}, nil
}

// Close releases the tree's directory.
func (t *Tree) Close() error { return t.root.Close() }

// MkdirAll makes rel and its parents inside the tree, mode perm.
func (t *Tree) MkdirAll(rel string, perm fs.FileMode) error {
	return t.root.MkdirAll(rel, perm)
}

// AddMode adds the permission bits add to the directory rel (never a
// link: refused).
func (t *Tree) AddMode(rel string, add fs.FileMode) error {
	fi, err := t.root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", rel)
	}
	return t.root.Chmod(rel, fi.Mode().Perm()|add)
}

// Lstat describes rel inside the tree without following a link at its end
// (a link in the middle that leads out of the tree is an error).
func (t *Tree) Lstat(rel string) (fs.FileInfo, error) { return t.root.Lstat(rel) }

// ChownAll gives every entry of the tree, the tree itself included, to
// uid:gid. Symbolic links are changed, never followed; a regular file with
// more than one link is left alone and counted in skipped. With
// bestEffort, errors are skipped too.
func (t *Tree) ChownAll(uid, gid int, bestEffort bool) (skipped int, err error) {
	err = fs.WalkDir(t.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if bestEffort {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if linked(d) {
				skipped++
				return nil
			}
		}
		if err := t.root.Lchown(p, uid, gid); err != nil && !bestEffort {
			return err
		}
		return nil
	})
	return skipped, err
}

func linked(d fs.DirEntry) bool {
	info, err := d.Info()
	if err != nil {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return !ok || st.Nlink > 1
}
