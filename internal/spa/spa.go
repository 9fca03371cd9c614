// Package spa rebuilds a declared single-page web app: its source copied
// into a workspace, built there in the build sandbox (an ephemeral uid, no
// network), its output copied out through os.Root (no link followed, no
// link, device or set-ID bit carried over), and swapped with the served
// directory in one rename (renameat2 RENAME_EXCHANGE), the build it
// replaced kept beside it for a rollback. Each build's digests are
// recorded, so doctor can tell whether the served files are the last build
// and whether the source changed since.
//
// The source may be an agent's workspace: nothing in it is trusted. It is
// read without following a link out of it, and the build runs confined.
package spa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// Limits on what is copied and hashed.
const (
	MaxFiles = 200_000
	MaxBytes = 4 << 30
)

// Built is the record of the build that is served.
type Built struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source_sha256"` // the source's digest (SourceDigest)
	Output string    `json:"output_sha256"` // the served files' digest (Digest)
	Files  int       `json:"files"`
}

// Record is where the served build's record lives, in state.
func Record(state string) string { return filepath.Join(state, "built.json") }

// LastBuilt reads the record of the served build; ok is false when there
// is none.
func LastBuilt(state string) (Built, bool, error) {
	b, err := os.ReadFile(Record(state))
	if errors.Is(err, fs.ErrNotExist) {
		return Built{}, false, nil
	}
	if err != nil {
		return Built{}, false, err
	}
	var r Built
	err = json.Unmarshal(b, &r)
	return r, err == nil, err
}

// skipped are the source's entries that are not part of what a build is
// made from, for its digest: what builds and package managers write.
func skipped(a hostctl.SPA, rel string) bool {
	if rel == a.Output || strings.HasPrefix(rel, a.Output+"/") {
		return true
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "node_modules" || part == ".git" {
			return true
		}
	}
	return false
}

// SourceDigest hashes the app's source, without its output, node_modules
// and .git.
func SourceDigest(a hostctl.SPA) (string, int, error) {
	return Digest(a.Source, func(rel string) bool { return skipped(a, rel) })
}

// Digest hashes the tree at dir: each entry's path, type, executable bit
// and contents (a link's target, never followed). skip leaves entries out.
func Digest(dir string, skip func(rel string) bool) (string, int, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", 0, err
	}
	defer root.Close()
	h := sha256.New()
	size := int64(0)
	n, err := walk(root, skip, func(rel string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			fmt.Fprintf(h, "d %s\x00", rel)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := root.Readlink(rel)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %s\x00%s\x00", rel, target)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if size += fi.Size(); size > MaxBytes {
				return fmt.Errorf("more than %d bytes", MaxBytes)
			}
			f, err := root.Open(rel)
			if err != nil {
				return err
			}
			sum := sha256.New()
			_, err = io.Copy(sum, f)
			f.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "f %s %t\x00%x\x00", rel, fi.Mode()&0o111 != 0, sum.Sum(nil))
		default:
			fmt.Fprintf(h, "o %s\x00", rel)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("%s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// walk visits the tree of root but the entries skip leaves out, and
// counts them; more than MaxFiles is an error.
func walk(root *os.Root, skip func(rel string) bool, visit func(rel string, d fs.DirEntry) error) (int, error) {
	n := 0
	err := fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if n++; n > MaxFiles {
			return fmt.Errorf("more than %d files", MaxFiles)
		}
		return visit(rel, d)
	})
	return n, err
}

// copyTree copies src into dst (an empty directory), through os.Root on
// both sides. With links false a link, a device or a socket in src is an
// error; with links true a link is copied as a link, never followed. Files
// are written 0644 (0755 when executable), directories 0755: no set-ID
// bit is carried over.
func copyTree(src, dst *os.Root, skip func(rel string) bool, links bool) (int, error) {
	size := int64(0)
	return walk(src, skip, func(rel string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			return dst.Mkdir(rel, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			if !links {
				return fmt.Errorf("%s is a link: a build's output may hold none (a web server would follow it)", rel)
			}
			target, err := src.Readlink(rel)
			if err != nil {
				return err
			}
			return dst.Symlink(target, rel)
		case d.Type().IsRegular():
			in, err := src.Open(rel)
			if err != nil {
				return err
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() { // swapped since the walk saw it
				return fmt.Errorf("%s changed while it was copied", rel)
			}
			if size += fi.Size(); size > MaxBytes {
				return fmt.Errorf("more than %d bytes", MaxBytes)
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o100 != 0 {
				mode = 0o755
			}
			out, err := dst.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, io.LimitReader(in, fi.Size())); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		if !links {
			return fmt.Errorf("%s is not a file or a directory", rel)
		}
		return nil // a socket or a fifo of the source: not part of a build
	})
}

// Rebuilder rebuilds web apps.
type Rebuilder struct {
	Sandbox *sandbox.Sandbox
	// State is the app's own directory of taosagent's (HOME/spa/NAME):
	// its build workspaces and the record of the served build.
	State  string
	Limits sandbox.Limits
}

// Rebuild builds a and serves the result; step reports each stage. When
// the served page does not answer 2xx after the swap, the previous build is
// swapped back and the error says so.
func (r *Rebuilder) Rebuild(ctx context.Context, a hostctl.SPA, step func(string)) (Built, error) {
	if err := os.MkdirAll(r.State, 0o700); err != nil {
		return Built{}, err
	}
	work, err := os.MkdirTemp(r.State, "build-")
	if err != nil {
		return Built{}, err
	}
	defer os.RemoveAll(work)

	srcDigest, _, err := SourceDigest(a)
	if err != nil {
		return Built{}, fmt.Errorf("the source: %w", err)
	}
	step("copy the source " + a.Source + " into a build workspace (no link followed)")
	if err := copyInto(a.Source, work, func(rel string) bool { return rel == a.Output || strings.HasPrefix(rel, a.Output+"/") }, true); err != nil {
		return Built{}, fmt.Errorf("copy the source: %w", err)
	}
	step("run " + strings.Join(a.Build, " ") + " in the build sandbox (an ephemeral uid, no network)")
	res, err := r.Sandbox.Run(ctx, sandbox.Spec{Workspace: work, Command: a.Build, Limits: r.Limits})
	if err != nil {
		return Built{}, fmt.Errorf("the build sandbox: %w", err)
	}
	if !res.OK() {
		why := fmt.Sprintf("exit %d", res.ExitCode)
		if res.LimitHit != "" {
			why = "the " + res.LimitHit + " limit"
		}
		return Built{}, fmt.Errorf("the build failed (%s); nothing served changed: %s", why, tail(res.Stderr, res.Stdout))
	}

	parent, base := filepath.Dir(a.Serve), filepath.Base(a.Serve)
	pdir, err := openNoLinks(parent)
	if err != nil {
		return Built{}, fmt.Errorf("the served directory's parent %s: %w", parent, err)
	}
	defer pdir.Close()
	proot, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", pdir.Fd()))
	if err != nil {
		return Built{}, err
	}
	defer proot.Close()
	next, prev := base+".next", base+".previous"
	if err := proot.RemoveAll(next); err != nil {
		return Built{}, err
	}
	if err := proot.Mkdir(next, 0o755); err != nil {
		return Built{}, err
	}
	step(fmt.Sprintf("copy the build's %s into %s (no link, device or set-ID bit)", a.Output, filepath.Join(parent, next)))
	if err := copyInto(filepath.Join(work, a.Output), filepath.Join(parent, next), nil, false); err != nil {
		proot.RemoveAll(next)
		return Built{}, fmt.Errorf("the build's output: %w", err)
	}
	outDigest, files, err := Digest(filepath.Join(parent, next), nil)
	if err != nil {
		return Built{}, err
	}

	pfd := int(pdir.Fd())
	_, statErr := proot.Lstat(base)
	swapped := statErr == nil
	if swapped {
		step("swap " + a.Serve + " with the new build in one rename; the build it replaces stays as " + filepath.Join(parent, prev))
		if err := unix.Renameat2(pfd, next, pfd, base, unix.RENAME_EXCHANGE); err != nil {
			return Built{}, fmt.Errorf("swap: %w", err)
		}
		if err := proot.RemoveAll(prev); err != nil {
			return Built{}, err
		}
		if err := unix.Renameat(pfd, next, pfd, prev); err != nil {
			return Built{}, err
		}
	} else {
		step("serve the new build at " + a.Serve)
		if err := unix.Renameat(pfd, next, pfd, base); err != nil {
			return Built{}, err
		}
	}
	built := Built{Time: time.Now().UTC(), Source: srcDigest, Output: outDigest, Files: files}
	if a.URL != "" {
		step("check that " + a.URL + " answers")
		if err := r.check(ctx, a.URL); err != nil {
			if swapped {
				if rerr := unix.Renameat2(pfd, prev, pfd, base, unix.RENAME_EXCHANGE); rerr != nil {
					return Built{}, fmt.Errorf("%v, and the rollback failed too: %v", err, rerr)
				}
				return Built{}, fmt.Errorf("%v: the previous build is served again (the new one is %s)", err, filepath.Join(parent, prev))
			}
			return Built{}, err
		}
	}
	b, _ := json.MarshalIndent(built, "", "  ")
	if err := atomicfile.Write(Record(r.State), b, 0o600); err != nil {
		return built, err
	}
	step(fmt.Sprintf("served: %d files, sha256 %.12s", files, outDigest))
	return built, nil
}

func (r *Rebuilder) check(ctx context.Context, url string) error {
	code, err := hostctl.Probe(ctx, url, 5*time.Second)
	switch {
	case err != nil:
		return fmt.Errorf("%s does not answer after the swap", url)
	case code/100 != 2:
		return fmt.Errorf("%s answered %d after the swap", url, code)
	}
	return nil
}

// copyInto copies the tree at src into the empty directory dst.
func copyInto(src, dst string, skip func(rel string) bool, links bool) error {
	s, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = copyTree(s, d, skip, links)
	return err
}

// openNoLinks opens dir as a path descriptor, following no link anywhere
// in its path.
func openNoLinks(dir string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir), nil
}

func tail(outs ...[]byte) string {
	for _, b := range outs {
		s := strings.TrimSpace(string(b))
		if s == "" {
			continue
		}
		if len(s) > 600 {
			s = "…" + s[len(s)-600:]
		}
		return s
	}
	return "(no output)"
}
