package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

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

// stopEnv tells the next program that a stop (SIGTERM, SIGINT) came as
// this one handed over: it takes over the instances, then stops them.
const stopEnv = "TAOSAGENT_HANDOVER_STOP"

// stopAtOnce is a channel closed when stopping, else nil (never ready).
func stopAtOnce(stopping bool) <-chan struct{} {
	if !stopping {
		return nil
	}
	c := make(chan struct{})
	close(c)
	return c
}

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
//
// The caller stops taking SIGINT and SIGTERM first, and says whether one
// came (stopping): the new program then stops, once it has taken over the
// instances. One that comes later takes its default action and ends the
// process (the instances stay, and the next start adopts them); none is
// lost, as one taken by this program and never acted on would be.
// SIGHUP is ignored since the hand-over began (ignoreHangups).
func (h *Handover) Exec(stopping bool) error {
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
	if stopping {
		env = append(env, stopEnv+"=1")
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, listenFDsEnv+"=") && !strings.HasPrefix(kv, stopEnv+"=") {
			env = append(env, kv)
		}
	}
	return syscall.Exec(exe, os.Args, env)
}

// ignoreHangups has the kernel discard SIGHUP from now on and across the
// exec: a hand-over has begun, and a SIGHUP that comes before the next
// program listens for it would end that program (its default action);
// the Go runtime keeps an inherited SIG_IGN of SIGHUP until Notify.
//
// Not signal.Ignore: it stops the runtime's handling a moment before it
// sets SIG_IGN, and a SIGHUP in that moment takes the default action (a
// burst of them ended the daemon 1 time in 15 here). Nor signal.Stop
// later: SIGHUP is then fatal until the exec. The runtime still counts
// SIGHUP as its own; the program execs or ends.
func ignoreHangups() error {
	// The kernel's struct sigaction: handler, flags, restorer, mask.
	act := [4]uintptr{1} // SIG_IGN
	if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGHUP), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); errno != 0 {
		return errno
	}
	return nil
}
