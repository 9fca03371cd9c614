package mcpbridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMain doubles as the server the bridge runs: with
// MCPBRIDGE_TEST_SERVER set, the test binary is a stdio MCP server with
// two tools, echo and pid (its process id).
func TestMain(m *testing.M) {
	if os.Getenv("MCPBRIDGE_TEST_SERVER") != "" {
		s := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "7.0"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "says it back"}, func(ctx context.Context, _ *mcp.CallToolRequest, in struct {
			Text string `json:"text"`
		}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
		})
		mcp.AddTool(s, &mcp.Tool{Name: "pid"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(os.Getpid())}}}, nil, nil
		})
		s.Run(context.Background(), &mcp.StdioTransport{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fixture is a bridge serving agent "a" its server "echo" (and, when
// broken, a server whose program does not exist), over httptest, the
// agent named by the X-Agent header.
type fixture struct {
	b     *Bridge
	url   string
	mu    sync.Mutex
	key   string
	fails []string
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{key: "v1"}
	f.b = &Bridge{
		Lookup: func(ctx context.Context, agent, name string) (Spec, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case agent == "a" && name == "echo":
				return Spec{Key: f.key, Command: func() (*exec.Cmd, func(), error) {
					cmd := exec.Command(os.Args[0])
					cmd.Env = append(os.Environ(), "MCPBRIDGE_TEST_SERVER=1")
					return cmd, nil, nil
				}}, nil
			case agent == "a" && name == "broken":
				return Spec{Key: "x", Command: func() (*exec.Cmd, func(), error) {
					return exec.Command("/nonexistent/server"), nil, nil
				}}, nil
			}
			return Spec{}, ErrNoServer
		},
		Failed: func(agent, name string, err error) {
			f.mu.Lock()
			f.fails = append(f.fails, agent+"/"+name+": "+err.Error())
			f.mu.Unlock()
		},
	}
	srv := httptest.NewServer(f.b.Handler(func(r *http.Request) (string, bool) {
		a := r.Header.Get("X-Agent")
		return a, a != ""
	}))
	t.Cleanup(func() { srv.Close(); f.b.Close() })
	f.url = srv.URL
	return f
}

// agentHeader names the agent on every request of a client.
type agentHeader struct{ agent string }

func (h agentHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Agent", h.agent)
	return http.DefaultTransport.RoundTrip(r)
}

// connect is an MCP client session (the Go SDK's streamable HTTP client)
// of agent's server name.
func (f *fixture) connect(t testing.TB, agent, name string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: f.url + "/mcp/" + name,
		HTTPClient: &http.Client{Transport: agentHeader{agent}}, DisableStandaloneSSE: true}, nil)
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

func TestAServersToolsAreServedAndItsCallsForwarded(t *testing.T) {
	f := newFixture(t)
	cs, err := f.connect(t, "a", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := cs.InitializeResult().ServerInfo; got.Name != "echo" || got.Version != "7.0" {
		t.Errorf("server info %+v, want the bridged server's name and its version", got)
	}
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
	}
	if strings.Join(names, ",") != "echo,pid" {
		t.Errorf("tools %v, want echo,pid", names)
	}
	if got := call(t, cs, "echo", map[string]any{"text": "hi"}); got != "echo: hi" {
		t.Errorf("echo: %q", got)
	}
	pid := call(t, cs, "pid", map[string]any{})
	if pid == fmt.Sprint(os.Getpid()) {
		t.Fatal("the tool ran in the bridge's process")
	}
	// One process serves every request while it runs.
	if again := call(t, cs, "pid", map[string]any{}); again != pid {
		t.Errorf("a second call ran in %s, the first in %s", again, pid)
	}

	// What it runs changed: a new process.
	f.mu.Lock()
	f.key = "v2"
	f.mu.Unlock()
	cs2, err := f.connect(t, "a", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer cs2.Close()
	pid2 := call(t, cs2, "pid", map[string]any{})
	if pid2 == pid {
		t.Errorf("the server kept running %s after what it runs changed", pid)
	}

	// It died: told, and started again at the next request.
	var n int
	fmt.Sscan(pid2, &n)
	p, _ := os.FindProcess(n)
	p.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		told := len(f.fails)
		f.mu.Unlock()
		if told > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(f.fails) != 1 || !strings.HasPrefix(f.fails[0], "a/echo: it ended") {
		t.Errorf("told %q, want the server's end", f.fails)
	}
	cs3, err := f.connect(t, "a", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer cs3.Close()
	if pid3 := call(t, cs3, "pid", map[string]any{}); pid3 == pid2 {
		t.Error("a dead server was not started again")
	}

	// Stop ends the agent's servers.
	f.b.Stop("a")
	f.b.mu.Lock()
	left := len(f.b.servers)
	f.b.mu.Unlock()
	if left != 0 {
		t.Errorf("%d servers left after Stop", left)
	}
}

func TestRequestsForNoServerAreRefused(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		agent, path string
		code        int
	}{
		{"", "/mcp/echo", http.StatusUnauthorized},
		{"b", "/mcp/echo", http.StatusNotFound}, // another agent's
		{"a", "/mcp/nothing", http.StatusNotFound},
		{"a", "/mcp/", http.StatusNotFound},
		{"a", "/mcp/echo/x", http.StatusNotFound},
	} {
		req, _ := http.NewRequest("POST", f.url+c.path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.agent != "" {
			req.Header.Set("X-Agent", c.agent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%q %s: %d, want %d", c.agent, c.path, resp.StatusCode, c.code)
		}
	}
	// A server that cannot start: 502 naming it, and told.
	_, err := f.connect(t, "a", "broken")
	if err == nil || !strings.Contains(err.Error(), "502") && !strings.Contains(err.Error(), "Bad Gateway") {
		t.Errorf("a broken server: %v, want 502", err)
	}
	if len(f.fails) == 0 || !strings.HasPrefix(f.fails[0], "a/broken: ") {
		t.Errorf("told %q, want the failed start", f.fails)
	}
	if errors.Is(err, ErrNoServer) {
		t.Error("a broken server is not a missing one")
	}
}
