// Package cli holds taosagent's subcommands, one file each. Main parses the
// command line and returns the process's exit status; only main exits.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/daemon"
	"github.com/taosagent/taosagent/internal/render"
)

// Version is taosagent's own version.
const Version = "0.1.0-dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the daemon: agents, event log, HTTP API (serve --help)", runServe},
		{"chat", "send a message to an agent and follow its turn (chat AGENT TEXT…)", runChat},
		{"agents", "list the agents", runAgents},
		{"providers", "list the model providers", runProviders},
		{"events", "print an agent's events (events AGENT [--follow] [--after N])", runEvents},
		{"approvals", "list approvals (pending ones by default), opencode's and taosagent's", runApprovals},
		{"approve", "answer a pending approval (approve ID once|always|reject [--message …])", runApprove},
		{"questions", "list what agents ask a person (pending ones by default)", runQuestions},
		{"answer", "answer an agent's question (answer ID ANSWER… one per question, or ID --reject)", runAnswer},
		{"library", "the Library of vetted items for agents (library add DIR|ARCHIVE | list | show KIND/NAME | diff KIND/NAME | accept KIND/NAME DIGEST | rm KIND/NAME | secret mcp/NAME SECRET | sync GIT-URL)", runLibrary},
		{"conversations", "list an agent's conversations, the current one marked (conversations AGENT)", runConversations},
		{"resume", "make an earlier conversation the agent's current one (resume AGENT CONVERSATION)", runResume},
		{"abort", "stop an agent's running turn (abort AGENT)", runAbort},
		{"hook", "an agent's webhooks: add AGENT TEMPLATE (its secret shown once), list AGENT, rm AGENT ID", runHook},
		{"task", "the tasks agents handed each other: list [--agent NAME], show TASK, cancel TASK", runTask},
		{"notify", "where you are told of what waits or failed: add ntfy|webhook URL [--token --agents --kinds --details], list, rm CHANNEL", runNotify},
		{"schedule", "an agent's schedules: add AGENT MESSAGE (--cron EXPR [--tz TZ] | --every DUR), list AGENT, rm AGENT ID, run AGENT ID", runSchedule},
		{"cluster", "the daemons sharing a PostgreSQL database and where agents run: status, drain [--off] [DAEMON], pin AGENT PIN (a daemon's id, a label k=v, or \"\" for any)", runCluster},
		{"drain", "drain a daemon of a cluster: its agents move to others between their turns (drain [--off] [DAEMON]; the same as cluster drain)", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runCluster(ctx, append([]string{"drain"}, args...), stdout, stderr)
		}},
		{"move", "move an agent to another daemon of its cluster, copying its files if that daemon is on other storage (move AGENT DAEMON [--no-wait])", runMove},
		{"audit", "print the audit of host actions (audit [--actor A] [--tool T] [--outcome O] [--since 24h])", runAudit},
		{"tui", "open opencode's own TUI on an agent, the host by default (also: taosagent with no arguments at a terminal)", runTUI},
		{"key", "issue an agent a new key for the model gateway, shown once (key AGENT)", runKey},
		{"sync-models", "sync a LiteLLM agent's permitted models with its key's scope (sync-models AGENT)", runSyncModels},
		{"usage", "model usage through the gateway per agent, model and day (usage [--agent A] [--model P/M] [--since DAY])", runUsage},
		{"mcp", "serve taosagent's host tools over stdio to a local MCP client (needs the home's token)", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runMCP(ctx, args, os.Stdin, stdout, stderr)
		}},
		{"doctor", "check the whole install, with no daemon and no model (doctor [--json] [--list] [CHECK…])", runDoctor},
		{"fix", "repair what doctor finds with vetted recipes (fix [--dry-run] [--yes] [--all] [RECIPE…])", runFix},
		{"discover", "find the taOS install on this box and propose its managed-host declaration, written with your yes (discover [--yes])", runDiscover},
		{"install", "install taosagent as a system service, non-interactively and idempotently (--uninstall [--purge] removes it)", runInstall},
		{"install-service", "write and enable taosagent's systemd unit ([--user] [--print])", runInstallService},
		{"setup", "install the pinned opencode into the home directory", runSetup},
		{"backup", "write a consistent backup of the home, the daemon running or not (backup FILE: a new 0600 archive)", runBackup},
		{"restore", "bring a backup back into a new, empty home, no daemon running (restore FILE --home DIR)", runRestore},
		{"demo", "run one turn against the scripted demo model and print its events", runDemo},
		{"sandbox", "run a command in a disposable bubblewrap sandbox (sandbox run --help)", runSandbox},
		{"app", "create, validate and package .taosapp web apps (app new|validate|package)", runApp},
		{"version", "print taosagent's version and the opencode it pins", runVersion},
	}
}

// errUsage marks an error in the command line: exit status 2.
var errUsage = errors.New("usage")

// exitStatus ends a command with a given status and no further message:
// the command has already said what happened.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// rawOutput are the commands whose output passes as is: the daemon and
// the installers (their own messages), the TUI (a terminal program), the
// MCP bridge (a protocol), the key (a secret to copy), a sandboxed
// command's own output, the version. Every other command prints what
// agents and models wrote through render.Writer: control and format
// characters (but newline and tab) are shown escaped, --json output
// included.
var rawOutput = map[string]bool{"serve": true, "tui": true, "mcp": true, "key": true, "install": true,
	"install-service": true, "setup": true, "sandbox": true, "version": true}

// Main runs one subcommand and returns the exit status: 0 success, 1
// failure, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	none := ""
	if isTerminal(os.Stdin) && isTerminal(os.Stdout) {
		none = "tui" // a person at a terminal: talk to the host assistant
	}
	args, err := hoistGlobals(args, none)
	if err != nil {
		fmt.Fprintf(stderr, "taosagent: %v\n\n", err)
		usage(stderr)
		return 2
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		stop := onStop()
		defer stop.release()
		if !rawOutput[c.name] {
			// What agents and models wrote reaches the person's terminal
			// only as visible text.
			o, e := &render.Writer{W: stdout}, &render.Writer{W: stderr}
			defer o.Flush()
			defer e.Flush()
			stdout, stderr = o, e
		}
		err := c.run(stop.ctx, args[1:], stdout, stderr)
		if ho := (*daemon.Handover)(nil); errors.As(err, &ho) {
			// A planned restart: the daemon's binary runs again in this
			// process, told whether a stop came meanwhile.
			err = ho.Exec(stop.release())
		}
		var status exitStatus
		switch {
		case err == nil:
			return 0
		case errors.As(err, &status):
			return int(status)
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintln(stderr, "taosagent "+c.name+":", err)
			return 2
		default:
			fmt.Fprintln(stderr, "taosagent "+c.name+":", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "taosagent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: taosagent [--home DIR] [--addr ADDR] COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
}

// globalFlags may also be given before the command: `taosagent --home DIR
// agents` is `taosagent agents --home DIR`. --addr, the daemon's address,
// is --listen for the commands that name it so (serve, doctor).
var globalFlags = map[string]bool{"home": true, "addr": true}

// hoistGlobals moves the global flags given before the command to just
// after it, where the command parses them with its own. With no command,
// the command is none, if not "".
func hoistGlobals(args []string, none string) ([]string, error) {
	var globals []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		a := args[0]
		if a == "-h" || a == "--help" || a == "-help" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !globalFlags[name] {
			return nil, fmt.Errorf("flag %s goes after the command; before it only --home and --addr", a)
		}
		args = args[1:]
		if !hasValue {
			if len(args) == 0 {
				return nil, fmt.Errorf("flag --%s needs a value", name)
			}
			value, args = args[0], args[1:]
		}
		globals = append(globals, "--"+name+"="+value)
	}
	if len(args) == 0 {
		if none == "" {
			return nil, nil
		}
		args = []string{none}
	}
	return append(append([]string{args[0]}, globals...), args[1:]...), nil
}

// defaultHome is $TAOSAGENT_HOME, else $XDG_DATA_HOME/taosagent, else
// ~/.local/share/taosagent.
func defaultHome() string {
	if h := os.Getenv("TAOSAGENT_HOME"); h != "" {
		return h
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "taosagent")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "taosagent")
}

// flags makes a FlagSet whose errors come back as errUsage.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("taosagent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if listen := fs.Lookup("listen"); listen != nil && fs.Lookup("addr") == nil {
		fs.Var(listen.Value, "addr", "the same as --listen")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// A relative --home is taken from the working directory now: the
	// daemon hands paths under it to opencode and its sandbox, which run
	// elsewhere. (install's --home is inside its --root.)
	if f := fs.Lookup("home"); f != nil && fs.Name() != "taosagent install" && f.Value.String() != "" {
		abs, err := filepath.Abs(f.Value.String())
		if err != nil {
			return fmt.Errorf("%w: --home: %v", errUsage, err)
		}
		f.Value.Set(abs)
	}
	return nil
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintf(stdout, "taosagent %s (opencode %s)\n", Version, opencodeVersion())
	return nil
}
