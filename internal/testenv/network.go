package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/taosagent/taosagent/internal/netns"
)

// Network is a network namespace a test makes, joined to this machine by a
// veth pair, holding one private and one public address. A test reaches
// them from the host's namespace as it would a machine on the LAN and one
// on the internet, while every packet stays on this machine: the routes to
// them lead into the namespace only, and go with it (and with the veth)
// when the test ends, even if the test process dies.
type Network struct {
	NS      *netns.NS
	Private netip.Addr // in 10.213.0.0/16
	// Public is an address netguard judges public, routed (a /32) into
	// the namespace only.
	Public netip.Addr
}

var netSeq atomic.Int32

// NewNetwork makes a Network (root only; it skips otherwise).
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a test network needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2's ip is not installed")
	}
	n, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	i := netSeq.Add(1)
	host, peer := fmt.Sprintf("tav%d-%d", os.Getpid()%100000, i), fmt.Sprintf("tap%d-%d", os.Getpid()%100000, i)
	// Apart from another test process's network, most likely.
	sub := (os.Getpid()*7+int(i))%250 + 1
	nw := &Network{NS: n, Private: netip.MustParseAddr(fmt.Sprintf("10.213.%d.2", sub)),
		Public: netip.MustParseAddr(fmt.Sprintf("100.128.%d.10", sub))}
	gw := fmt.Sprintf("10.213.%d.1", sub)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// A process that holds the namespace, to name it to ip (a pid); it
	// dies with the test.
	var holder *exec.Cmd
	if err := n.Do(func() error {
		holder = exec.Command("/bin/sleep", "infinity")
		holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return holder.Start()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", strconv.Itoa(holder.Process.Pid))
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	if err := n.Do(func() error {
		for _, args := range [][]string{
			{"addr", "add", nw.Private.String() + "/24", "dev", peer},
			{"addr", "add", nw.Public.String() + "/32", "dev", peer},
			{"link", "set", peer, "up"},
			{"route", "add", "default", "via", gw, "dev", peer},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %v: %v: %s", args, err, out)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ip("addr", "add", gw+"/24", "dev", host)
	ip("link", "set", host, "up")
	ip("route", "add", nw.Public.String()+"/32", "via", nw.Private.String(), "dev", host)
	return nw
}

// Serve serves, inside the network, a page that counts its hits at
// addr:0, and returns its URL base ("http://ADDR:PORT") and the count.
func (nw *Network) Serve(t testing.TB, addr netip.Addr) (string, *atomic.Int32) {
	t.Helper()
	ln, err := nw.NS.Listen(net.JoinHostPort(addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	hits := &atomic.Int32{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "page of the test network at "+addr.String())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), hits
}
