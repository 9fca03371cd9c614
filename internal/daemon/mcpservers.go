package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/agenttree"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/mcpbridge"
	"github.com/taosagent/taosagent/internal/npmpkg"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// mcpServers runs the local MCP servers of the Library that agents are
// given (mcpbridge): each confined as a service of its own (its own host
// uid, no network, a private /tmp, its package and, when the item says
// so, the agent's working directory read-only; its own directory its only
// writable place), with its settings and its secrets (from keys, 0600)
// in its environment and nowhere else. A server that fails is an
// instance event in its agent's log.
type mcpServers struct {
	home     home.Home
	log      eventlog.Store
	keys     agent.Keys
	sandbox  *sandbox.Sandbox
	uids     hostid.Range
	packages *npmpkg.Installer
	event    func(agent string, kind event.Kind, data any) // an event in agent's log
	// egress carries the daemon's connections to an agent's remote
	// servers, by the agent's policy (its door's proxy).
	egress *egress.Proxy
}

// lookup is agent's server name, if the agent is given it.
func (m *mcpServers) lookup(ctx context.Context, agentName, name string) (mcpbridge.Spec, error) {
	a, err := m.log.Agent(ctx, agentName)
	if err != nil {
		return mcpbridge.Spec{}, mcpbridge.ErrNoServer
	}
	var pin library.Pin
	for _, ref := range a.Library {
		if p, err := library.ParseRef(ref); err == nil && p.Kind == library.MCP && p.Name == name {
			pin = p
		}
	}
	if pin.Digest == "" {
		return mcpbridge.Spec{}, mcpbridge.ErrNoServer
	}
	store := library.Store{Dir: m.home.Library()}
	it, err := store.Version(pin.Kind, pin.Name, pin.Digest)
	if err != nil {
		return mcpbridge.Spec{}, err
	}
	srv := it.MCP
	if srv != nil && srv.URL != "" {
		return m.remote(agentName, name, pin, *srv), nil
	}
	if srv == nil || srv.Package == "" {
		return mcpbridge.Spec{}, mcpbridge.ErrNoServer
	}
	// Its own uid; the agent's gid, through which it reads what the agent
	// shares with its group (a workspace "ro").
	uid, err := m.log.HostUID(ctx, agentName+"/mcp/"+name, m.uids)
	if err != nil {
		return mcpbridge.Spec{}, err
	}
	gid, err := m.log.HostUID(ctx, agentName, m.uids)
	if err != nil {
		return mcpbridge.Spec{}, err
	}
	// Its secrets, read once; one set anew restarts it (the Key keeps only
	// a sum of the values).
	secrets := make([]string, len(srv.Env))
	sum := sha256.New()
	for i, n := range srv.Env {
		secrets[i], _ = m.keys.Get(agent.MCPSecretID(name, n))
		fmt.Fprintf(sum, "%d:%s;", len(secrets[i]), secrets[i])
	}
	// The agent's workspaces, when the server sees them: read-only, or
	// as the agent does ("rw").
	var binds []sandbox.Bind
	if srv.Workspace != "" {
		for _, b := range runner.Binds(a) {
			b.RW = b.RW && srv.Workspace == "rw"
			binds = append(binds, b)
		}
	}
	workdir := filepath.Join(m.home.Agent(agentName), "work")
	if w := a.WorkspaceAt(a.Workdir); w != nil {
		workdir = w.Dst()
	}
	return mcpbridge.Spec{Key: fmt.Sprintf("%s %d %d %x %v %s", pin, uid, gid, sum.Sum(nil), binds, workdir), Command: func() (*exec.Cmd, func(), error) {
		return m.command(agentName, name, *srv, it.Files[library.LockFile], secrets, uid, gid, binds, workdir)
	}}, nil
}

// remote is agent's remote server name: the bridge reaches it over
// streamable HTTP, dialled where the agent's egress policy allows (each
// connection an egress event of the agent's), with its secret headers,
// which never reach the agent.
func (m *mcpServers) remote(agentName, name string, pin library.Pin, srv library.MCPServer) mcpbridge.Spec {
	headers := http.Header{}
	sum := sha256.New()
	for _, h := range srv.Headers {
		v, _ := m.keys.Get(agent.MCPSecretID(name, h))
		fmt.Fprintf(sum, "%d:%s;", len(v), v)
		if v != "" {
			headers.Set(h, v)
		}
	}
	who := egress.Principal{Kind: "agent", Name: agentName}
	return mcpbridge.Spec{Key: fmt.Sprintf("%s %s %x", pin, srv.URL, sum.Sum(nil)), Remote: func() (mcp.Transport, error) {
		for _, h := range srv.Headers {
			if headers.Get(h) == "" {
				return nil, fmt.Errorf("its secret %s is not set (a person sets it: taosagent library secret mcp/%s %s)", h, name, h)
			}
		}
		if m.egress == nil {
			return nil, errors.New("a remote server is reached through the agent's egress proxy, which this daemon does not run")
		}
		base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return m.egress.Dial(ctx, who, network, addr)
		}, ForceAttemptHTTP2: true, ResponseHeaderTimeout: 5 * time.Minute}
		return &mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: &http.Client{Transport: withHeaders{base, headers}}}, nil
	}}
}

// withHeaders adds a remote server's secret headers to each request.
type withHeaders struct {
	base    http.RoundTripper
	headers http.Header
}

func (t withHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header[k] = v
	}
	return t.base.RoundTrip(r)
}

// command is the confined command of a server (its package installed
// with lock, its item's lockfile, when it has one); secrets are the values
// of srv.Env, in order ("": not set); binds are the agent's workspaces it
// sees, and workdir the agent's working directory (its {workspace}).
func (m *mcpServers) command(agentName, name string, srv library.MCPServer, lock []byte, secrets []string, uid, gid int, binds []sandbox.Bind, workdir string) (*exec.Cmd, func(), error) {
	ctx := context.Background()
	own := filepath.Join(m.home.Agent(agentName), "work")
	pkg, err := m.packages.Ensure(ctx, srv.Package, lock)
	if err != nil {
		return nil, nil, err
	}
	if pkg.Bin == "" {
		return nil, nil, pkg.NoBin
	}
	node, err := nodeBinary()
	if err != nil {
		return nil, nil, err
	}
	state := m.home.MCPServer(agentName, name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, nil, err
	}
	if err := m.sandbox.OwnDir(state, uid, gid); err != nil {
		return nil, nil, err
	}
	expand := strings.NewReplacer("{workspace}", workdir, "{state}", state).Replace
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + state, "LANG=C.UTF-8", "TMPDIR=/tmp"}
	for k, v := range srv.Environment {
		env = append(env, k+"="+expand(v))
	}
	for i, n := range srv.Env {
		if secrets[i] == "" {
			return nil, nil, fmt.Errorf("its secret %s is not set (a person sets it: taosagent library secret mcp/%s %s)", n, name, n)
		}
		env = append(env, n+"="+secrets[i])
	}
	args := []string{node, pkg.Bin}
	for _, a := range srv.Args {
		args = append(args, expand(a))
	}
	ro := []string{pkg.Dir}
	if srv.Workspace != "" {
		// The agent's group may read its own working directory (what is
		// in it, as its modes say: opencode writes 0644 files).
		if err := groupReadable(m.home.Agent(agentName), "work"); err != nil {
			return nil, nil, fmt.Errorf("the agent's workspace: %w", err)
		}
		ro = append(ro, own)
	}
	cmd, err := m.sandbox.Command(ctx, sandbox.Service{Command: args, Dir: state, Workdir: state, ReadOnly: ro, Binds: binds,
		Env: env, UID: uid, GID: gid, Limits: sandbox.ServiceLimits{Memory: 2 << 30, Processes: 256}})
	if err != nil {
		return nil, nil, err
	}
	// Its stdout is MCP; what it says on stderr goes to its log, the
	// daemon's file (written afresh at each start).
	logFile, err := os.OpenFile(filepath.Join(filepath.Dir(state), name+".log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logFile
	return cmd, func() { sandbox.CloseFiles(cmd); logFile.Close() }, nil
}

// groupReadable lets the group of the agent's tree at dir read and search
// its directory rel (through agenttree: a link there is refused).
func groupReadable(dir, rel string) error {
	t, err := agenttree.Open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.AddMode(rel, 0o050)
}

// nodeBinary is the host's node, resolved to its file under /usr (which
// every sandbox has, read-only).
func nodeBinary() (string, error) {
	p, err := exec.LookPath("node")
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil || !strings.HasPrefix(p, "/usr/") {
		return "", errors.New("node is not installed under /usr (Debian's nodejs): a local MCP server needs it")
	}
	return p, nil
}

// failed records a server that could not start or ended.
func (m *mcpServers) failed(agentName, name string, err error) {
	msg := fmt.Sprintf("the MCP server %s: %v", name, err)
	m.event(agentName, event.Instance, event.InstanceData{State: "mcp_failed", Message: msg})
}
