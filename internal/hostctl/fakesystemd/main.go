// Command fakesystemd stands in for systemctl and journalctl on machines
// without systemd (CI, containers), for tests only. Run it as "systemctl"
// or "journalctl" (a link of that name, or the first argument). Its state
// lives in $FAKE_SYSTEMD_DIR:
//
//	units/UNIT     JSON {"active","sub","pid","restarts","fail_restart"}; absent: not found
//	journal/UNIT   the unit's journal, one line per entry
//	calls          every invocation, one line each (what tests assert on)
//
// It answers only what taosagent's systemd backend asks, in systemd's own
// output formats.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type unit struct {
	Active      string `json:"active"`
	Sub         string `json:"sub"`
	PID         int    `json:"pid"`
	Restarts    int    `json:"restarts"`
	Since       string `json:"since,omitempty"`
	FailRestart bool   `json:"fail_restart,omitempty"`
	Enabled     bool   `json:"enabled,omitempty"`
	// Exec, when set, is run (detached) at each start: the unit's process.
	Exec     []string `json:"exec,omitempty"`
	WorkDir  string   `json:"workdir,omitempty"`   // its WorkingDirectory
	EnvFiles []string `json:"env_files,omitempty"` // its EnvironmentFile lines
	// Reload: the unit file has ExecReload=/bin/kill -HUP $MAINPID, the
	// one reload the stand-in speaks.
	Reload bool `json:"reload,omitempty"`
	Proc   int  `json:"proc,omitempty"` // the process Exec started
}

func main() {
	dir := os.Getenv("FAKE_SYSTEMD_DIR")
	if dir == "" {
		fmt.Fprintln(os.Stderr, "fakesystemd: FAKE_SYSTEMD_DIR is not set")
		os.Exit(1)
	}
	args := os.Args[1:]
	name := filepath.Base(os.Args[0])
	if name != "systemctl" && name != "journalctl" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		fmt.Fprintln(f, name+" "+strings.Join(args, " "))
		f.Close()
	}
	switch name {
	case "systemctl":
		os.Exit(systemctl(dir, args))
	case "journalctl":
		os.Exit(journalctl(dir, args))
	}
	fmt.Fprintln(os.Stderr, "fakesystemd: run as systemctl or journalctl")
	os.Exit(1)
}

func load(dir, name string) (unit, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "units", name))
	if err != nil {
		return unit{}, false
	}
	var u unit
	if json.Unmarshal(b, &u) != nil {
		return unit{}, false
	}
	return u, true
}

func save(dir, name string, u unit) {
	b, _ := json.Marshal(u)
	os.WriteFile(filepath.Join(dir, "units", name), b, 0o600)
}

func journal(dir, name, line string) {
	os.MkdirAll(filepath.Join(dir, "journal"), 0o700)
	f, err := os.OpenFile(filepath.Join(dir, "journal", name), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		fmt.Fprintf(f, "%s fakehost systemd[1]: %s\n", time.Now().UTC().Format("2006-01-02T15:04:05+0000"), line)
		f.Close()
	}
}

// unitFile reads unit from the directories of $FAKE_SYSTEMD_UNIT_PATH.
func unitFile(name string) (unit, bool) {
	for _, d := range filepath.SplitList(os.Getenv("FAKE_SYSTEMD_UNIT_PATH")) {
		b, err := os.ReadFile(filepath.Join(d, name))
		if err != nil {
			continue
		}
		u := unit{Active: "inactive", Sub: "dead"}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				u.Exec = strings.Fields(v)
			}
			if strings.TrimSpace(l) == "ExecReload=/bin/kill -HUP $MAINPID" {
				u.Reload = true
			}
		}
		return u, true
	}
	return unit{}, false
}

// systemctl is long: one case per systemctl verb the stand-in speaks.
func systemctl(dir string, args []string) int {
	if len(args) > 0 && args[0] == "--user" {
		args = args[1:]
	}
	if len(args) == 1 && args[0] == "daemon-reload" {
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "Too few arguments.")
		return 1
	}
	verb, name := args[0], args[1]
	u, ok := load(dir, name)
	switch verb {
	case "show":
		if !ok {
			fmt.Printf("Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\nActiveEnterTimestamp=\nMemoryCurrent=[not set]\n", name)
			return 0
		}
		fmt.Printf("Id=%s\nLoadState=loaded\nActiveState=%s\nSubState=%s\nMainPID=%d\nNRestarts=%d\nActiveEnterTimestamp=%s\nMemoryCurrent=%d\n",
			name, u.Active, u.Sub, u.PID, u.Restarts, u.Since, 12<<20)
		fmt.Printf("ControlGroup=/system.slice/%s\nWorkingDirectory=%s\n", name, u.WorkDir)
		for _, f := range u.EnvFiles {
			fmt.Printf("EnvironmentFiles=%s (ignore_errors=no)\n", f)
		}
		if len(u.Exec) > 0 {
			fmt.Printf("ExecStart={ path=%s ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=%d ; code=(null) ; status=0/0 }\n",
				u.Exec[0], strings.Join(u.Exec, " "), u.Proc)
		}
		return 0
	case "enable":
		if !ok {
			// A unit installed since: found in $FAKE_SYSTEMD_UNIT_PATH,
			// its ExecStart becomes the process a start runs.
			var found bool
			u, found = unitFile(name)
			if !found {
				fmt.Fprintf(os.Stderr, "Failed to enable unit: Unit file %s does not exist.\n", name)
				return 1
			}
		}
		u.Enabled = true
		save(dir, name, u)
		return 0
	case "stop":
		if ok {
			if u.Proc > 1 {
				syscall.Kill(u.Proc, syscall.SIGTERM)
				for i := 0; i < 300 && alive(u.Proc); i++ {
					time.Sleep(100 * time.Millisecond) // as systemd waits for the process to end
				}
			}
			u.Active, u.Sub, u.PID, u.Proc = "inactive", "dead", 0, 0
			save(dir, name, u)
			journal(dir, name, "Stopped "+name+".")
		}
		return 0
	case "reload":
		if !ok || u.Active != "active" {
			fmt.Fprintf(os.Stderr, "Job for %s failed: the unit is not active.\n", name)
			return 1
		}
		if !u.Reload || u.Proc <= 1 {
			fmt.Fprintf(os.Stderr, "Failed to reload %s: Job type reload is not applicable for unit %s.\n", name, name)
			return 1
		}
		syscall.Kill(u.Proc, syscall.SIGHUP)
		journal(dir, name, "Reloading "+name+"...")
		return 0
	case "disable":
		if ok {
			u.Enabled = false
			save(dir, name, u)
		}
		return 0
	case "start", "restart":
		if !ok {
			fmt.Fprintf(os.Stderr, "Failed to restart %s: Unit %s not found.\n", name, name)
			return 5
		}
		if u.FailRestart {
			u.Active, u.Sub, u.PID = "failed", "failed", 0
			save(dir, name, u)
			journal(dir, name, name+": Failed with result 'exit-code'.")
			fmt.Fprintf(os.Stderr, "Job for %s failed because the control process exited with error code.\nSee \"systemctl status %s\" and \"journalctl -xeu %s\" for details.\n", name, name, name)
			return 1
		}
		journal(dir, name, "Stopping "+name+"...")
		u.Active, u.Sub, u.PID = "active", "running", u.PID+1
		if len(u.Exec) > 0 {
			if u.Proc > 1 && runs(u.Proc, u.Exec[0]) {
				syscall.Kill(u.Proc, syscall.SIGTERM) // the unit's previous process, ours
			}
			cmd := exec.Command(u.Exec[0], u.Exec[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if lf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				cmd.Stdout, cmd.Stderr = lf, lf
			}
			if err := cmd.Start(); err == nil {
				u.PID, u.Proc = cmd.Process.Pid, cmd.Process.Pid
			}
		}
		u.Since = time.Now().UTC().Format("Mon 2006-01-02 15:04:05 UTC")
		save(dir, name, u)
		journal(dir, name, "Started "+name+".")
		return 0
	}
	fmt.Fprintf(os.Stderr, "Unknown command verb '%s'.\n", verb)
	return 1
}

// alive reports whether process pid runs (a zombie no longer does).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func journalctl(dir string, args []string) int {
	var name, grep string
	n := 10
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-u":
			i++
			name = args[i]
		case "-n":
			i++
			n, _ = strconv.Atoi(args[i])
		case "--grep":
			i++
			grep = strings.ReplaceAll(args[i], `\`, "")
		case "--since", "-o":
			i++
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "journal", name))
	if err != nil {
		fmt.Println("-- No entries --")
		return 0
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if grep == "" || strings.Contains(l, grep) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	return 0
}

// runs reports whether pid still runs prog (a pid is reused once its
// process is gone: a unit whose process exited must not kill a stranger).
func runs(pid int, prog string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return err == nil && argv0 == prog
}
