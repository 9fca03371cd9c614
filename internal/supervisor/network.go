package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/netns"
	"github.com/taosagent/taosagent/internal/opencode"
)

// Doors gives every confined instance a network namespace of its own,
// with only a loopback, whose one way out is its door (package door),
// served by the daemon inside the namespace. The daemon must be root.
type Doors struct {
	// Handler is the handler of agent's door.
	Handler func(agent string) http.Handler
	// DaemonURL is the daemon's own base URL ("http://127.0.0.1:7077"):
	// URLs under it in an instance's config are rewritten to its door's.
	DaemonURL string
}

// instanceNet is one process's network: its namespace, the door the
// daemon serves inside it, and the listener on the host's loopback that
// carries the daemon's (and the TUI's) requests to opencode inside.
type instanceNet struct {
	ns   *netns.NS
	door *http.Server
	api  net.Listener // on the host; nil until opencode listens
}

// openNet makes the namespace of agent's next process, or with pid opens
// the namespace of that process (adopted, Adopt), and opens its door.
func (s *Supervisor) openNet(agent string, pid int) (*instanceNet, error) {
	var ns *netns.NS
	var err error
	if pid > 0 {
		ns, err = netns.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	} else {
		ns, err = netns.New()
	}
	if err != nil {
		return nil, err
	}
	ln, err := ns.Listen(door.Addr)
	if err != nil {
		ns.Close()
		return nil, err
	}
	srv := &http.Server{Handler: s.Doors.Handler(agent), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug)}
	go srv.Serve(ln)
	return &instanceNet{ns: ns, door: srv}, nil
}

// forward opens the host's end of opencode's API: a loopback listener
// whose connections are joined to target ("http://127.0.0.1:PORT", inside
// the namespace). It returns the listener's base URL.
func (n *instanceNet) forward(target string) (string, error) {
	addr := strings.TrimPrefix(target, "http://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	n.api = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				up, err := n.ns.DialContext(ctx, "tcp", addr)
				cancel()
				if err != nil {
					c.Close()
					return
				}
				join(c, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// join copies a and b into each other until both ends are done.
func join(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		closeWrite(b)
		close(done)
	}()
	io.Copy(a, b)
	closeWrite(a)
	<-done
	a.Close()
	b.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// close ends the door, the forwarder and the daemon's hold on the
// namespace (which goes when its last process does).
func (n *instanceNet) close() {
	if n == nil {
		return
	}
	n.door.Close()
	if n.api != nil {
		n.api.Close()
	}
	n.ns.Close()
}

// rebase is cfg with every URL under from (the daemon's) moved under to
// (the door's).
func rebase(cfg opencode.Config, from, to string) opencode.Config {
	move := func(u string) string {
		if rest, ok := strings.CutPrefix(u, from); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
			return to + rest
		}
		return u
	}
	cfg.Provider.BaseURL = move(cfg.Provider.BaseURL)
	if cfg.MCP != nil {
		m := make(map[string]opencode.MCPServer, len(cfg.MCP))
		for k, v := range cfg.MCP {
			v.URL = move(v.URL)
			m[k] = v
		}
		cfg.MCP = m
	}
	return cfg
}

// proxyEnv points every fetch of opencode's process at the door's egress
// proxy, but for the door itself (opencode 1.18.33 honours both; measured
// in docs/CONFINEMENT.md). Code that ignores them has no route anyway.
func proxyEnv() []string {
	var env []string
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		env = append(env, k+"="+door.URL)
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}
