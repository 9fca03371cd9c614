// Package mcpbridge serves an agent's own MCP servers (the Library's mcp
// items it is given) to its opencode as remote MCP servers, at /mcp/NAME
// of its door: local ones the daemon runs, and remote ones it reaches
// (Spec.Remote), so that a remote server's secrets stay with the daemon.
//
// The daemon runs each server, never opencode: a server is a process of
// its own, in a sandbox of its own (the caller's Spec.Command builds it),
// started at the first request for it and stopped when unused for Idle,
// when what it runs changes (Spec.Key), or at Close. The bridge is an MCP
// client of the server's stdio (the Go SDK's CommandTransport) and an MCP
// server of the same tools over streamable HTTP: each tool call is
// forwarded as it came, and its result returned as the server gave it.
// Tools only: a server's prompts and resources are not bridged.
package mcpbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ErrNoServer is a server the agent is not given: 404.
var ErrNoServer = errors.New("no such MCP server for this agent")

// Spec is what an agent's server runs.
type Spec struct {
	// Key names what runs (the pinned version and its settings): a
	// running server whose Key differs is stopped and started afresh.
	Key string
	// Command builds the server's confined command, not started, and
	// what to do once it has started (close the sandbox's files).
	Command func() (*exec.Cmd, func(), error)
	// Remote, instead of Command, reaches a remote server: the transport
	// of the bridge's client (the caller's HTTP client goes where the
	// agent's egress policy allows, and adds the server's secrets).
	Remote func() (mcp.Transport, error)
}

// Bridge runs and serves agents' servers.
type Bridge struct {
	// Lookup is agent's server name, or ErrNoServer.
	Lookup func(ctx context.Context, agent, name string) (Spec, error)
	// Failed is told of a server that could not start or that died
	// (an event in the agent's log): never a silent absence.
	Failed func(agent, name string, err error)
	Idle   time.Duration // default 10 minutes
	Logger *slog.Logger

	once    sync.Once
	http    http.Handler
	mu      sync.Mutex
	servers map[string]*server // by agent/name
	closed  bool
	stop    chan struct{}
}

// server is one running server.
type server struct {
	key     string
	mu      sync.Mutex // held while it starts
	cs      *mcp.ClientSession
	srv     *mcp.Server
	used    time.Time
	dead    chan struct{} // closed when the process has ended
	lastErr error
}

type serverKey struct{}

func (b *Bridge) init() {
	b.once.Do(func() {
		if b.Idle <= 0 {
			b.Idle = 10 * time.Minute
		}
		if b.Logger == nil {
			b.Logger = slog.New(slog.DiscardHandler)
		}
		b.servers = map[string]*server{}
		b.stop = make(chan struct{})
		b.http = mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
			s, _ := r.Context().Value(serverKey{}).(*mcp.Server)
			return s
		}, &mcp.StreamableHTTPOptions{Stateless: true, Logger: b.Logger})
		go b.janitor()
	})
}

// Handler serves /mcp/NAME for the agent agentOf names (false: 401).
func (b *Bridge) Handler(agentOf func(*http.Request) (string, bool)) http.Handler {
	b.init()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/mcp/")
		if !ok || name == "" || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		agent, ok := agentOf(r)
		if !ok {
			http.Error(w, "an agent's token is required", http.StatusUnauthorized)
			return
		}
		spec, err := b.Lookup(r.Context(), agent, name)
		if errors.Is(err, ErrNoServer) {
			http.Error(w, fmt.Sprintf("agent %s has no MCP server %q", agent, name), http.StatusNotFound)
			return
		} else if err != nil {
			b.Logger.Error("mcp server lookup", "agent", agent, "server", name, "err", err)
			http.Error(w, "the MCP server could not be looked up", http.StatusInternalServerError)
			return
		}
		s, err := b.running(agent, name, spec)
		if err != nil {
			http.Error(w, fmt.Sprintf("the MCP server %q did not start: %v", name, err), http.StatusBadGateway)
			return
		}
		b.http.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), serverKey{}, s.srv)))
	})
}

// running is agent's server name running spec, started if it is not.
func (b *Bridge) running(agent, name string, spec Spec) (*server, error) {
	id := agent + "/" + name
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("the daemon is stopping")
	}
	s := b.servers[id]
	if s != nil && (s.key != spec.Key || s.ended()) {
		delete(b.servers, id)
		go s.close()
		s = nil
	}
	if s == nil {
		s = &server{key: spec.Key}
		b.servers[id] = s
	}
	s.used = time.Now()
	b.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return s, nil
	}
	if s.lastErr != nil {
		return nil, s.lastErr
	}
	if err := s.start(name, spec); err != nil {
		s.lastErr = err
		b.mu.Lock()
		if b.servers[id] == s {
			delete(b.servers, id) // the next request tries again
		}
		b.mu.Unlock()
		b.Logger.Error("mcp server did not start", "agent", agent, "server", name, "err", err)
		if b.Failed != nil {
			b.Failed(agent, name, err)
		}
		return nil, err
	}
	go func() {
		err := s.cs.Wait()
		close(s.dead)
		b.mu.Lock()
		gone := b.servers[id] != s // stopped on purpose
		if !gone {
			delete(b.servers, id)
		}
		b.mu.Unlock()
		if !gone {
			b.Logger.Warn("mcp server ended", "agent", agent, "server", name, "err", err)
			if b.Failed != nil {
				b.Failed(agent, name, fmt.Errorf("it ended (%v); it starts again at the next request", err))
			}
		}
	}()
	b.Logger.Info("mcp server started", "agent", agent, "server", name)
	return s, nil
}

// startTimeout bounds a server's start: its process, the MCP handshake and
// its tool list.
const startTimeout = 30 * time.Second

// start runs spec's command and builds the server that bridges its tools.
func (s *server) start(name string, spec Spec) error {
	var tr mcp.Transport
	var cmd *exec.Cmd
	var after func()
	var err error
	if spec.Remote != nil {
		tr, err = spec.Remote()
	} else if cmd, after, err = spec.Command(); err == nil {
		tr = &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "taosagent-bridge", Version: "1"}, nil)
	cs, err := client.Connect(ctx, tr, nil)
	if after != nil {
		after()
	}
	if err != nil {
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Kill()
		}
		return err
	}
	init := cs.InitializeResult()
	impl := &mcp.Implementation{Name: name, Version: "0"}
	if init != nil && init.ServerInfo != nil {
		impl = &mcp.Implementation{Name: name, Title: init.ServerInfo.Title, Version: init.ServerInfo.Version}
	}
	opts := &mcp.ServerOptions{}
	if init != nil {
		opts.Instructions = init.Instructions
	}
	srv := mcp.NewServer(impl, opts)
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			cs.Close()
			return fmt.Errorf("its tools could not be listed: %w", err)
		}
		if !objectSchema(t.InputSchema) {
			continue // the SDK would refuse it; the model could not call it
		}
		t.OutputSchema = nil // its result is passed on as the server gave it
		tool := t.Name
		srv.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: req.Params.Arguments})
		})
	}
	s.cs, s.srv, s.dead = cs, srv, make(chan struct{})
	return nil
}

// objectSchema reports whether schema is a JSON object schema of type
// object, as MCP requires of a tool's input.
func objectSchema(schema any) bool {
	m, ok := schema.(map[string]any)
	return ok && m["type"] == "object"
}

func (s *server) ended() bool {
	if s.dead == nil {
		return false
	}
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// close ends the server's process: its stdin closed, then a signal.
func (s *server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cs != nil {
		s.cs.Close()
	}
}

// Stop stops every server of agent (its instance stopped, or it was
// changed or removed).
func (b *Bridge) Stop(agent string) {
	b.init()
	b.mu.Lock()
	var stop []*server
	for id, s := range b.servers {
		if strings.HasPrefix(id, agent+"/") {
			stop = append(stop, s)
			delete(b.servers, id)
		}
	}
	b.mu.Unlock()
	closeAll(stop)
}

// Close stops every server; no server starts after it.
func (b *Bridge) Close() {
	b.init()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	close(b.stop)
	stop := make([]*server, 0, len(b.servers))
	for _, s := range b.servers {
		stop = append(stop, s)
	}
	clear(b.servers)
	b.mu.Unlock()
	closeAll(stop)
}

func closeAll(ss []*server) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(s.close)
	}
	wg.Wait()
}

// janitor stops servers unused for Idle.
func (b *Bridge) janitor() {
	t := time.NewTicker(max(b.Idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.mu.Lock()
			var stop []*server
			for id, s := range b.servers {
				if now.Sub(s.used) > b.Idle {
					stop = append(stop, s)
					delete(b.servers, id)
				}
			}
			b.mu.Unlock()
			closeAll(stop)
		}
	}
}
