package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/appkit"
)

// runApp: taosagent app new NAME [--dir DIR] | app validate PATH [--json]
// [--against OLD] [--offline] | app package DIR [--out FILE].
//
// validate exits 0 when the package passes and 1 when it has an error
// finding; package refuses (exit 1, with the findings) a package that
// does not pass.
func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want app new NAME, app validate PATH or app package DIR", errUsage)
	}
	switch args[0] {
	case "new":
		return appNew(args[1:], stdout, stderr)
	case "validate":
		return appValidate(ctx, args[1:], stdout, stderr)
	case "package":
		return appPackage(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("%w: unknown app command %q (new, validate, package)", errUsage, args[0])
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
