package opencode

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// Pin is a release of opencode that taosagent trusts, as recorded in this
// source: the npm package that carries its binary for a platform, the
// integrity of that package's tarball as npm publishes it (sha512,
// base64, npm's "integrity" field), and the sha256 of the binary inside.
// A binary is the pinned one only if its bytes are these: the same
// --version output is not enough.
type Pin struct {
	Version   string
	Package   string
	Integrity string
	SHA256    string
}

// pins are the releases recorded in the source. The npm registry served
// no linux-arm64 package of 1.18.33 when it was pinned.
var pins = []Pin{{
	Version:   "1.18.33",
	Package:   "opencode-linux-x64",
	Integrity: "sha512-q/t/3p2CTxOT9y2kvjesb/LZab2+1eqlhhWA02Be6mjTtmYtNBcBsrI5yDo4Fw7ZSPBW2oyMIGMNRqiKQjiAWw==",
	SHA256:    "0abbb7c32ab0294c0a7bfa2705f9ff0df5dce5ab721d1f00cccfe393f2a11427",
}}

// PinOf returns the pin of version for this platform, if the source has one.
func PinOf(version string) (Pin, bool) {
	pkg, err := npmPackage()
	if err != nil {
		return Pin{}, false
	}
	for _, p := range pins {
		if p.Version == version && p.Package == pkg {
			return p, true
		}
	}
	return Pin{}, false
}

// Record is what an install knows of the binary it put in place, kept
// beside it (install.json): where its bytes came from and their hash.
type Record struct {
	Version   string `json:"version"`
	Package   string `json:"package"`
	Integrity string `json:"integrity"` // of the npm tarball, as checked
	SHA256    string `json:"sha256"`    // of the binary
	Pinned    bool   `json:"pinned"`    // the integrity is the source's own pin
}

// recordFile is the install record of the binary bin (installed by
// InstallVersion at dir/VERSION/node_modules/PKG/bin/opencode).
func recordFile(bin string) string {
	return filepath.Join(filepath.Dir(bin), "..", "..", "..", "install.json")
}

// BinaryPath is where Install puts the pinned binary under installDir.
func BinaryPath(installDir string) (string, error) {
	return VersionPath(installDir, Version)
}

// VersionPath is where InstallVersion puts version's binary under installDir.
func VersionPath(installDir, version string) (string, error) {
	pkg, err := npmPackage()
	if err != nil {
		return "", err
	}
	return filepath.Join(installDir, version, "node_modules", pkg, "bin", "opencode"), nil
}

// Install makes sure the pinned opencode is installed under installDir and
// returns the binary's path (InstallVersion of Version).
func Install(ctx context.Context, installDir string, out io.Writer) (string, error) {
	return InstallVersion(ctx, installDir, Version, out)
}

// maxBinary bounds the binary extracted from a package (1.18.33's is 177 MiB).
const maxBinary = 1 << 30

// InstallVersion makes sure opencode version is installed under
// installDir and returns the binary's path. It is idempotent: a verified
// install is left alone, a broken one is replaced.
//
// The package's tarball is fetched with `npm pack` from the registry npm is
// configured for (no install scripts run), and its integrity is checked
// before anything is unpacked: against the source's pin when there is one
// (a registry or mirror that serves other bytes is refused), else against
// what the registry publishes for it (an operator's explicit choice of
// another version). Only the binary is unpacked, hashed on the way, and the
// install is recorded beside it. The tree is staged beside the final one
// and renamed into place: an interrupted install leaves nothing half-written.
func InstallVersion(ctx context.Context, installDir, version string, out io.Writer) (string, error) {
	bin, err := VersionPath(installDir, version)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		if err := VerifyVersion(ctx, bin, version); err == nil {
			return bin, nil
		}
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("install opencode: npm not found on PATH; install Node.js and npm (Debian: apt-get install nodejs npm), or pass an existing binary with --opencode-bin")
	}
	pkg, _ := npmPackage()
	if err := os.MkdirAll(installDir, 0o755); err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	staging, err := os.MkdirTemp(installDir, ".staging-")
	if err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	defer os.RemoveAll(staging)

	var tail bytes.Buffer
	var listing bytes.Buffer
	cmd := exec.CommandContext(ctx, npm, "pack", "--json", "--pack-destination", staging, "--loglevel=error", pkg+"@"+version)
	cmd.Stdout, cmd.Stderr = &listing, io.MultiWriter(out, &tail)
	cmd.Dir = staging
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install opencode: npm pack %s@%s failed (%v); check that the npm registry is reachable and serves that version: %s",
			pkg, version, err, lastLine(tail.String()))
	}
	var packed []struct {
		Filename  string `json:"filename"`
		Integrity string `json:"integrity"`
	}
	if err := json.Unmarshal(listing.Bytes(), &packed); err != nil || len(packed) != 1 || filepath.Base(packed[0].Filename) != packed[0].Filename {
		return "", fmt.Errorf("install opencode: npm pack %s@%s gave no tarball", pkg, version)
	}
	rec := Record{Version: version, Package: pkg, Integrity: packed[0].Integrity}
	want := packed[0].Integrity
	if pin, ok := PinOf(version); ok {
		want, rec.Pinned = pin.Integrity, true
	}
	tgz := filepath.Join(staging, packed[0].Filename)
	got, err := integrity(tgz)
	if err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	if want == "" || got != want {
		return "", fmt.Errorf("%w: the npm package %s@%s has integrity %s, want %s: the registry served other bytes than were pinned; nothing was installed",
			ErrTampered, pkg, version, got, want)
	}
	tree := filepath.Join(staging, "tree")
	dst := filepath.Join(tree, "node_modules", pkg, "bin", "opencode")
	if rec.SHA256, err = unpackBinary(tgz, dst); err != nil {
		return "", fmt.Errorf("install opencode: %s: %w", tgz, err)
	}
	if pin, ok := PinOf(version); ok && rec.SHA256 != pin.SHA256 {
		return "", fmt.Errorf("%w: the binary in %s@%s has sha256 %s, want %s", ErrTampered, pkg, version, rec.SHA256, pin.SHA256)
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := atomicfile.Write(filepath.Join(tree, "install.json"), append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	final := filepath.Join(installDir, version)
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("install opencode: remove old install: %w", err)
	}
	if err := os.Rename(tree, final); err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	if err := VerifyVersion(ctx, bin, version); err != nil {
		return "", err
	}
	return bin, nil
}

// integrity is npm's integrity string of the file: sha512, base64.
func integrity(path string) (string, error) {
	sum, err := hashFile(path, sha512.New())
	return "sha512-" + base64.StdEncoding.EncodeToString(sum), err
}

// hashFile is h's sum of the file at path.
func hashFile(path string, h hash.Hash) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// unpackBinary writes the package's bin/opencode (and nothing else) from
// the tarball tgz to dst, mode 0755, and returns its sha256.
func unpackBinary(tgz, dst string) (string, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("not a gzip tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("the package holds no bin/opencode")
		}
		if err != nil {
			return "", fmt.Errorf("a broken tarball: %w", err)
		}
		if hdr.Name != "package/bin/opencode" {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size > maxBinary {
			return "", errors.New("bin/opencode is not a regular file of a sane size")
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(out, h), io.LimitReader(tr, maxBinary))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
}

// FileSHA256 is the sha256 (hex) of the file at path.
func FileSHA256(path string) (string, error) {
	sum, err := hashFile(path, sha256.New())
	return hex.EncodeToString(sum), err
}

// expectedSHA256 is the sha256 that opencode version's binary at bin must
// have: the source's pin, else the record of the install that put it there.
func expectedSHA256(bin, version string) (string, error) {
	if pin, ok := PinOf(version); ok {
		return pin.SHA256, nil
	}
	b, err := os.ReadFile(recordFile(bin))
	if err != nil {
		return "", fmt.Errorf("%w: no integrity is known for opencode %s at %s (neither pinned in this taosagent nor installed by it); install it with `taosagent setup --opencode %s`",
			ErrTampered, version, bin, version)
	}
	var rec Record
	if json.Unmarshal(b, &rec) != nil || rec.Version != version || rec.SHA256 == "" {
		return "", fmt.Errorf("%w: the install record of %s is not of opencode %s", ErrTampered, bin, version)
	}
	return rec.SHA256, nil
}

// Verify checks that bin is the pinned opencode (VerifyVersion of Version).
func Verify(ctx context.Context, bin string) error { return VerifyVersion(ctx, bin, Version) }

// VerifyVersion checks that bin is opencode version, byte for byte: an
// executable whose sha256 is the pinned (or installed) one and that says
// it is that version. opencode writes XDG directories under $HOME even for
// --version, so it runs with a throw-away HOME and touches nothing of the
// caller's.
func VerifyVersion(ctx context.Context, bin, version string) error {
	fi, err := os.Stat(bin)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("opencode binary %s does not exist; run `taosagent setup`", bin)
		}
		return fmt.Errorf("opencode binary: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("opencode binary %s is not an executable file; run `taosagent setup`", bin)
	}
	home, err := os.MkdirTemp("", "taosagent-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "OPENCODE_DISABLE_AUTOUPDATE=1"}
	cmd.Dir = home
	outb, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("opencode binary %s does not run (%v); run `taosagent setup` to reinstall it", bin, err)
	}
	got := strings.TrimSpace(string(outb))
	if got != version {
		return fmt.Errorf("%w: %s is %q, taosagent needs %s; run `taosagent setup`", ErrWrongVersion, bin, lastLine(got), version)
	}
	want, err := expectedSHA256(bin, version)
	if err != nil {
		return err
	}
	sum, err := FileSHA256(bin)
	if err != nil {
		return fmt.Errorf("opencode binary: %w", err)
	}
	if sum != want {
		return fmt.Errorf("%w: %s says it is opencode %s, but its bytes are not (sha256 %.12s…, want %.12s…): a substituted or corrupted binary; run `taosagent setup` to reinstall it",
			ErrTampered, bin, version, sum, want)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// Stamp is what a successful Verify of a binary records, so that a later
// look (taosagent doctor, the daemon's start) can tell the binary has not
// changed since without hashing it: the version, its sha256, and the
// file's identity (inode, size, times). A replaced or rewritten file has
// another inode or change time, which no one can set back.
type Stamp struct {
	Path    string    `json:"path"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256,omitempty"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	Inode   uint64    `json:"inode,omitempty"`
	Change  int64     `json:"change_ns,omitempty"` // ctime
}

func stampOf(bin, version string) (Stamp, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return Stamp{}, err
	}
	st := Stamp{Path: bin, Version: version, Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Inode, st.Change = sys.Ino, sys.Ctim.Nano()
	}
	return st, nil
}

// WriteStamp records that bin was verified as the pinned Version, in file
// (0600).
func WriteStamp(file, bin string) error { return WriteStampOf(file, bin, Version) }

// WriteStampOf records that bin was verified as opencode version.
func WriteStampOf(file, bin, version string) error {
	st, err := stampOf(bin, version)
	if err != nil {
		return err
	}
	if st.SHA256, err = FileSHA256(bin); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	return atomicfile.Write(file, b, 0o600)
}

// Stamped reports whether file records bin, unchanged since it was
// verified as the pinned Version.
func Stamped(file, bin string) bool { return StampedOf(file, bin, Version) }

// StampedOf reports whether file records bin, unchanged since it was
// verified as opencode version.
func StampedOf(file, bin, version string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	var rec Stamp
	if json.Unmarshal(b, &rec) != nil {
		return false
	}
	cur, err := stampOf(bin, version)
	return err == nil && rec.SHA256 != "" && rec.Path == cur.Path && rec.Version == cur.Version && rec.Size == cur.Size &&
		rec.ModTime.Equal(cur.ModTime) && rec.Inode == cur.Inode && rec.Change == cur.Change
}
