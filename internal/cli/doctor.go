package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
)

// systemdFlags adds --systemctl and --journalctl to fs.
func systemdFlags(fs *flag.FlagSet) func() hostctl.Systemd {
	systemctl := fs.String("systemctl", "systemctl", "the systemctl to run")
	journalctl := fs.String("journalctl", "journalctl", "the journalctl to run")
	return func() hostctl.Systemd {
		s := hostctl.Systemd{Systemctl: *systemctl, Journalctl: *journalctl}
		if *systemctl != "systemctl" {
			s.Env = standInEnv()
		}
		return s
	}
}

// standInEnv passes the systemd stand-in of the tests its settings
// (FAKE_SYSTEMD_*), when another systemctl than the system's is named.
func standInEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FAKE_SYSTEMD_") {
			env = append(env, kv)
		}
	}
	return env
}

// doctorEnv builds what the checks look at from the common flags.
func doctorFlags(fs *flag.FlagSet) func(ctx context.Context) *doctor.Env {
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	listen := fs.String("listen", "", "the daemon's address (default: what the running daemon recorded, else TAOSAGENT_LISTEN or 127.0.0.1:7077)")
	db := fs.String("db", "", "the PostgreSQL database the daemon keeps its store in, if it does (serve --db; env TAOSAGENT_DB)")
	sysd := systemdFlags(fs)
	return func(ctx context.Context) *doctor.Env {
		e := newDoctorEnv(*dir, *listen, sysd())
		if e.Postgres = *db; e.Postgres == "" {
			e.Postgres = os.Getenv("TAOSAGENT_DB")
		}
		return e
	}
}

// newDoctorEnv is what the checks look at for the home dir: the daemon's
// address is listen, else what the running daemon recorded, else
// TAOSAGENT_LISTEN, else what the last daemon recorded, else the default.
func newDoctorEnv(dir, listen string, sysd hostctl.Systemd) *doctor.Env {
	h := home.Home{Dir: dir}
	addr := listen
	rec, recorded := h.Recorded()
	if addr == "" && recorded && h.Running() {
		addr = rec.Addr
	}
	if addr == "" && os.Getenv("TAOSAGENT_LISTEN") == "" && recorded {
		addr = rec.Addr
	}
	if addr == "" {
		addr = defaultListen()
	}
	e := &doctor.Env{Home: h, Addr: addr, Systemd: sysd}
	e.Opencode, e.OpencodeVersion, e.OpencodeStamp, e.OpencodeErr = findOpencode(h.Dir)
	if e.OpencodeErr != nil {
		e.Opencode = ""
	}
	e.Self, _ = os.Executable()
	return e
}

// exitFor is doctor's exit status: 0 when nothing is at or above failOn,
// else 1 for warnings, 2 for errors or worse.
func exitFor(fs []doctor.Finding, failOn doctor.Severity) error {
	w := doctor.Worst(fs)
	switch {
	case w < failOn || w == doctor.OK:
		return nil
	case w == doctor.Warning:
		return exitStatus(1)
	}
	return exitStatus(2)
}

func printFindings(w io.Writer, fs []doctor.Finding) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tCHECK\tSUMMARY\tFIX")
	marks := map[doctor.Severity]string{doctor.OK: "ok", doctor.Warning: "WARN", doctor.Error: "ERROR", doctor.Critical: "CRIT"}
	for _, f := range fs {
		f.Summary, f.Details = oneLine(f.Summary), oneLine(f.Details)
		fix := "-"
		if f.Recipe != "" {
			fix = "taosagent fix " + f.Recipe
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", marks[f.Severity], f.ID, f.Summary, fix)
		if f.Details != "" && f.Severity > doctor.OK {
			fmt.Fprintf(tw, "\t\t  %s\t\n", f.Details)
		}
	}
	tw.Flush()
}

// oneLine folds a multi-line text (a tool's error) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// runDoctor runs the checks: no daemon, no model, read-only.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("doctor", stderr)
	mk := doctorFlags(fs)
	asJSON := fs.Bool("json", false, `print {"findings":[{"id","severity","summary","details","recipe"}]}`)
	list := fs.Bool("list", false, "list the checks and exit")
	failOn := fs.String("fail-on", "warning", "the lowest severity that makes the exit status non-zero (warning, error, critical)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: taosagent doctor [flags] [CHECK…]\n\nExit status: 0 all ok, 1 warnings, 2 errors or worse (--fail-on moves the threshold).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	threshold, err := doctor.ParseSeverity(*failOn)
	if err != nil || threshold == doctor.OK {
		return fmt.Errorf("%w: --fail-on: want warning, error or critical", errUsage)
	}
	if *list {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, c := range doctor.Checks() {
			fmt.Fprintf(tw, "%s\t%s\n", c.ID, c.Title)
		}
		return tw.Flush()
	}
	e := mk(ctx)
	defer e.Close()
	findings, err := doctor.Run(ctx, e, fs.Args()...)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(map[string]any{"findings": findings}); err != nil {
			return err
		}
	} else {
		printFindings(stdout, findings)
	}
	return exitFor(findings, threshold)
}

// canFix is the gate of fix: the caller can read the home's token (the
// install's owner, or root), or, before the first start, owns the home.
func canFix(h home.Home) error {
	if _, err := h.Token(); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("taosagent fix needs the home's token, and %v: run it as the install's owner or root", err)
	}
	st, err := os.Stat(h.Dir)
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) == os.Getuid() || os.Getuid() == 0) {
		return nil
	}
	return fmt.Errorf("taosagent fix: %s is not yours: run it as the install's owner or root", h.Dir)
}

// runFix runs recipes for what doctor found.
//
// It is long: the recovery's steps in order (diagnose, confirm, apply,
// audit), with the daemon down.
func runFix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("fix", stderr)
	mk := doctorFlags(fs)
	dry := fs.Bool("dry-run", false, "print what would be done and change nothing")
	yes := fs.Bool("yes", false, "answer yes to every destructive recipe (for scripts)")
	all := fs.Bool("all", false, "run every recipe doctor calls for")
	list := fs.Bool("list", false, "list the recipes and exit")
	unitDir := fs.String("unit-dir", "", "where install-service writes the unit (default: the system's, or the user's)")
	chat := fs.Bool("chat", false, "talk it through with the recovery assistant: a confined opencode whose only tools are doctor's checks and these recipes")
	var m chatModel
	fs.StringVar(&m.URL, "model-url", "", "with --chat: an OpenAI-compatible base URL, reached directly (default: a configured provider's own)")
	fs.StringVar(&m.Key, "model-key", "", "with --chat: its key (env TAOSAGENT_MODEL_KEY)")
	fs.StringVar(&m.ID, "model", "", "with --chat: the model id")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if *list {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, r := range doctor.Recipes() {
			d := ""
			if r.Destructive {
				d = "asks first"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Summary, d)
		}
		return tw.Flush()
	}
	e := mk(ctx)
	defer e.Close()
	e.UnitDir = *unitDir
	if err := canFix(e.Home); err != nil {
		return err
	}
	if *chat {
		if m.Key == "" {
			m.Key = os.Getenv("TAOSAGENT_MODEL_KEY")
		}
		if m.URL != "" && m.ID == "" {
			return fmt.Errorf("%w: --model-url needs --model", errUsage)
		}
		return runFixChat(ctx, e, m, os.Stdin, stdout, stderr)
	}
	recipes := fs.Args()
	if len(recipes) == 0 {
		findings, _ := doctor.Run(ctx, e)
		recipes = doctor.Planned(findings)
		if len(recipes) == 0 {
			fmt.Fprintln(stdout, "doctor finds nothing to fix.")
			return nil
		}
		if !*all && !*dry {
			printFindings(stdout, findings)
			fmt.Fprintf(stdout, "\nTo fix: taosagent fix %s   (or --all; --dry-run shows what it would do)\n", strings.Join(recipes, " "))
			return exitFor(findings, doctor.Warning)
		}
	}
	for _, id := range recipes {
		if _, _, ok := doctor.Lookup(id); !ok {
			return fmt.Errorf("%w: unknown recipe %q (taosagent fix --list)", errUsage, id)
		}
	}
	in := bufio.NewReader(os.Stdin)
	interactive := isTerminal(os.Stdin)
	f := &doctor.Fixer{Env: e,
		Step: func(recipe, step string) { fmt.Fprintf(stdout, "%s: %s\n", recipe, step) },
		Confirm: func(r doctor.Recipe, arg string, plan []string) bool {
			if *yes {
				return true
			}
			if !interactive {
				fmt.Fprintf(stderr, "%s changes things (%s): run it with --yes, or at a terminal to be asked\n", r.ID, strings.Join(plan, "; "))
				return false
			}
			return confirm(in, stdout, r.ID+" will:", plan)
		}}
	var failed []string
	for _, id := range recipes {
		if err := f.Apply(ctx, id, *dry); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", id, err)
			failed = append(failed, id)
		}
	}
	if *dry {
		return nil
	}
	// Check again, afresh: what is left?
	e2 := e.Fresh()
	defer e2.Close()
	findings, _ := doctor.Run(ctx, e2)
	left := 0
	for _, fd := range findings {
		if fd.Severity > doctor.OK {
			left++
		}
	}
	if left == 0 {
		fmt.Fprintln(stdout, "doctor: all checks pass.")
	} else {
		fmt.Fprintln(stdout, "\ndoctor, after the fixes:")
		printFindings(stdout, findings)
	}
	if len(failed) > 0 {
		return exitStatus(2)
	}
	return exitFor(findings, doctor.Error)
}

// confirm shows a recipe's plan to the person at the terminal and asks;
// only "y" or "yes" goes ahead.
func confirm(in *bufio.Reader, w io.Writer, title string, plan []string) bool {
	fmt.Fprintln(w, title)
	for _, p := range plan {
		fmt.Fprintln(w, "  -", p)
	}
	fmt.Fprint(w, "Go ahead? [y/N] ")
	line, _ := in.ReadString('\n')
	a := strings.TrimSpace(line)
	return strings.EqualFold(a, "y") || strings.EqualFold(a, "yes")
}

// runInstallService writes and enables taosagent's systemd unit.
func runInstallService(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("install-service", stderr)
	mk := doctorFlags(fs)
	user := fs.Bool("user", false, "a unit of the user's own systemd (systemctl --user)")
	print := fs.Bool("print", false, "print the unit and write nothing")
	unitDir := fs.String("unit-dir", "", "where to write the unit (default: /etc/systemd/system, or the user's with --user)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	e := mk(ctx)
	defer e.Close()
	if *print {
		fmt.Fprint(stdout, doctor.Unit(e.Self, e.Home.Dir, e.Addr, *user))
		return nil
	}
	dir := *unitDir
	if dir == "" {
		dir = doctor.UnitDir(*user)
	}
	return e.InstallUnit(ctx, dir, *user, func(s string) { fmt.Fprintln(stdout, s) })
}
