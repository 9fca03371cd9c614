package netns_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/netns"
)

func newNS(t *testing.T) *netns.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	n, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func echo(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q %v", b, err)
	}
}

// A namespace's loopback and the host's are apart: the daemon reaches
// either only where it chooses, and a process started inside sees only
// the namespace's.
func TestTheNamespaceHasOnlyItsOwnLoopback(t *testing.T) {
	n := newNS(t)
	inside, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, inside)
	outside, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, outside)
	ctx := context.Background()

	c, err := n.DialContext(ctx, "tcp", inside.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)
	if c, err := n.DialContext(ctx, "tcp", outside.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the host's loopback listener was reached from inside the namespace")
	}
	// The daemon's own threads stay in the host's namespace.
	c, err = net.Dial("tcp", outside.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)

	// A process started inside: only lo, and the host's listener refused.
	var out []byte
	if err := n.Do(func() error {
		out, _ = exec.Command("/bin/bash", "-c", "awk 'NR>2{print $1}' /proc/net/dev; exec 3<>/dev/tcp/127.0.0.1/"+port(outside)+" && echo reached").CombinedOutput()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "reached") || !strings.HasPrefix(s, "lo:\n/bin/bash") {
		t.Fatalf("inside the namespace: %q", s)
	}
}

// A daemon that did not make the namespace opens it by a process in it,
// and listens there again: how a restarted daemon re-attaches a door.
func TestANamespaceIsOpenedAgainByItsProcess(t *testing.T) {
	n := newNS(t)
	ln, err := n.Listen("127.0.0.1:4000")
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if err := n.Do(func() error {
		cmd = exec.Command("/bin/sleep", "60")
		return cmd.Start()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ln.Close() // the first daemon's door is gone

	again, err := netns.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	ln2, err := again.Listen("127.0.0.1:4000")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ln2)
	c, err := n.DialContext(context.Background(), "tcp", "127.0.0.1:4000")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)
	if _, err := netns.Open("/proc/self/ns/pid"); err == nil {
		t.Fatal("a pid namespace was opened as a network namespace")
	}
}

func port(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }
