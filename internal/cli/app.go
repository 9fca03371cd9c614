package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/client"
)

// runApp: taosagent app new NAME [--dir DIR] | app validate PATH [--json]
// [--against OLD] [--offline] | app package DIR [--out FILE].
//
// validate exits 0 when the package passes and 1 when it has an error
// finding; package refuses (exit 1, with the findings) a package that
// does not pass.
func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want app new NAME, validate PATH, package DIR, submit DIR|FILE, approve|reject SHA256 or list", errUsage)
	}
	switch args[0] {
	case "new":
		return appNew(args[1:], stdout, stderr)
	case "validate":
		return appValidate(ctx, args[1:], stdout, stderr)
	case "package":
		return appPackage(ctx, args[1:], stdout, stderr)
	case "submit":
		return appSubmit(ctx, args[1:], stdout, stderr)
	case api.AppApprove, api.AppReject:
		return appDecide(ctx, args[0], args[1:], stdout, stderr)
	case "list":
		return appList(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("%w: unknown app command %q (new, validate, package, submit, approve, reject, list)", errUsage, args[0])
}

func appNew(args []string, stdout, stderr io.Writer) error {
	fs := flags("app new", stderr)
	dir := fs.String("dir", "", "directory to create (default: the app's id, in the current directory)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one NAME (quote a name with spaces)", errUsage)
	}
	name := fs.Arg(0)
	target := *dir
	if target == "" {
		target = filepath.Base(name)
	}
	m, err := appkit.New(target, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (%s %s) in %s\n", m.Name, m.ID, m.Version, target)
	return nil
}

func appValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("app validate", stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	against := fs.String("against", "", "previous version (.taosapp or directory): report capabilities and hosts added since")
	offline := fs.Bool("offline", false, "judge host names by spelling only; do not resolve them")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one PATH (a .taosapp or a directory)", errUsage)
	}
	rep, err := appkit.Validate(ctx, fs.Arg(0), appkit.Options{Against: *against, NoResolve: *offline})
	if err != nil {
		return err
	}
	printReport(stdout, rep, *asJSON)
	if !rep.OK {
		return exitStatus(1)
	}
	return nil
}

func appPackage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("app package", stderr)
	out := fs.String("out", "", "archive to write (default: ID-VERSION.taosapp in the current directory)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	offline := fs.Bool("offline", false, "judge host names by spelling only")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one DIR", errUsage)
	}
	rep, err := appkit.Package(ctx, fs.Arg(0), *out, appkit.Options{NoResolve: *offline})
	if rep != nil {
		printReport(stdout, rep, *asJSON)
	}
	if err != nil {
		if rep != nil {
			return exitStatus(1)
		}
		return err
	}
	return nil
}

// appSubmit submits a package (a directory is packaged first) to the
// daemon's gate and prints its pre-gate report; exit 1 when it is refused.
func appSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("app submit", stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the record as JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one DIR or .taosapp FILE", errUsage)
	}
	src := fs.Arg(0)
	if fi, err := os.Stat(src); err != nil {
		return err
	} else if fi.IsDir() {
		tmp, err := os.MkdirTemp("", "taosagent-submit-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out := filepath.Join(tmp, "app.taosapp")
		// Packaged as it is; the gate decides (and refuses what fails).
		if _, err := appkit.Package(ctx, src, out, appkit.Options{NoResolve: true}); err != nil {
			return fmt.Errorf("package %s: %w (taosagent app validate %s shows why)", src, err, src)
		}
		src = out
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	a, err := c.SubmitApp(ctx, data)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(a)
	} else {
		var rep appkit.Report
		json.Unmarshal(a.Report, &rep)
		fmt.Fprintf(stdout, "%s %s %s: %s\n", a.ID, a.Version, a.SHA256, a.State)
		io.WriteString(stdout, rep.Text())
		if a.State == api.AppPending {
			fmt.Fprintf(stdout, "a person approves it with: taosagent app approve %s\n", a.SHA256)
		}
	}
	if a.State == api.AppRefused {
		return exitStatus(1)
	}
	return nil
}

// appDecide approves or rejects a pending package, as a person.
func appDecide(ctx context.Context, decision string, args []string, stdout, stderr io.Writer) error {
	fs := flags("app "+decision, stderr)
	mk := clientFlags(fs)
	msg := fs.String("message", "", "why (kept with the decision)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one SHA256", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	a, err := c.DecideApp(ctx, fs.Arg(0), decision, *msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s %s: %s by %s\n", a.ID, a.Version, a.SHA256, a.State, a.DecidedBy)
	return nil
}

// appList lists the packages submitted to the gate.
func appList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return list(ctx, "app list", args, stdout, stderr, (*client.Client).Apps, "APP\tVERSION\tSTATE\tSHA256\tSUBMITTED BY",
		func(a client.App) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", a.ID, a.Version, a.State, a.SHA256, a.SubmittedBy)
		})
}

func printReport(w io.Writer, rep *appkit.Report, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	io.WriteString(w, rep.Text())
}

// interleave moves flags after positional arguments to the front, so
// `app validate PATH --json` works as users type it. "--" ends flags.
func interleave(fs *flag.FlagSet, args []string) []string {
	var fl, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			fl = append(fl, a)
			if !strings.Contains(a, "=") && takesValue(fs, a) && i+1 < len(args) {
				i++
				fl = append(fl, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(append(fl, "--"), pos...)
}

// takesValue reports whether flag (as written: -name or --name) is one of
// fs's that takes a value: every flag but the booleans.
func takesValue(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(strings.TrimLeft(name, "-"))
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}
