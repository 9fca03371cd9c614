package hostctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Systemd reaches systemd through its own commands. The zero value uses
// systemctl and journalctl from PATH; tests point it at a stand-in.
type Systemd struct {
	Systemctl  string
	Journalctl string
	Timeout    time.Duration // per command; default 30 s
	Env        []string      // added to the commands' small, fixed environment
}

// UnitStatus is what systemd says of a unit.
type UnitStatus struct {
	Unit        string    `json:"unit"`
	LoadState   string    `json:"load_state"`   // loaded, not-found, ...
	ActiveState string    `json:"active_state"` // active, inactive, failed, activating, ...
	SubState    string    `json:"sub_state"`    // running, dead, exited, ...
	MainPID     int       `json:"main_pid,omitempty"`
	Restarts    int       `json:"restarts"`
	Since       time.Time `json:"since,omitzero"`
	MemoryBytes int64     `json:"memory_bytes,omitempty"`
	// ControlGroup is the unit's cgroup ("/system.slice/NAME.service"):
	// its processes, the main one and any it left.
	ControlGroup string `json:"control_group,omitempty"`
	// ExecPath is the program its ExecStart runs, and ExecArgv its
	// command line as systemd shows it (the arguments joined by spaces).
	ExecPath string `json:"exec_path,omitempty"`
	ExecArgv string `json:"exec_argv,omitempty"`
	// WorkingDirectory and EnvironmentFiles are the unit's settings of
	// those names: where discovery looks for what the service reads.
	WorkingDirectory string   `json:"working_directory,omitempty"`
	EnvironmentFiles []string `json:"environment_files,omitempty"`
}

var showProps = "Id,LoadState,ActiveState,SubState,MainPID,NRestarts,ActiveEnterTimestamp,MemoryCurrent,ControlGroup,ExecStart,WorkingDirectory,EnvironmentFiles"

func (s Systemd) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	t := s.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}, s.Env...)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 500 {
			msg = msg[:500]
		}
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s is not installed: this host has no systemd", bin)
		}
		if msg == "" {
			msg = err.Error()
		}
		return out.Bytes(), fmt.Errorf("%s %s: %s", bin, args[0], msg)
	}
	return out.Bytes(), nil
}

func (s Systemd) systemctl() string {
	if s.Systemctl != "" {
		return s.Systemctl
	}
	return "systemctl"
}

func (s Systemd) journalctl() string {
	if s.Journalctl != "" {
		return s.Journalctl
	}
	return "journalctl"
}

// Status asks systemd for unit's state.
func (s Systemd) Status(ctx context.Context, unit string) (UnitStatus, error) {
	if !unitPattern.MatchString(unit) {
		return UnitStatus{}, fmt.Errorf("%q is not a service unit name", unit)
	}
	out, err := s.run(ctx, s.systemctl(), "show", unit, "--property="+showProps, "--no-pager")
	if err != nil {
		return UnitStatus{}, err
	}
	return ParseShow(out), nil
}

// ParseShow reads the KEY=VALUE lines of `systemctl show`.
func ParseShow(out []byte) UnitStatus {
	var st UnitStatus
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "Id":
			st.Unit = v
		case "LoadState":
			st.LoadState = v
		case "ActiveState":
			st.ActiveState = v
		case "SubState":
			st.SubState = v
		case "MainPID":
			st.MainPID, _ = strconv.Atoi(v)
		case "NRestarts":
			st.Restarts, _ = strconv.Atoi(v)
		case "ControlGroup":
			st.ControlGroup = v
		case "WorkingDirectory":
			st.WorkingDirectory = v
		case "EnvironmentFiles":
			// "/etc/x.env (ignore_errors=no)", a line each
			if f, _, _ := strings.Cut(v, " ("); f != "" {
				st.EnvironmentFiles = append(st.EnvironmentFiles, f)
			}
		case "ExecStart":
			// "{ path=/usr/bin/x ; argv[]=/usr/bin/x -f ; … }"
			if _, rest, ok := strings.Cut(v, "path="); ok {
				st.ExecPath, _, _ = strings.Cut(rest, " ;")
			}
			if _, rest, ok := strings.Cut(v, "argv[]="); ok {
				st.ExecArgv, _, _ = strings.Cut(rest, " ;")
			}
		case "MemoryCurrent":
			st.MemoryBytes, _ = strconv.ParseInt(v, 10, 64) // "[not set]" stays 0
		case "ActiveEnterTimestamp":
			// "Mon 2026-11-30 18:02:11 UTC"; empty when never active.
			if f := strings.Fields(v); len(f) >= 3 {
				if t, err := time.Parse("2006-01-02 15:04:05", f[1]+" "+f[2]); err == nil {
					st.Since = t.UTC()
				}
			}
		}
	}
	return st
}

// Restart restarts unit and reports its state after.
func (s Systemd) Restart(ctx context.Context, unit string) (UnitStatus, error) {
	if !unitPattern.MatchString(unit) {
		return UnitStatus{}, fmt.Errorf("%q is not a service unit name", unit)
	}
	if _, err := s.run(ctx, s.systemctl(), "restart", unit); err != nil {
		return UnitStatus{}, err
	}
	return s.Status(ctx, unit)
}

// Reload asks unit to reload (taosagent's own: a planned restart in
// place) and reports its state after.
func (s Systemd) Reload(ctx context.Context, unit string) (UnitStatus, error) {
	if !unitPattern.MatchString(unit) {
		return UnitStatus{}, fmt.Errorf("%q is not a service unit name", unit)
	}
	if _, err := s.run(ctx, s.systemctl(), "reload", unit); err != nil {
		return UnitStatus{}, err
	}
	return s.Status(ctx, unit)
}

// Journal returns the last n lines of unit's journal since the given
// time (zero: no bound), that contain pattern ("" for all).
func (s Systemd) Journal(ctx context.Context, unit string, n int, since time.Time, pattern string) ([]string, error) {
	if !unitPattern.MatchString(unit) {
		return nil, fmt.Errorf("%q is not a service unit name", unit)
	}
	args := []string{"-u", unit, "-n", strconv.Itoa(n), "--no-pager", "-o", "short-iso"}
	if !since.IsZero() {
		args = append(args, "--since", since.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if pattern != "" {
		// journalctl's --grep is a regular expression: match literally.
		args = append(args, "--grep", regexpQuote(pattern))
	}
	out, err := s.run(ctx, s.journalctl(), args...)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, "-- ") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Start starts unit and reports its state after.
func (s Systemd) Start(ctx context.Context, unit string) (UnitStatus, error) {
	if !unitPattern.MatchString(unit) {
		return UnitStatus{}, fmt.Errorf("%q is not a service unit name", unit)
	}
	if _, err := s.run(ctx, s.systemctl(), "start", unit); err != nil {
		return UnitStatus{}, err
	}
	return s.Status(ctx, unit)
}

// Enable reloads systemd's units and enables unit (user: in the user's
// manager).
func (s Systemd) Enable(ctx context.Context, unit string, user bool) error {
	if !unitPattern.MatchString(unit) {
		return fmt.Errorf("%q is not a service unit name", unit)
	}
	scope := []string{}
	if user {
		scope = []string{"--user"}
	}
	if _, err := s.run(ctx, s.systemctl(), append(scope, "daemon-reload")...); err != nil {
		return err
	}
	_, err := s.run(ctx, s.systemctl(), append(scope, "enable", unit)...)
	return err
}

// Stop stops unit.
func (s Systemd) Stop(ctx context.Context, unit string) error {
	if !unitPattern.MatchString(unit) {
		return fmt.Errorf("%q is not a service unit name", unit)
	}
	_, err := s.run(ctx, s.systemctl(), "stop", unit)
	return err
}

// Disable disables unit and reloads systemd's units (its file is gone).
func (s Systemd) Disable(ctx context.Context, unit string) error {
	if !unitPattern.MatchString(unit) {
		return fmt.Errorf("%q is not a service unit name", unit)
	}
	if _, err := s.run(ctx, s.systemctl(), "disable", unit); err != nil {
		return err
	}
	_, err := s.run(ctx, s.systemctl(), "daemon-reload")
	return err
}
