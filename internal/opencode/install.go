package opencode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// BinaryPath is where Install puts the pinned binary under installDir.
func BinaryPath(installDir string) (string, error) {
	pkg, err := npmPackage()
	if err != nil {
		return "", err
	}
	return filepath.Join(installDir, Version, "node_modules", pkg, "bin", "opencode"), nil
}

// Install makes sure the pinned opencode is installed under installDir and
// returns the binary's path. It is idempotent: a verified install is left
// alone, a broken one is replaced. The package comes from the npm registry
// npm is configured for, without install scripts; npm's output goes to out.
// The new tree is staged beside the final one and renamed into place, so an
// interrupted install never leaves a half-written binary behind.
func Install(ctx context.Context, installDir string, out io.Writer) (string, error) {
	bin, err := BinaryPath(installDir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		if err := Verify(ctx, bin); err == nil {
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
	w := io.MultiWriter(out, &tail)
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", staging,
		"--no-save", "--no-package-lock", "--no-audit", "--no-fund",
		"--ignore-scripts", "--loglevel=error", pkg+"@"+Version)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install opencode: npm install %s@%s failed (%v); check that the npm registry is reachable: %s",
			pkg, Version, err, lastLine(tail.String()))
	}
	final := filepath.Join(installDir, Version)
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("install opencode: remove old install: %w", err)
	}
	if err := os.Rename(staging, final); err != nil {
		return "", fmt.Errorf("install opencode: %w", err)
	}
	if err := Verify(ctx, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Verify checks that bin is an executable opencode of the pinned Version.
// opencode writes XDG directories under $HOME even for --version, so it runs
// with a throw-away HOME and touches nothing of the caller's.
func Verify(ctx context.Context, bin string) error {
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
	if got != Version {
		return fmt.Errorf("%w: %s is %q, taosagent needs %s; run `taosagent setup`", ErrWrongVersion, bin, lastLine(got), Version)
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
// look (taosagent doctor) can tell the binary has not changed since
// without running it: the version, and the file's size, mode and time.
type Stamp struct {
	Path    string    `json:"path"`
	Version string    `json:"version"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

func stampOf(bin string) (Stamp, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return Stamp{}, err
	}
	return Stamp{Path: bin, Version: Version, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// WriteStamp records that bin was verified, in file (0600).
func WriteStamp(file, bin string) error {
	st, err := stampOf(bin)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	return atomicfile.Write(file, b, 0o600)
}

// Stamped reports whether file records bin, unchanged since it was
// verified.
func Stamped(file, bin string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	var rec Stamp
	if json.Unmarshal(b, &rec) != nil {
		return false
	}
	cur, err := stampOf(bin)
	return err == nil && rec.Path == cur.Path && rec.Version == cur.Version && rec.Size == cur.Size && rec.ModTime.Equal(cur.ModTime)
}
