package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/opencode"
)

// unitName is the systemd unit taosagent installs.
const unitName = "taosagent.service"

// runInstall installs taosagent as a system service, as taOS's bootstrap
// installer calls it: non-interactive and idempotent (a second run changes
// nothing and says so). It puts this binary in place, creates the home
// with the right owner and modes, installs the pinned opencode into it
// (setup), creates the operator token, writes the systemd unit, and
// enables and starts it. --uninstall removes what it installed and keeps
// the home (the agents, their history, the audit) unless --purge.
//
// --root installs under another root (for tests and staging): every path,
// the unit's own included, is under it.
func runInstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("install", stderr)
	root := fs.String("root", "/", "install under this root (every path, the unit's included)")
	binDir := fs.String("bin-dir", "/usr/local/bin", "where the taosagent binary goes")
	homeDir := fs.String("home", "/var/lib/taosagent", "the daemon's home")
	unitDir := fs.String("unit-dir", "/etc/systemd/system", "where the systemd unit goes")
	listen := fs.String("listen", "127.0.0.1:7077", "the daemon's address")
	owner := fs.String("user", "root", "the user the daemon runs as, owner of its home")
	ocBin := fs.String("opencode-bin", "", "adopt this opencode binary (must be the pinned "+opencode.Version+") instead of installing it from npm")
	noStart := fs.Bool("no-start", false, "enable the unit but do not start it")
	uninstall := fs.Bool("uninstall", false, "remove what install installed; the home stays unless --purge")
	purge := fs.Bool("purge", false, "with --uninstall: remove the home too (agents, history, audit, keys)")
	sysd := systemdFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *purge && !*uninstall {
		return fmt.Errorf("%w: --purge goes with --uninstall", errUsage)
	}
	in := installer{
		root:   *root,
		bin:    filepath.Join(*root, *binDir, "taosagent"),
		home:   home.Home{Dir: filepath.Join(*root, *homeDir)},
		unit:   filepath.Join(*root, *unitDir, unitName),
		listen: *listen,
		owner:  *owner,
		sysd:   sysd(),
		step:   func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) },
	}
	if *uninstall {
		return in.remove(ctx, *purge)
	}
	if err := in.install(ctx, *ocBin, !*noStart); err != nil {
		return err
	}
	if in.changed == 0 {
		in.step("nothing to change: taosagent is installed as asked")
	}
	// With no managed-host declaration yet, show what discover would
	// declare; the installer writes none (taosagent discover does, with a
	// person's yes).
	if _, err := os.Stat(in.home.HostFile()); errors.Is(err, os.ErrNotExist) {
		in.step("no managed-host declaration yet; what `taosagent discover` finds:")
		if err := discoverHost(ctx, in.home, discoverOptions{root: in.root}, stdout); err != nil {
			in.step("discover: %v", err)
		}
	}
	return nil
}

// installer installs (or removes) taosagent on this host.
type installer struct {
	root      string // where the box's files are ("" or "/": this box)
	bin, unit string
	home      home.Home
	listen    string
	owner     string
	sysd      hostctl.Systemd
	step      func(format string, a ...any)
	changed   int
	uid, gid  int
}

func (in *installer) did(format string, a ...any) {
	in.changed++
	in.step(format, a...)
}

// install is long: the install's steps in the order a person reads them in
// its output.
func (in *installer) install(ctx context.Context, ocBin string, start bool) error {
	u, err := user.Lookup(in.owner)
	if err != nil {
		return fmt.Errorf("--user %s: %w", in.owner, err)
	}
	in.uid, _ = strconv.Atoi(u.Uid)
	in.gid, _ = strconv.Atoi(u.Gid)

	// 1. The binary: this one, unless the same bytes are there already.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	mine, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(in.bin); err == nil && bytes.Equal(cur, mine) {
		in.step("binary %s: unchanged", in.bin)
	} else {
		if err := os.MkdirAll(filepath.Dir(in.bin), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(in.bin, mine, 0o755); err != nil {
			return fmt.Errorf("install the binary: %w", err)
		}
		in.did("binary %s: installed", in.bin)
	}

	// 2. The home: mode 0700, owned by the daemon's user.
	if st, err := os.Stat(in.home.Dir); err == nil && st.IsDir() {
		if st.Mode().Perm() != 0o700 {
			if err := os.Chmod(in.home.Dir, 0o700); err != nil {
				return err
			}
			in.did("home %s: mode set to 0700 (was %04o)", in.home.Dir, st.Mode().Perm())
		} else {
			in.step("home %s: unchanged", in.home.Dir)
		}
	} else {
		if err := in.home.Create(); err != nil {
			return fmt.Errorf("create the home: %w", err)
		}
		in.did("home %s: created (0700)", in.home.Dir)
	}

	// 3. The pinned opencode, in the home (setup).
	if err := in.opencode(ctx, ocBin); err != nil {
		return err
	}

	// 4. The operator token (0600), so that clients work at once.
	if _, err := in.home.Token(); err == nil {
		in.step("token %s: unchanged", in.home.TokenFile())
	} else {
		if _, err := in.home.EnsureToken(); err != nil {
			return err
		}
		in.did("token %s: created (0600)", in.home.TokenFile())
	}
	if err := in.chown(); err != nil {
		return err
	}

	// 5. The unit, enabled and started.
	unit := doctor.UnitFor(in.bin, in.home.Dir, in.listen, in.owner)
	fresh := true
	if cur, err := os.ReadFile(in.unit); err == nil && string(cur) == unit {
		in.step("unit %s: unchanged", in.unit)
		fresh = false
	} else {
		if err := os.MkdirAll(filepath.Dir(in.unit), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(in.unit, []byte(unit), 0o644); err != nil {
			return fmt.Errorf("write the unit: %w", err)
		}
		in.did("unit %s: written", in.unit)
	}
	st, err := in.sysd.Status(ctx, unitName)
	if err != nil {
		return fmt.Errorf("systemd: %w", err)
	}
	if fresh || st.LoadState != "loaded" {
		if err := in.sysd.Enable(ctx, unitName, false); err != nil {
			return fmt.Errorf("enable %s: %w", unitName, err)
		}
		in.did("unit %s: enabled", unitName)
	}
	if !start {
		return nil
	}
	switch {
	case st.ActiveState == "active" && fresh:
		if _, err := in.sysd.Restart(ctx, unitName); err != nil {
			return fmt.Errorf("restart %s: %w", unitName, err)
		}
		in.did("service %s: restarted with its new unit", unitName)
	case st.ActiveState == "active" && in.changed > 0:
		// The same unit: the daemon hands over to the new binary in place,
		// its running turns and instances kept (a planned restart).
		if _, err := in.sysd.Reload(ctx, unitName); err != nil {
			return fmt.Errorf("reload %s: %w", unitName, err)
		}
		in.did("service %s: handed over to what changed (its turns and instances kept)", unitName)
	case st.ActiveState == "active":
		in.step("service %s: running", unitName)
	default:
		if _, err := in.sysd.Start(ctx, unitName); err != nil {
			return fmt.Errorf("start %s: %w", unitName, err)
		}
		in.did("service %s: started", unitName)
	}
	return nil
}

// opencode installs the pinned opencode into the home, or adopts ocBin.
func (in *installer) opencode(ctx context.Context, ocBin string) error {
	choice := in.home.OpencodeChoice()
	if ocBin != "" {
		abs, err := filepath.Abs(ocBin)
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(choice); err == nil && string(b) == abs+"\n" && opencode.Stamped(in.home.OpencodeStamp(), abs) {
			in.step("opencode %s at %s: unchanged", opencode.Version, abs)
			return nil
		}
		if err := opencode.Verify(ctx, abs); err != nil {
			return err
		}
		if err := atomicfile.Write(choice, []byte(abs+"\n"), 0o600); err != nil {
			return err
		}
		opencode.WriteStamp(in.home.OpencodeStamp(), abs)
		in.did("opencode %s at %s: adopted", opencode.Version, abs)
		return nil
	}
	path, err := opencode.BinaryPath(in.home.OpencodeDir())
	if err != nil {
		return err
	}
	if _, err := os.Stat(choice); errors.Is(err, fs.ErrNotExist) && opencode.Stamped(in.home.OpencodeStamp(), path) {
		in.step("opencode %s at %s: unchanged", opencode.Version, path)
		return nil
	}
	in.step("opencode %s: installing from the npm registry into %s …", opencode.Version, in.home.OpencodeDir())
	if path, err = opencode.Install(ctx, in.home.OpencodeDir(), io.Discard); err != nil {
		return err
	}
	os.Remove(choice)
	opencode.WriteStamp(in.home.OpencodeStamp(), path)
	in.did("opencode %s at %s: installed and verified", opencode.Version, path)
	return nil
}

// chown gives the home and everything in it to the daemon's user.
//
// The agents' trees and their instances' directories are not walked: each
// agent's belongs to its own uid, and the daemon hands out both itself
// (each time it starts the agent's opencode). An instance that runs on
// through an upgrade (a hand-over) must find them as they were.
func (in *installer) chown() error {
	skip := map[string]bool{in.home.Agents(): true, in.home.Instances(): true}
	return filepath.WalkDir(in.home.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, in.uid, in.gid); err != nil {
			return err
		}
		if skip[p] {
			return filepath.SkipDir
		}
		return nil
	})
}

// remove undoes install: the service, its unit, the binary; the home only
// with purge.
func (in *installer) remove(ctx context.Context, purge bool) error {
	if _, err := os.Stat(in.unit); err == nil {
		if err := in.sysd.Stop(ctx, unitName); err != nil {
			return fmt.Errorf("stop %s: %w", unitName, err)
		}
		if err := os.Remove(in.unit); err != nil {
			return err
		}
		if err := in.sysd.Disable(ctx, unitName); err != nil {
			return fmt.Errorf("disable %s: %w", unitName, err)
		}
		in.did("service %s: stopped, disabled, its unit removed", unitName)
	} else {
		in.step("unit %s: not installed", in.unit)
	}
	if err := os.Remove(in.bin); err == nil {
		in.did("binary %s: removed", in.bin)
	} else if errors.Is(err, fs.ErrNotExist) {
		in.step("binary %s: not installed", in.bin)
	} else {
		return err
	}
	if !purge {
		in.step("home %s: kept (agents, history, audit, keys); --purge removes it", in.home.Dir)
		return nil
	}
	if err := os.RemoveAll(in.home.Dir); err != nil {
		return err
	}
	in.did("home %s: removed", in.home.Dir)
	return nil
}
