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
	"github.com/taosagent/taosagent/internal/opencode"
)

func opencodeVersion() string { return opencode.Version }

// binaryFile, in the home, names the opencode binary to use when it is not
// the one setup installed.
const binaryFile = "opencode-binary"

// runSetup installs the pinned opencode (or adopts --opencode-bin) and
// prints the binary's path last, alone on its line.
func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("setup", stderr)
	home := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	bin := fs.String("opencode-bin", "", "use this opencode binary instead of installing one (must be "+opencode.Version+")")
	quiet := fs.Bool("quiet", false, "print only the binary's path")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := os.MkdirAll(*home, 0o700); err != nil {
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
		if err := atomicfile.Write(filepath.Join(*home, binaryFile), []byte(abs+"\n"), 0o600); err != nil {
			return err
		}
		path = abs
	} else {
		fmt.Fprintf(progress, "installing opencode %s into %s …\n", opencode.Version, filepath.Join(*home, "opencode"))
		p, err := opencode.Install(ctx, filepath.Join(*home, "opencode"), progress)
		if err != nil {
			return err
		}
		os.Remove(filepath.Join(*home, binaryFile))
		path = p
	}
	if !*quiet {
		fmt.Fprintf(stdout, "opencode %s ready:\n", opencode.Version)
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// opencodeBinary finds the binary setup chose for home, verified.
func opencodeBinary(ctx context.Context, home string) (string, error) {
	path := os.Getenv("TAOSAGENT_OPENCODE")
	if path != "" {
		// An explicit binary, as tests and packagers give it.
	} else if b, err := os.ReadFile(filepath.Join(home, binaryFile)); err == nil {
		path = strings.TrimSpace(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	} else if path, err = opencode.BinaryPath(filepath.Join(home, "opencode")); err != nil {
		return "", err
	}
	if err := opencode.Verify(ctx, path); err != nil {
		return "", fmt.Errorf("%w (home %s)", err, home)
	}
	return path, nil
}

// ensureOpencode is opencodeBinary, installing the pinned opencode into
// home first when none was ever set up there.
func ensureOpencode(ctx context.Context, home string, progress io.Writer) (string, error) {
	if os.Getenv("TAOSAGENT_OPENCODE") == "" {
		_, errChosen := os.Stat(filepath.Join(home, binaryFile))
		p, err := opencode.BinaryPath(filepath.Join(home, "opencode"))
		_, errInstalled := os.Stat(p)
		if errors.Is(errChosen, fs.ErrNotExist) && (err != nil || errors.Is(errInstalled, fs.ErrNotExist)) {
			fmt.Fprintf(progress, "installing opencode %s into %s …\n", opencode.Version, filepath.Join(home, "opencode"))
			if _, err := opencode.Install(ctx, filepath.Join(home, "opencode"), progress); err != nil {
				return "", err
			}
		}
	}
	return opencodeBinary(ctx, home)
}
