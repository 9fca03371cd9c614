// Package door is what a confined instance reaches of the daemon: one
// listener per instance, inside the instance's own network namespace
// (netns), that serves only the routes an agent needs: the model gateway
// (/llm/v1/), taosagent's MCP tools (/mcp), the agent's own MCP servers
// (/mcp/NAME), and the egress proxy (a
// CONNECT, or a request for an absolute URL). Everything else is 404. A
// request carries the agent whose door it came through (Agent): handlers
// refuse a key or a token of any other agent.
package door

import (
	"context"
	"net/http"
	"strings"

	"github.com/taosagent/taosagent/internal/egress"
)

// Addr is where a door listens inside an instance's namespace. The
// namespace holds only the door and opencode, so the port is the same for
// every instance.
const Addr = "127.0.0.1:4000"

// URL is the door's base URL as an instance reaches it.
const URL = "http://" + Addr

// Routes are the handlers a door serves.
type Routes struct {
	LLM     http.Handler // /llm/v1/
	MCP     http.Handler // /mcp
	Servers http.Handler // /mcp/NAME: the agent's own MCP servers (mcpbridge)
	Proxy   http.Handler // the egress proxy
}

// For returns the handler of agent's door.
func (r Routes) For(agent string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := WithAgent(req.Context(), agent)
		req = req.WithContext(ctx)
		switch {
		case egress.IsProxyRequest(req):
			serve(w, req, r.Proxy)
		case strings.HasPrefix(req.URL.Path, "/llm/v1/"):
			serve(w, req, r.LLM)
		case req.URL.Path == "/mcp":
			serve(w, req, r.MCP)
		case strings.HasPrefix(req.URL.Path, "/mcp/"):
			serve(w, req, r.Servers)
		default:
			http.NotFound(w, req)
		}
	})
}

// ToolsFor returns the handler of the way out of agent's tools: the
// egress proxy alone (the same policy as the door's); every other request
// is 404, so a tool reaches neither the gateway nor the MCP tools.
func (r Routes) ToolsFor(agent string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !egress.IsProxyRequest(req) {
			http.NotFound(w, req)
			return
		}
		serve(w, req.WithContext(WithAgent(req.Context(), agent)), r.Proxy)
	})
}

func serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

type agentKey struct{}

// WithAgent returns ctx of a request that came through agent's door; it
// is also the egress proxy's principal.
func WithAgent(ctx context.Context, agent string) context.Context {
	ctx = context.WithValue(ctx, agentKey{}, agent)
	return egress.WithPrincipal(ctx, egress.Principal{Kind: "agent", Name: agent})
}

// Agent is the agent whose door the request of ctx came through; false
// for a request that came through no door (the daemon's own listener).
func Agent(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(agentKey{}).(string)
	return a, ok
}

// Admits reports whether a request of ctx may act as agent: it came
// through no door, or through agent's own.
func Admits(ctx context.Context, agent string) bool {
	a, ok := Agent(ctx)
	return !ok || a == agent
}
