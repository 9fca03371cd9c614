package appkit

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Limits bound what a package may hold. Sizes are of the unpacked content,
// counted while unpacking: the sizes an archive declares are not trusted.
type Limits struct {
	MaxFiles   int     // files in the package
	MaxFile    int64   // bytes of one file
	MaxTotal   int64   // bytes of all files
	MaxArchive int64   // bytes of the .taosapp itself
	MaxRatio   float64 // unpacked/packed, for files over 1 MiB and for the whole archive
}

// DefaultLimits suit a web app: 1,000 files, 32 MiB each, 64 MiB in all, a
// 64 MiB archive, and at most 100:1 compression.
func DefaultLimits() Limits {
	return Limits{MaxFiles: 1000, MaxFile: 32 << 20, MaxTotal: 64 << 20, MaxArchive: 64 << 20, MaxRatio: 100}
}

// bundle is a package's files, read into memory after the archive checks.
type bundle struct {
	files map[string][]byte // slash-separated path → content
	names []string          // sorted
	sha   string            // sha256 of the archive; empty for a directory
}

func (b *bundle) add(name string, data []byte) {
	b.files[name] = data
	b.names = append(b.names, name)
}

// allowedTypes are the file extensions a web app may ship.
var allowedTypes = map[string]bool{
	".html": true, ".htm": true, ".css": true, ".js": true, ".mjs": true, ".map": true,
	".json": true, ".webmanifest": true, ".txt": true, ".md": true, ".xml": true, ".csv": true,
	".svg": true, ".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true, ".avif": true, ".ico": true,
	".woff": true, ".woff2": true, ".ttf": true, ".otf": true,
	".mp3": true, ".ogg": true, ".wav": true, ".mp4": true, ".webm": true,
	".wasm": true,
}

// checkName returns the rule and message for a bad path in a package, or "".
func checkName(name string) (rule, msg string) {
	switch {
	case name == "":
		return "archive.bad-name", "empty file name"
	case strings.HasPrefix(name, "/") || len(name) > 1 && name[1] == ':':
		return "archive.absolute-path", "absolute path; paths must be relative to the package root"
	case strings.ContainsRune(name, '\\'):
		return "archive.bad-name", "backslash in a path; use /"
	}
	for _, seg := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if seg == ".." {
			return "archive.path-traversal", "path climbs out of the package root"
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "archive.bad-name", "control character in a path"
		}
	}
	if len(name) > 255 {
		return "archive.bad-name", "path longer than 255 bytes"
	}
	if path.Clean(name) != strings.TrimSuffix(name, "/") {
		return "archive.bad-name", "path is not in clean form (./, //)"
	}
	return "", ""
}

// checkContent flags files whose type a web app may not ship.
func checkContent(name string, data []byte, add func(Finding)) {
	ext := strings.ToLower(path.Ext(name))
	if !allowedTypes[ext] {
		add(Finding{Rule: "archive.file-type", Path: name, Severity: Error,
			Message: fmt.Sprintf("file type %q is not allowed in a web app", ext)})
		return
	}
	for _, m := range []struct{ magic, kind string }{
		{"\x7fELF", "an ELF executable"}, {"MZ", "a Windows executable"}, {"#!", "a script with an interpreter line"},
		{"\xcf\xfa\xed\xfe", "a Mach-O executable"}, {"\xca\xfe\xba\xbe", "a Mach-O or Java binary"},
		{"PK\x03\x04", "a nested archive"},
	} {
		if bytes.HasPrefix(data, []byte(m.magic)) {
			add(Finding{Rule: "archive.executable", Path: name, Severity: Error,
				Message: "content is " + m.kind + ", whatever its name says"})
			return
		}
	}
}

// names tracks duplicate and case-colliding names.
type names struct{ exact, folded map[string]string }

func (n *names) check(name string, add func(Finding)) bool {
	if _, dup := n.exact[name]; dup {
		add(Finding{Rule: "archive.duplicate", Path: name, Severity: Error, Message: "the same path appears twice"})
		return false
	}
	n.exact[name] = name
	low := strings.ToLower(name)
	if other, dup := n.folded[low]; dup {
		add(Finding{Rule: "archive.case-collision", Path: name, Severity: Error,
			Message: fmt.Sprintf("differs from %s only in case; one would overwrite the other on many file systems", other)})
		return false
	}
	n.folded[low] = name
	return true
}

// loadZip checks and unpacks an archive into memory. Every problem is a
// finding; unpacking stops at the first limit exceeded.
func loadZip(data []byte, lim Limits, add func(Finding)) *bundle {
	b := &bundle{files: map[string][]byte{}}
	if int64(len(data)) > lim.MaxArchive {
		add(Finding{Rule: "archive.size", Severity: Error, Message: fmt.Sprintf("archive is %d bytes, over the %d-byte limit", len(data), lim.MaxArchive)})
		return b
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		add(Finding{Rule: "archive.corrupt", Severity: Error, Message: "not a readable zip archive: " + err.Error()})
		return b
	}
	if len(zr.File) > lim.MaxFiles {
		add(Finding{Rule: "archive.file-count", Severity: Error, Message: fmt.Sprintf("%d entries, over the limit of %d", len(zr.File), lim.MaxFiles)})
		return b
	}
	seen := names{map[string]string{}, map[string]string{}}
	var total int64
	for _, f := range zr.File {
		name := f.Name
		if rule, msg := checkName(name); rule != "" {
			add(Finding{Rule: rule, Path: name, Severity: Error, Message: msg})
			continue
		}
		mode := f.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			add(Finding{Rule: "archive.symlink", Path: name, Severity: Error, Message: "symbolic link; a package holds regular files only"})
			continue
		case mode.IsDir() || strings.HasSuffix(name, "/"):
			continue
		case !mode.IsRegular():
			add(Finding{Rule: "archive.special-file", Path: name, Severity: Error, Message: "not a regular file (" + mode.Type().String() + ")"})
			continue
		case f.Flags&0x1 != 0:
			add(Finding{Rule: "archive.encrypted", Path: name, Severity: Error, Message: "encrypted entry; its content cannot be checked"})
			continue
		}
		if !seen.check(name, add) {
			continue
		}
		room := min(lim.MaxFile, lim.MaxTotal-total)
		rc, err := f.Open()
		if err != nil {
			add(Finding{Rule: "archive.corrupt", Path: name, Severity: Error, Message: "cannot unpack: " + err.Error()})
			continue
		}
		content, err := io.ReadAll(io.LimitReader(rc, room+1))
		rc.Close()
		n := int64(len(content))
		switch {
		case n > room && room == lim.MaxFile:
			add(Finding{Rule: "archive.file-size", Path: name, Severity: Error, Message: fmt.Sprintf("unpacks to more than %d bytes", lim.MaxFile)})
			return b
		case n > room:
			add(Finding{Rule: "archive.total-size", Path: name, Severity: Error, Message: fmt.Sprintf("the package unpacks to more than %d bytes", lim.MaxTotal)})
			return b
		case err != nil:
			add(Finding{Rule: "archive.corrupt", Path: name, Severity: Error, Message: "cannot unpack: " + err.Error()})
			continue
		}
		if n > 1<<20 && float64(n) > lim.MaxRatio*float64(max(f.CompressedSize64, 1)) {
			add(Finding{Rule: "archive.compression-ratio", Path: name, Severity: Error,
				Message: fmt.Sprintf("compressed %.0f:1, over the %.0f:1 limit (zip bomb)", float64(n)/float64(max(f.CompressedSize64, 1)), lim.MaxRatio)})
			return b
		}
		total += n
		checkContent(name, content, add)
		b.add(name, content)
	}
	if total > 1<<20 && float64(total) > lim.MaxRatio*float64(len(data)) {
		add(Finding{Rule: "archive.compression-ratio", Severity: Error,
			Message: fmt.Sprintf("the archive unpacks %.0f:1, over the %.0f:1 limit (zip bomb)", float64(total)/float64(len(data)), lim.MaxRatio)})
	}
	sort.Strings(b.names)
	return b
}

// loadDir reads a package directory with the same checks as an archive.
//
// The directory may be written while it is read (an agent's workspace,
// read by the daemon as root): every file is opened through an os.Root of
// dir, so a name swapped for a symbolic link meanwhile can never make it
// read a file outside, and what is read is bounded as it is read.
func loadDir(dir string, lim Limits, add func(Finding)) (*bundle, error) {
	b := &bundle{files: map[string][]byte{}}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	seen := names{map[string]string{}, map[string]string{}}
	var total int64
	count := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		if name == "." {
			return nil
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			add(Finding{Rule: "archive.symlink", Path: name, Severity: Error, Message: "symbolic link; a package holds regular files only"})
			return nil
		case t.IsDir():
			return nil
		case !t.IsRegular():
			add(Finding{Rule: "archive.special-file", Path: name, Severity: Error, Message: "not a regular file (" + t.String() + ")"})
			return nil
		}
		if rule, msg := checkName(name); rule != "" {
			add(Finding{Rule: rule, Path: name, Severity: Error, Message: msg})
			return nil
		}
		if count++; count > lim.MaxFiles {
			add(Finding{Rule: "archive.file-count", Severity: Error, Message: fmt.Sprintf("more than %d files", lim.MaxFiles)})
			return fs.SkipAll
		}
		if !seen.check(name, add) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > lim.MaxFile {
			add(Finding{Rule: "archive.file-size", Path: name, Severity: Error, Message: fmt.Sprintf("%d bytes, over the %d-byte limit", info.Size(), lim.MaxFile)})
			return nil
		}
		if total += info.Size(); total > lim.MaxTotal {
			add(Finding{Rule: "archive.total-size", Path: name, Severity: Error, Message: fmt.Sprintf("the package holds more than %d bytes", lim.MaxTotal)})
			return fs.SkipAll
		}
		data, err := readIn(root, rel, lim.MaxFile)
		if err != nil {
			add(Finding{Rule: "archive.file-changed", Path: name, Severity: Error, Message: "changed while it was read: " + err.Error()})
			return nil
		}
		checkContent(name, data, add)
		b.add(name, data)
		return nil
	})
	sort.Strings(b.names)
	return b, err
}

// Files unpacks a package's files (every archive check applied; a package
// with an archive error yields none). For serving a package that passed
// the gate: its content was checked, this only reads it.
func Files(data []byte) (map[string][]byte, error) {
	var errs []string
	b := loadZip(data, DefaultLimits(), func(f Finding) {
		if f.Severity == Error {
			errs = append(errs, f.Rule+": "+f.Message)
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("the package cannot be read: %s", strings.Join(errs, "; "))
	}
	return b.files, nil
}

// ReadManifest is the manifest of a package, nil when it has no valid one:
// the archive is read with its checks, nothing else is (no validation, no
// DNS).
func ReadManifest(data []byte) *Manifest {
	b := loadZip(data, DefaultLimits(), func(Finding) {})
	if m, ok := b.files[ManifestName]; ok {
		return parseManifest(m, func(Finding) {})
	}
	return nil
}

// readIn reads the regular file name of root, at most max bytes.
func readIn(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("over the %d-byte limit", max)
	}
	return data, err
}
