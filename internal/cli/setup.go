package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/opencode"
)

func opencodeVersion() string { return opencode.Version }

// runSetup installs the pinned opencode (or adopts --opencode-bin) and
// prints the binary's path last, alone on its line.
func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("setup", stderr)
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	bin := fs.String("opencode-bin", "", "use this opencode binary instead of installing one (must be "+opencode.Version+")")
	quiet := fs.Bool("quiet", false, "print only the binary's path")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	progress := stderr
	if *quiet {
		progress = io.Discard
	}
	var path string
	if *bin != "" {
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return err
		}
		if err := opencode.Verify(ctx, abs); err != nil {
			return err
		}
		if err := atomicfile.Write(home.Home{Dir: *dir}.OpencodeChoice(), []byte(abs+"\n"), 0o600); err != nil {
			return err
		}
		path = abs
	} else {
		fmt.Fprintf(progress, "installing opencode %s into %s …\n", opencode.Version, filepath.Join(*dir, "opencode"))
		p, err := opencode.Install(ctx, filepath.Join(*dir, "opencode"), progress)
		if err != nil {
			return err
		}
		os.Remove(home.Home{Dir: *dir}.OpencodeChoice())
		path = p
	}
	opencode.WriteStamp(home.Home{Dir: *dir}.OpencodeStamp(), path) // verified above
	if !*quiet {
		fmt.Fprintf(stdout, "opencode %s ready:\n", opencode.Version)
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// opencodeBinary finds the binary setup chose for the home dir, verified.
func opencodeBinary(ctx context.Context, dir string) (string, error) {
	h := home.Home{Dir: dir}
	path, stamp, err := findOpencode(dir)
	if err != nil {
		return "", err
	}
	if opencode.Stamped(stamp, path) {
		return path, nil // verified byte for byte before, and untouched since
	}
	if err := opencode.Verify(ctx, path); err != nil {
		return "", fmt.Errorf("%w (home %s)", err, dir)
	}
	// Remembered, so that doctor can tell it unchanged without running it.
	opencode.WriteStamp(h.OpencodeStamp(), path)
	return path, nil
}

// findOpencode finds the binary setup chose for the home dir without
// running it (doctor verifies it as a check of its own): an explicit
// TAOSAGENT_OPENCODE, else the binary setup adopted, else the one it
// installed.
func findOpencode(dir string) (path, stamp string, err error) {
	h := home.Home{Dir: dir}
	stamp = h.OpencodeStamp()
	if path = os.Getenv("TAOSAGENT_OPENCODE"); path != "" {
		return path, stamp, nil // as tests and packagers give it
	}
	if b, err := os.ReadFile(h.OpencodeChoice()); err == nil {
		return strings.TrimSpace(string(b)), stamp, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", stamp, err
	}
	path, err = opencode.BinaryPath(h.OpencodeDir())
	return path, stamp, err
}

// ensureOpencode is opencodeBinary, installing the pinned opencode into
// the home first when none was ever set up there.
func ensureOpencode(ctx context.Context, dir string, progress io.Writer) (string, error) {
	h := home.Home{Dir: dir}
	if os.Getenv("TAOSAGENT_OPENCODE") == "" {
		_, errChosen := os.Stat(h.OpencodeChoice())
		p, err := opencode.BinaryPath(h.OpencodeDir())
		_, errInstalled := os.Stat(p)
		if errors.Is(errChosen, fs.ErrNotExist) && (err != nil || errors.Is(errInstalled, fs.ErrNotExist)) {
			fmt.Fprintf(progress, "installing opencode %s into %s …\n", opencode.Version, h.OpencodeDir())
			if _, err := opencode.Install(ctx, h.OpencodeDir(), progress); err != nil {
				return "", err
			}
		}
	}
	return opencodeBinary(ctx, dir)
}
