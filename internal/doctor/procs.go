package doctor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a process as /proc shows it.
type Process struct {
	PID     int
	Name    string // comm
	Exe     string
	Cmdline []string
}

func (p Process) String() string {
	return fmt.Sprintf("%s (pid %d: %s)", p.Name, p.PID, strings.Join(p.Cmdline, " "))
}

// readProcess reads pid's name, executable and command line.
func readProcess(pid int) (Process, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil {
		return Process{}, false
	}
	p := Process{PID: pid, Name: strings.TrimSpace(string(comm))}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		for _, a := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
			p.Cmdline = append(p.Cmdline, string(a))
		}
	}
	return p, true
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// Listener finds the process listening on TCP port (IPv4 or IPv6); ok is
// false when nothing listens. A listener whose process cannot be seen
// (another user's, without privilege) has PID 0.
func Listener(port int) (Process, bool) {
	p, ok := Listeners(port)[port]
	return p, ok
}

// Listeners finds the processes listening on the TCP ports, in one pass
// over /proc: the ports nothing listens on are absent.
func Listeners(ports ...int) map[int]Process {
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	inodes := map[string]int{} // a listening socket's inode: its port
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && want[int(p)] {
				inodes[fl[9]] = int(p)
			}
		}
	}
	out := map[int]Process{}
	if len(inodes) == 0 {
		return out
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			port, ok := inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]
			if _, seen := out[port]; ok && !seen {
				if p, ok := readProcess(pid); ok {
					out[port] = p
				}
			}
		}
	}
	for _, port := range inodes {
		if _, seen := out[port]; !seen {
			out[port] = Process{Name: "an unknown process"}
		}
	}
	return out
}

// isDaemonOf reports whether p is a `taosagent serve` of home dir.
func isDaemonOf(p Process, dir string) bool {
	if len(p.Cmdline) < 2 || filepath.Base(p.Cmdline[0]) != "taosagent" && !strings.HasSuffix(p.Exe, "/taosagent") {
		return false
	}
	if !containsArg(p.Cmdline, "serve") {
		return false
	}
	h := homeArg(p)
	return h != "" && filepath.Clean(h) == filepath.Clean(dir)
}

func containsArg(args []string, a string) bool {
	for _, x := range args[1:] {
		if x == a {
			return true
		}
	}
	return false
}

// homeArg is the --home a taosagent process was given, else its
// TAOSAGENT_HOME.
func homeArg(p Process) string {
	for i, a := range p.Cmdline {
		if (a == "--home" || a == "-home") && i+1 < len(p.Cmdline) {
			return p.Cmdline[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--home="); ok {
			return v
		}
	}
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "environ")); err == nil {
		for _, kv := range bytes.Split(b, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("TAOSAGENT_HOME=")); ok {
				return string(v)
			}
		}
	}
	return ""
}
