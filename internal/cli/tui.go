package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
)

// runTUI opens opencode's own TUI on an agent (the host by default),
// attached to its instance through the daemon: the instance starts if
// needed, and the turns made in the TUI are recorded in the event log like
// any other. Only a user who can read the home's token gets in.
func runTUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("tui", stderr)
	mk := clientFlags(fs)
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	name := agent.Host
	switch fs.NArg() {
	case 0:
	case 1:
		name = fs.Arg(0)
	default:
		return fmt.Errorf("%w: want at most one AGENT", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	at, err := c.Attach(ctx, name)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			down := fmt.Errorf("the taosagent daemon is not running at %s (%v).\nStart it (systemctl start taosagent, or taosagent serve), or run `taosagent doctor` to find out what is wrong", c.Base, err)
			dir := fs.Lookup("home").Value.String()
			if name != agent.Host || !isUsableTerminal() || canFix(home.Home{Dir: dir}) != nil {
				return down
			}
			// A person at the terminal, asking for the host assistant,
			// which is down: the recovery assistant takes over.
			fmt.Fprintf(stdout, "The taosagent daemon is down (%s). Starting the recovery assistant (taosagent fix --chat).\n\n", c.Base)
			e := newDoctorEnv(dir, strings.TrimPrefix(c.Base, "http://"), hostctl.Systemd{})
			defer e.Close()
			return runFixChat(ctx, e, chatModel{}, os.Stdin, stdout, stderr)
		}
		return err
	}
	h := home.Home{Dir: fs.Lookup("home").Value.String()}
	bin, _, err := opencodeBinary(ctx, h.Dir)
	if err != nil {
		return err
	}
	// The TUI is a client: it keeps its own state in a directory of the
	// home, never in the user's, and loads no plugins.
	state := h.TUI()
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "attach", at.URL, "--session", at.Session, "--dir", at.Directory, "--pure")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The password goes in the environment, never on the command line
	// (which every user can read in ps).
	cmd.Env = append(os.Environ(), "OPENCODE_SERVER_PASSWORD="+at.Password, "HOME="+state,
		"XDG_CONFIG_HOME="+filepath.Join(state, "config"), "XDG_DATA_HOME="+filepath.Join(state, "data"),
		"XDG_STATE_HOME="+filepath.Join(state, "state"), "XDG_CACHE_HOME="+filepath.Join(state, "cache"),
		"OPENCODE_DISABLE_AUTOUPDATE=1")
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("opencode's TUI: %w", err)
	}
	fmt.Fprintf(stdout, "The conversation is kept: taosagent events %s\n", name)
	return nil
}
