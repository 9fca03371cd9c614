package agenttree

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// Archive writes dir of root, and everything under it, to tw, as it is:
// directories, regular files, and links (their targets as written, never
// followed); sockets, devices and pipes are left out. Each entry is named
// name, then its path under dir. Everything is read through root, so a
// link an agent planted is stored as a link, never followed.
func Archive(tw *tar.Writer, root *os.Root, dir, name string) error {
	return fs.WalkDir(root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		return addEntry(tw, root, p, path.Join(name, filepath.ToSlash(rel)))
	})
}

// addEntry adds p of root as name, with its mode, owner and time.
func addEntry(tw *tar.Writer, root *os.Root, p, name string) error {
	fi, err := root.Lstat(p)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm() | fi.Mode()&(fs.ModeSticky)), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
	}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		return tw.WriteHeader(h)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
		return tw.WriteHeader(h)
	case !fi.Mode().IsRegular():
		return nil
	}
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// Its size now: a file that grows while it is copied is cut there,
	// one that shrinks is padded (tar needs the size first).
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h.Typeflag, h.Size = tar.TypeReg, st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err != nil {
		return err
	}
	if n < h.Size {
		_, err = tw.Write(make([]byte, h.Size-n))
	}
	return err
}

// EntryName is an archive entry's name as a path relative to where it is
// extracted, or false if it is not one: empty, absolute, or leading out.
func EntryName(hd *tar.Header) (string, bool) {
	name := strings.TrimSuffix(hd.Name, "/")
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") {
		return "", false
	}
	return name, true
}

// Extractor writes an archive's entries inside a root, never following a
// link: a directory, a regular file (its permission bits only: never
// set-id) or a link, each with its recorded owner when run as root. A
// directory's mode and owner are set by Finish, once what is in it is
// written.
type Extractor struct {
	Root *os.Root
	dirs []*tar.Header
}

// Extract writes entry hd, read from r, as name (EntryName) inside the
// root; "." is the root itself.
func (x *Extractor) Extract(r io.Reader, hd *tar.Header, name string) error {
	root := x.Root
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	switch hd.Typeflag {
	case tar.TypeDir:
		x.dirs = append(x.dirs, &tar.Header{Name: name, Mode: hd.Mode, Uid: hd.Uid, Gid: hd.Gid})
		return root.MkdirAll(name, 0o700)
	case tar.TypeSymlink:
		if err := root.Symlink(hd.Linkname, name); err != nil {
			return err
		}
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := root.Chmod(name, fs.FileMode(hd.Mode).Perm()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: not a file, a directory or a link (type %c)", name, hd.Typeflag)
	}
	// The owner as it was (root gives agents' files back to their uids).
	if err := root.Lchown(name, hd.Uid, hd.Gid); err != nil && os.Geteuid() == 0 {
		return err
	}
	return nil
}

// Finish sets the directories' modes and owners, deepest first.
func (x *Extractor) Finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if err := x.Root.Chmod(d.Name, fs.FileMode(d.Mode).Perm()); err != nil {
			return err
		}
		if err := x.Root.Lchown(d.Name, d.Uid, d.Gid); err != nil && os.Geteuid() == 0 {
			return err
		}
	}
	x.dirs = nil
	return nil
}
