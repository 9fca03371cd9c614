package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/reply"
)

func opencodeVersion() string { return opencode.Version }

// versionRE is what an opencode version looks like.
var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// runSetup installs the pinned opencode (or adopts --opencode-bin) and
// prints the binary's path last, alone on its line.
func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("setup", stderr)
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	bin := fs.String("opencode-bin", "", "use this opencode binary instead of installing one (must be "+opencode.Version+")")
	quiet := fs.Bool("quiet", false, "print only the binary's path")
	version := fs.String("opencode", "", "upgrade: install this opencode version beside the current one, check it, and switch to it (an operator's explicit choice)")
	back := fs.Bool("rollback", false, "switch back to the opencode release the home ran before the last switch")
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
	switch {
	case *back && *version != "":
		return fmt.Errorf("%w: --rollback or --opencode, not both", errUsage)
	case *back:
		return rollback(ctx, *dir, stdout, progress)
	case *version != "":
		if !versionRE.MatchString(*version) {
			return fmt.Errorf("%w: --opencode %q is not a version", errUsage, *version)
		}
		return upgrade(ctx, *dir, *version, stdout, progress)
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

// opencodeBinary finds the binary (and its version) the home runs,
// verified byte for byte (or untouched since it last was).
func opencodeBinary(ctx context.Context, dir string) (path, version string, err error) {
	h := home.Home{Dir: dir}
	path, version, stamp, err := findOpencode(dir)
	if err != nil {
		return "", "", err
	}
	if opencode.StampedOf(stamp, path, version) {
		return path, version, nil // verified byte for byte before, and untouched since
	}
	if err := opencode.VerifyVersion(ctx, path, version); err != nil {
		return "", "", fmt.Errorf("%w (home %s)", err, dir)
	}
	// Remembered, so that doctor can tell it unchanged without hashing it.
	opencode.WriteStampOf(h.OpencodeStamp(), path, version)
	return path, version, nil
}

// findOpencode finds the binary the home runs, and its version, without
// running it (doctor verifies it as a check of its own): an explicit
// TAOSAGENT_OPENCODE (the pinned version), else the release an operator
// switched to (setup --opencode), else the binary setup adopted, else the
// one it installed.
func findOpencode(dir string) (path, version, stamp string, err error) {
	h := home.Home{Dir: dir}
	stamp, version = h.OpencodeStamp(), opencode.Version
	if path = os.Getenv("TAOSAGENT_OPENCODE"); path != "" {
		return path, version, stamp, nil // as tests and packagers give it
	}
	if r, ok, err := h.Release(); err != nil {
		return "", version, stamp, err
	} else if ok {
		return r.Path, r.Version, stamp, nil
	}
	if b, err := os.ReadFile(h.OpencodeChoice()); err == nil {
		return strings.TrimSpace(string(b)), version, stamp, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", version, stamp, err
	}
	path, err = opencode.BinaryPath(h.OpencodeDir())
	return path, version, stamp, err
}

// ensureOpencode is opencodeBinary, installing the pinned opencode into
// the home first when none was ever set up there.
func ensureOpencode(ctx context.Context, dir string, progress io.Writer) (path, version string, err error) {
	h := home.Home{Dir: dir}
	if os.Getenv("TAOSAGENT_OPENCODE") == "" {
		_, errChosen := os.Stat(h.OpencodeChoice())
		_, errRelease := os.Stat(h.ReleaseFile())
		p, err := opencode.BinaryPath(h.OpencodeDir())
		_, errInstalled := os.Stat(p)
		if errors.Is(errChosen, fs.ErrNotExist) && errors.Is(errRelease, fs.ErrNotExist) && (err != nil || errors.Is(errInstalled, fs.ErrNotExist)) {
			fmt.Fprintf(progress, "installing opencode %s into %s …\n", opencode.Version, h.OpencodeDir())
			if _, err := opencode.Install(ctx, h.OpencodeDir(), progress); err != nil {
				return "", "", err
			}
		}
	}
	return opencodeBinary(ctx, dir)
}

// upgrade installs opencode version beside the one the home runs, checks
// it (its integrity, --version, a real instance answering /global/health
// and a scripted turn with a tool call through the codec), and switches the
// home to it, keeping the one before for --rollback. A running daemon is
// told, and moves each agent to it between two of its turns.
func upgrade(ctx context.Context, dir, version string, stdout, progress io.Writer) error {
	h := home.Home{Dir: dir}
	fromPath, fromVersion, _, err := findOpencode(dir)
	if err != nil {
		return err
	}
	if version == fromVersion {
		return fmt.Errorf("%w: the home already runs opencode %s", errUsage, version)
	}
	fmt.Fprintf(progress, "installing opencode %s into %s (beside %s) …\n", version, h.OpencodeDir(), fromVersion)
	bin, err := opencode.InstallVersion(ctx, h.OpencodeDir(), version, progress)
	if err != nil {
		return err
	}
	if err := checkRelease(ctx, h, bin, version, progress); err != nil {
		return fmt.Errorf("opencode %s was installed but not switched to: %w", version, err)
	}
	prev := &home.Release{Version: fromVersion, Path: fromPath}
	if r, ok, _ := h.Release(); ok {
		prev.Switched = r.Switched
	}
	return switchRelease(ctx, h, home.Release{Version: version, Path: bin, Switched: time.Now().UTC(), Previous: prev}, stdout)
}

// rollback switches the home back to the release it ran before.
func rollback(ctx context.Context, dir string, stdout, progress io.Writer) error {
	h := home.Home{Dir: dir}
	r, ok, err := h.Release()
	if err != nil {
		return err
	}
	if !ok || r.Previous == nil {
		return fmt.Errorf("%w: no earlier opencode release to go back to (setup --opencode VERSION makes one)", errUsage)
	}
	p := *r.Previous
	if err := opencode.VerifyVersion(ctx, p.Path, p.Version); err != nil {
		return fmt.Errorf("the earlier release cannot be used: %w", err)
	}
	fmt.Fprintf(progress, "going back from opencode %s to %s …\n", r.Version, p.Version)
	return switchRelease(ctx, h, home.Release{Version: p.Version, Path: p.Path, Switched: time.Now().UTC(),
		Previous: &home.Release{Version: r.Version, Path: r.Path, Switched: r.Switched}}, stdout)
}

// checkRelease proves opencode version at bin works with this taosagent:
// an instance of it, confined as the daemon runs them, answers its health
// check with that version, and a scripted turn with a tool call comes
// through the codec as tool_call, tool_result and final.
func checkRelease(ctx context.Context, h home.Home, bin, version string, progress io.Writer) error {
	if !slices.Contains(reply.KnownVersions, version) {
		fmt.Fprintf(progress, "note: the codec was built against opencode %s; checking %s with a scripted turn\n",
			strings.Join(reply.KnownVersions, ", "), version)
	}
	var kinds []string
	err := scriptedTurn(ctx, bin, version, h.Dir, "upgrade-check", false, "Please use a tool to say hi", progress, func(e event.Event) {
		kinds = append(kinds, string(e.Kind))
	})
	if err != nil {
		return fmt.Errorf("a scripted turn on it failed: %w", err)
	}
	got := strings.Join(kinds, " ")
	if !strings.Contains(got, "tool_call") || !strings.Contains(got, "tool_result") || !strings.HasSuffix(got, "final") {
		return fmt.Errorf("the codec does not understand its events: a scripted turn with a tool call gave [%s]", got)
	}
	fmt.Fprintf(progress, "opencode %s: healthy, and a scripted turn with a tool call came through the codec\n", version)
	return nil
}

// switchRelease records r as the home's release and tells a running
// daemon to move to it.
func switchRelease(ctx context.Context, h home.Home, r home.Release, stdout io.Writer) error {
	if err := h.SetRelease(r); err != nil {
		return err
	}
	opencode.WriteStampOf(h.OpencodeStamp(), r.Path, r.Version)
	fmt.Fprintf(stdout, "the home runs opencode %s now (%s); setup --rollback returns to %s\n", r.Version, r.Path, r.Previous.Version)
	if !h.Running() {
		return nil
	}
	c, err := clientFor(h)
	if err != nil {
		return err
	}
	var out struct {
		Version string `json:"version"`
	}
	if err := c.Do(ctx, "POST", "/v1/opencode/reload", nil, &out); err != nil {
		return fmt.Errorf("the running daemon could not be told (restart it to use %s): %w", r.Version, err)
	}
	fmt.Fprintf(stdout, "the running daemon moves each agent to opencode %s between two of its turns\n", out.Version)
	return nil
}

// clientFor is a client of the daemon running on home h (its recorded
// address, its token).
func clientFor(h home.Home) (*client.Client, error) {
	d, ok := h.Recorded()
	if !ok {
		return nil, errors.New("the running daemon recorded no address")
	}
	token, err := h.Token()
	if err != nil {
		return nil, err
	}
	return &client.Client{Base: "http://" + d.Addr, Token: token}, nil
}
