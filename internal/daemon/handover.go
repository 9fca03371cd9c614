package daemon

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A planned restart (SIGHUP: `systemctl reload taosagent`, and `taosagent
// install` of a new binary) hands the daemon over to its binary as it is
// now, in place: no turn starts any more (inputs are accepted and queued),
// the running ones are let end, the instances are left running, the event
// log is closed, and the process execs the binary again with the same pid,
// its listening sockets open across the exec. Connections that arrive
// meanwhile wait in the sockets' backlog, none is refused; event streams
// end and their clients resume by cursor; the new program adopts the
// instances (supervisor.Adopt) and runs the queued inputs on them.

// listenFDsEnv passes the listening sockets across the exec: "ADDR=FD"
// pairs, separated by ";", ADDR as the daemon was configured with it.
const listenFDsEnv = "TAOSAGENT_LISTEN_FDS"

// Handover is what Run returns when it handed over: the caller execs the
// daemon's binary again (Exec), after everything Run made has closed.
type Handover struct {
	files map[string]*os.File // by configured address
}

func (h *Handover) Error() string { return "taosagent: handed over to a new daemon" }

// listen listens on addr, or takes the socket an earlier program of this
// process handed over for it.
func listen(addr string) (*net.TCPListener, error) {
	for _, kv := range strings.Split(os.Getenv(listenFDsEnv), ";") {
		a, fdStr, ok := strings.Cut(kv, "=")
		if !ok || a != addr {
			continue
		}
		fd, err := strconv.Atoi(fdStr)
		if err != nil {
			break
		}
		f := os.NewFile(uintptr(fd), "listener "+addr)
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds a duplicate
		if err != nil {
			return nil, fmt.Errorf("the listener handed over for %s: %w", addr, err)
		}
		if tl, ok := ln.(*net.TCPListener); ok {
			return tl, nil
		}
		ln.Close()
		return nil, fmt.Errorf("the listener handed over for %s is not TCP", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// keep adds ln, listening for addr, to what is handed over: a duplicate of
// its socket stays open when ln closes.
func (h *Handover) keep(addr string, ln *net.TCPListener) error {
	f, err := ln.File()
	if err != nil {
		return err
	}
	if h.files == nil {
		h.files = map[string]*os.File{}
	}
	h.files[addr] = f
	return nil
}

// Exec replaces the program with the daemon's binary, same arguments,
// the listening sockets kept open. It returns only on failure.
func (h *Handover) Exec() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// A binary replaced since it started (an upgrade) reads as deleted:
	// the path names the new one.
	exe = strings.TrimSuffix(exe, " (deleted)")
	var pairs []string
	for addr, f := range h.files {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			return err
		}
		pairs = append(pairs, fmt.Sprintf("%s=%d", addr, f.Fd()))
	}
	env := []string{listenFDsEnv + "=" + strings.Join(pairs, ";")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, listenFDsEnv+"=") {
			env = append(env, kv)
		}
	}
	// A second SIGHUP that comes before the new program listens for it
	// would end it (the default action): ignored across the exec (the Go
	// runtime keeps an inherited SIG_IGN of SIGHUP until Notify), it is
	// lost instead, and the new program runs.
	signal.Ignore(syscall.SIGHUP)
	err = syscall.Exec(exe, os.Args, env)
	signal.Reset(syscall.SIGHUP)
	return err
}
