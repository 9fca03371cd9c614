// Package npmpkg installs an npm package at one exact version, with its
// dependencies, for the daemon to run confined: the Library's local MCP
// servers. A package is installed once, into a directory of its own named
// by its spec, with npm's integrity checks and no install scripts (nothing
// of the package runs while root installs it); it is then read-only data
// that a sandbox binds.
package npmpkg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Installed is a package installed under Root.
type Installed struct {
	Dir string // the install's root: bind it read-only
	// Bin is the package's bin file, inside Dir: run it with node. ""
	// for a package that declares none (a library), and NoBin says why.
	Bin   string
	NoBin error
}

// Installer installs packages under Root, with NPM (default "npm" on
// PATH). Its zero value is not usable; Root must be set.
type Installer struct {
	Root string
	NPM  string
	mu   sync.Mutex // one install at a time: npm's cache is shared
}

// name is spec's package name: "@scope/name@1.2.3" → "@scope/name".
func name(spec string) string {
	i := strings.LastIndexByte(spec, '@')
	if i <= 0 {
		return spec
	}
	return spec[:i]
}

// Dir is where spec is (or would be) installed, with lock (npm's
// package-lock.json of it; nil: none).
func (in *Installer) Dir(spec string, lock []byte) string {
	key := []byte(spec)
	if lock != nil {
		key = append(append(key, '\n'), lock...)
	}
	sum := sha256.Sum256(key)
	return filepath.Join(in.Root, hex.EncodeToString(sum[:12]))
}

// Find is spec's install (with lock), or an error when it is not
// (completely) there.
func (in *Installer) Find(spec string, lock []byte) (Installed, error) {
	return found(in.Dir(spec, lock), spec)
}

// Ensure installs spec (a package at an exact version; the caller has
// checked it) unless it is installed, and returns it. With lock (npm's
// package-lock.json, whose root depends on spec alone), it installs
// exactly the tree the lock names (npm ci); without, npm resolves the
// dependencies now. A failed install leaves nothing behind and says npm's
// last words.
func (in *Installer) Ensure(ctx context.Context, spec string, lock []byte) (Installed, error) {
	dir := in.Dir(spec, lock)
	if it, err := found(dir, spec); err == nil {
		return it, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if it, err := found(dir, spec); err == nil {
		return it, nil
	}
	if err := os.MkdirAll(in.Root, 0o755); err != nil {
		return Installed{}, err
	}
	tmp, err := os.MkdirTemp(in.Root, ".install-")
	if err != nil {
		return Installed{}, err
	}
	defer os.RemoveAll(tmp)
	npm := in.NPM
	if npm == "" {
		npm = "npm"
	}
	args := []string{"install", "--prefix", tmp, "--ignore-scripts", "--no-audit", "--no-fund",
		"--omit=dev", "--no-save", "--prefer-offline", "--loglevel=error", spec}
	if lock != nil {
		i := strings.LastIndexByte(spec, '@')
		pkg, _ := json.Marshal(map[string]any{"name": "taosagent-install", "private": true,
			"dependencies": map[string]string{spec[:i]: spec[i+1:]}})
		for f, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
			if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
				return Installed{}, err
			}
		}
		args = []string{"ci", "--prefix", tmp, "--ignore-scripts", "--no-audit", "--no-fund",
			"--omit=dev", "--prefer-offline", "--loglevel=error"}
	}
	out, err := exec.CommandContext(ctx, npm, args...).CombinedOutput()
	if err != nil && strings.Contains(string(out), "ETARGET") {
		// --prefer-offline trusts the npm cache's metadata however old:
		// a version published since is "not found" (ETARGET) although the
		// registry has it. Once more, the metadata asked for afresh.
		for i, a := range args {
			if a == "--prefer-offline" {
				args[i] = "--prefer-online"
			}
		}
		out, err = exec.CommandContext(ctx, npm, args...).CombinedOutput()
	}
	if err != nil {
		return Installed{}, fmt.Errorf("npm install %s: %v: %s", spec, err, lastLines(string(out), 5))
	}
	if err := os.WriteFile(filepath.Join(tmp, "spec"), []byte(spec+"\n"), 0o644); err != nil {
		return Installed{}, err
	}
	if _, err := found(tmp, spec); err != nil {
		return Installed{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Installed{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Installed{}, err
	}
	return found(dir, spec)
}

// found is spec's install in dir, if it is complete: the spec recorded
// last, and the package itself (its bin, when it has one).
func found(dir, spec string) (Installed, error) {
	b, err := os.ReadFile(filepath.Join(dir, "spec"))
	if err != nil || strings.TrimSpace(string(b)) != spec {
		return Installed{}, errors.New("not installed")
	}
	pkg := filepath.Join(dir, "node_modules", filepath.FromSlash(name(spec)))
	if _, err := os.Stat(filepath.Join(pkg, "package.json")); err != nil {
		return Installed{}, fmt.Errorf("%s: %w", spec, err)
	}
	bin, err := binOf(pkg)
	if err != nil {
		return Installed{Dir: dir, NoBin: fmt.Errorf("%s: %w", spec, err)}, nil
	}
	return Installed{Dir: dir, Bin: bin}, nil
}

// binOf is the bin file the package at pkg declares: its only one, or
// the one named as the package (unscoped). The path is the package's
// word: it must stay inside pkg, and it is only ever followed inside a
// sandbox.
func binOf(pkg string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		return "", err
	}
	var m struct {
		Name string          `json:"name"`
		Bin  json.RawMessage `json:"bin"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("package.json: %w", err)
	}
	var rel string
	var one string
	var many map[string]string
	switch {
	case json.Unmarshal(m.Bin, &one) == nil && one != "":
		rel = one
	case json.Unmarshal(m.Bin, &many) == nil && len(many) == 1:
		for _, v := range many {
			rel = v
		}
	case many != nil:
		rel = many[filepath.Base(m.Name)]
	}
	if rel == "" {
		return "", errors.New("the package declares no bin to run (one, or one named as the package)")
	}
	p := filepath.Join(pkg, filepath.FromSlash(rel))
	if !strings.HasPrefix(p, pkg+string(filepath.Separator)) {
		return "", fmt.Errorf("the package's bin %q is outside it", rel)
	}
	return p, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
