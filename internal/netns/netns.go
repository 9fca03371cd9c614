// Package netns gives a confined instance a network namespace of its own,
// holding only a loopback interface, and lets the daemon work inside it
// without routing or NAT: a socket belongs to the namespace of the thread
// that made it, so the daemon makes its door's listener (and dials the
// instance's API) on an OS thread it moves into the namespace for that one
// call and back.
//
// Making or entering a network namespace needs CAP_SYS_ADMIN: the daemon
// must be root. A namespace is named by a file (its /proc/PID/ns/net, or
// a descriptor this package holds), so a daemon that restarts can open the
// namespace of an instance it did not start (Open) and listen there again.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// NS is one network namespace, held open by a descriptor. Its methods are
// safe for concurrent use.
type NS struct {
	mu sync.Mutex
	fd int // -1 once closed
}

// New makes a network namespace with only a loopback interface, up.
func New() (*NS, error) {
	var ns *NS
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: make a network namespace: %w (the daemon must be root)", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netns: %w", err)
		}
		if err := loopbackUp(); err != nil {
			unix.Close(fd)
			return err
		}
		ns = &NS{fd: fd}
		return nil
	})
	return ns, err
}

// Open opens the network namespace path names (a /proc/PID/ns/net, or a
// bind mount of one). It fails if path is not a network namespace.
func Open(path string) (*NS, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	// NS_GET_NSTYPE names what a namespace file is.
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %s is not a network namespace", path)
	}
	return &NS{fd: fd}, nil
}

// ErrClosed: the namespace was closed.
var ErrClosed = errors.New("netns: closed")

// Do runs f on an OS thread inside the namespace. What f creates there
// (sockets, and processes it starts) belongs to the namespace; f must not
// start goroutines that expect to be inside. The thread returns to the
// daemon's namespace after f; if it cannot, it is discarded.
func (n *NS) Do(f func() error) error {
	n.mu.Lock()
	fd := n.fd
	if fd < 0 {
		n.mu.Unlock()
		return ErrClosed
	}
	// Held while f runs, so that Close cannot close fd under a setns.
	defer n.mu.Unlock()
	return onThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: enter: %w", err)
		}
		return f()
	})
}

// Listen listens on addr (a TCP address, "127.0.0.1:4000") inside the
// namespace. The listener's connections come from inside only; the
// daemon accepts and serves them anywhere.
func (n *NS) Listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// DialContext connects to addr inside the namespace.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Path is a file that names the namespace while n is open, for a process
// that should open it too (a test, a helper): /proc/PID/fd/FD.
func (n *NS) Path() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), n.fd)
}

// Close releases the descriptor. The namespace itself lives on while any
// process or socket is in it.
func (n *NS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// onThread runs f on a locked OS thread and moves the thread back into the
// network namespace it started in. A thread that cannot be moved back
// stays locked, so the runtime ends it with the goroutine.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer unix.Close(home)
		ferr := f()
		if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
			// Left locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: return to the daemon's namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// loopbackUp sets the current thread's namespace's lo up.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: loopback: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("netns: loopback: %w", err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netns: loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netns: loopback up: %w", err)
	}
	return nil
}
