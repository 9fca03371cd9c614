package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/sandbox"
)

// runSandbox: taosagent sandbox run --workspace DIR [limits] -- CMD…
//
// The command's output is passed through (up to --output bytes of each
// stream), a summary goes to stderr, and the exit status is the command's;
// a limit hit without a failing status exits 1. With --json, one JSON
// object with the outputs and the result is printed instead.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		return fmt.Errorf("%w: want: taosagent sandbox run --workspace DIR [flags] -- CMD [ARG…]", errUsage)
	}
	fs := flags("sandbox run", stderr)
	d := sandbox.DefaultLimits()
	ws := fs.String("workspace", "", "directory mounted read-write at /workspace (required)")
	wall := fs.Duration("wall", d.Wall, "wall-clock limit")
	cpu := fs.Duration("cpu", d.CPU, "CPU-time limit")
	mem := fs.String("memory", formatSize(d.Memory), "data-memory limit (bytes, or with K, M, G)")
	procs := fs.Int("procs", d.Processes, "process limit")
	fsize := fs.String("fsize", formatSize(d.FileSize), "largest file the command may write")
	output := fs.String("output", formatSize(d.Output), "bytes kept of stdout and of stderr each")
	disk := fs.String("disk", formatSize(d.Disk), "what the run may write to its workspace in total (runs made by root)")
	tmp := fs.String("tmp", formatSize(d.Tmp), "size of the run's /tmp")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var ro multiFlag
	fs.Var(&ro, "ro", "extra host path mounted read-only (repeatable)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *ws == "" {
		return fmt.Errorf("%w: --workspace is required", errUsage)
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return fmt.Errorf("%w: no command; put it after --", errUsage)
	}
	lim := sandbox.Limits{Wall: *wall, CPU: *cpu, Processes: *procs}
	var err error
	for _, s := range []struct {
		name string
		in   string
		out  *int64
	}{{"memory", *mem, &lim.Memory}, {"fsize", *fsize, &lim.FileSize}, {"output", *output, &lim.Output},
		{"disk", *disk, &lim.Disk}, {"tmp", *tmp, &lim.Tmp}} {
		if *s.out, err = parseSize(s.in); err != nil {
			return fmt.Errorf("%w: --%s: %v", errUsage, s.name, err)
		}
	}

	res, err := sandbox.New().Run(ctx, sandbox.Spec{Workspace: *ws, Command: cmd, ReadOnly: ro, Stdin: os.Stdin, Limits: lim})
	if err != nil && res == nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			*sandbox.Result
			Stdout string `json:"stdout"`
			Stderr string `json:"stderr"`
		}{res, string(res.Stdout), string(res.Stderr)})
	} else {
		stdout.Write(res.Stdout)
		stderr.Write(res.Stderr)
		fmt.Fprintln(stderr, summary(res))
	}
	if err != nil {
		return err
	}
	switch {
	case res.ExitCode != 0:
		return exitStatus(res.ExitCode)
	case res.LimitHit != "":
		return exitStatus(1)
	}
	return nil
}

func summary(r *sandbox.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sandbox: exit %d", r.ExitCode)
	if r.Signal != "" {
		fmt.Fprintf(&b, " (%s)", r.Signal)
	}
	if r.LimitHit != "" {
		fmt.Fprintf(&b, ", %s limit hit", r.LimitHit)
	}
	fmt.Fprintf(&b, " after %v", r.Duration.Round(time.Millisecond))
	if r.StdoutDropped+r.StderrDropped > 0 {
		fmt.Fprintf(&b, "; output over the cap dropped: %d bytes of stdout, %d of stderr", r.StdoutDropped, r.StderrDropped)
	}
	if r.WorkspaceNotice != "" {
		b.WriteString("; " + r.WorkspaceNotice)
	}
	return b.String()
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseSize reads a byte count: 1048576, 1024K, 512M, 4G (powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult, s = 1<<10, s[:n-1]
		case 'M':
			mult, s = 1<<20, s[:n-1]
		case 'G':
			mult, s = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, errors.New("want a positive size such as 1048576, 512M or 4G")
	}
	return v * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "G"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "M"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "K"
	}
	return strconv.FormatInt(n, 10)
}
