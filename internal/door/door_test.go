package door_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/egress"
)

// A door serves its three routes and nothing else, each request naming
// the door's agent.
func TestADoorServesOnlyItsRoutes(t *testing.T) {
	named := func(label string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, _ := door.Agent(r.Context())
			p, _ := egress.PrincipalOf(r.Context())
			io.WriteString(w, label+" "+a+" "+p.String())
		})
	}
	srv := httptest.NewServer(door.Routes{LLM: named("llm"), MCP: named("mcp"), Proxy: named("proxy")}.For("web"))
	defer srv.Close()
	for _, c := range []struct{ method, target, want string }{
		{"POST", "/llm/v1/chat/completions", "llm web agent:web"},
		{"POST", "/mcp", "mcp web agent:web"},
		{"GET", "http://example.com/page", "proxy web agent:web"},
		{"GET", "/v1/agents", "404"},
		{"GET", "/healthz", "404"},
		{"GET", "/llm/v1", "404"},
		{"GET", "/mcp/other", "404"},
		{"GET", "/", "404"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.target, nil)
		if strings.HasPrefix(c.target, "http://") {
			// A proxy request: the absolute URL on the request line.
			req, _ = http.NewRequest(c.method, c.target, nil)
			req.URL.Host, req.Host = strings.TrimPrefix(srv.URL, "http://"), "example.com"
			req.URL.Opaque = c.target
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.TrimSpace(string(b))
		if c.want == "404" {
			if resp.StatusCode != 404 {
				t.Errorf("%s %s: %d %s", c.method, c.target, resp.StatusCode, got)
			}
		} else if got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.target, got, c.want)
		}
	}
	if _, ok := door.Agent(t.Context()); ok || !door.Admits(t.Context(), "any") {
		t.Error("a request through no door named an agent")
	}
}
