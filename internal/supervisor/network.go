package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/joinconn"
	"github.com/taosagent/taosagent/internal/netns"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/sandbox"
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
	// ToolProxy, with Relay, gives an instance's tools their way out: the
	// handler of agent's egress proxy alone, served on a unix socket in
	// the instance's run directory, which each tool reaches through a
	// relay in its sandbox (sandbox.RunRelay). Relay is the host path of
	// taosagent's binary. Either unset: tools have no network at all.
	ToolProxy func(agent string) http.Handler
	Relay     string
}

// toolProxyDir is the directory of an instance's tool proxy socket: the
// daemon's, readable by the instance's group.
func toolProxyDir(runDir string) string { return filepath.Join(runDir, "proxy") }

// instanceNet is one process's network: its namespace, the door the
// daemon serves inside it, and the listener on the host's loopback that
// carries the daemon's (and the TUI's) requests to opencode inside.
type instanceNet struct {
	ns    *netns.NS
	door  *http.Server
	api   net.Listener // on the host; nil until opencode listens
	tools *http.Server // the tools' proxy (Doors.ToolProxy); nil without
}

// openNet makes the namespace of agent's next process, or with pid opens
// the namespace of that process (adopted, Adopt), and opens its door, and
// its tools' proxy in runDir (ids: the instance's host ids, nil when the
// daemon is not root).
func (s *Supervisor) openNet(agent, runDir string, ids *hostIDs, pid int) (*instanceNet, error) {
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
	n := &instanceNet{ns: ns, door: srv}
	if s.Doors.ToolProxy != nil && s.Doors.Relay != "" {
		// Without it the tools have no way out, and the agent still works.
		if n.tools, err = s.serveToolProxy(agent, runDir, ids); err != nil {
			s.Logger.Error("the agent's tools get no network", "agent", agent, "err", err)
		}
	}
	return n, nil
}

// serveToolProxy serves agent's egress proxy on its tools' socket, made
// afresh (a running sandbox sees the directory, so a daemon that adopts
// the instance serves it again at the same path). As root, the
// directory and the socket are root's, and the instance's group may
// connect: ids's, or with nil (an adopted instance, whose spec is not
// known yet) the group of its run directory.
func (s *Supervisor) serveToolProxy(agent, runDir string, ids *hostIDs) (*http.Server, error) {
	dir := toolProxyDir(runDir)
	gid := -1
	if os.Geteuid() == 0 {
		if ids != nil {
			gid = ids.gid
		} else if fi, err := os.Stat(runDir); err == nil {
			gid = int(fi.Sys().(*syscall.Stat_t).Gid)
		}
	}
	sock := filepath.Join(dir, sandbox.ProxySocket)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		os.Remove(sock)
		err = share(dir, gid, 0o750)
	}
	if err != nil {
		return nil, fmt.Errorf("the tools' proxy: %w", err)
	}
	ln, err := listenUnix(dir, sandbox.ProxySocket)
	if err != nil {
		return nil, fmt.Errorf("the tools' proxy: %w", err)
	}
	// A socket takes write permission to connect.
	if err := share(sock, gid, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("the tools' proxy: %w", err)
	}
	srv := &http.Server{Handler: s.Doors.ToolProxy(agent), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug)}
	go srv.Serve(ln)
	return srv, nil
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
				joinconn.Join(c, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// close ends the door, the forwarder and the daemon's hold on the
// namespace (which goes when its last process does).
func (n *instanceNet) close() {
	if n == nil {
		return
	}
	n.door.Close()
	if n.tools != nil {
		n.tools.Close()
	}
	if n.api != nil {
		n.api.Close()
	}
	n.ns.Close()
}

// listenUnix listens on the unix socket name in dir, however long dir's
// path (a socket's address holds 107 bytes): it names dir by a descriptor
// (/proc/self/fd/N). The socket stays when the listener closes (its
// address would name another directory by then); the next listen
// removes it.
func listenUnix(dir, name string) (net.Listener, error) {
	fd, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	ln, err := net.Listen("unix", fmt.Sprintf("/proc/self/fd/%d/%s", fd.Fd(), name))
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}

// share gives path to root and group gid with mode (gid < 0: the
// caller's alone, group and others cleared from mode).
func share(path string, gid int, mode os.FileMode) error {
	if gid < 0 {
		return os.Chmod(path, mode&0o700)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
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
