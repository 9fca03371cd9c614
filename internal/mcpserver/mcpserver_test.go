package mcpserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/catalog"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostops"
	"github.com/taosagent/taosagent/internal/mcpserver"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
	"github.com/taosagent/taosagent/internal/testenv"
)

type env struct {
	svc  *control.Service
	mcp  *mcpserver.Server
	url  string
	conf string
}

func newEnv(t testing.TB) *env {
	home := t.TempDir()
	log, err := eventlog.Open(filepath.Join(home, "taosagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	sup, _ := supervisor.New("/bin/false", filepath.Join(home, "run"))
	t.Cleanup(func() { sup.Close() })
	mgr := runner.New(runner.Config{Home: home, Store: log, Instances: runner.Supervised(sup)})
	t.Cleanup(mgr.Close)
	ctx := context.Background()
	if err := log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := log.CreateAgent(ctx, agent.Agent{Name: "worker", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(home, "app.json")
	os.WriteFile(conf, []byte(`{"a": 1}`), 0o600)
	hostFile := filepath.Join(home, "host.json")
	os.WriteFile(hostFile, []byte(`{"services":[{"name":"app","unit":"app.service","configs":[{"path":"`+conf+`","format":"json"}]}]}`), 0o600)
	f := testenv.NewFakeSystemd(t)
	f.Unit(t, "app.service", false)
	svc := &control.Service{Log: log, Runner: mgr, Catalog: &catalog.Catalog{Home: home, Log: log, Keys: agent.Keys{Dir: filepath.Join(home, "keys")}, Forget: mgr.Forget}, Home: home,
		Version: "test", Progress: 20 * time.Millisecond}
	host := &hostops.Ops{Control: svc, HostFile: hostFile, Systemd: f.Systemd, Snapshots: snapshot.Store{Dir: filepath.Join(home, "snapshots")}}
	ms := &mcpserver.Server{Control: svc, Host: host, Apps: &appgate.Gate{Control: svc}, OperatorToken: "operator-token", Version: "test"}
	srv := httptest.NewServer(ms.Handler())
	t.Cleanup(srv.Close)
	ms.URL = srv.URL
	return &env{svc: svc, mcp: ms, url: srv.URL, conf: conf}
}

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

func (e *env) client(t testing.TB, tok string, progress *atomic.Int32) *mcp.ClientSession {
	opts := &mcp.ClientOptions{}
	if progress != nil {
		opts.ProgressNotificationHandler = func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) }
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: e.url, HTTPClient: &http.Client{Transport: bearer{tok}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestToolsAreListedWithTheAnnotationsOfTheirTier(t *testing.T) {
	e := newEnv(t)
	cs := e.client(t, "operator-token", nil)
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tiers := map[control.Tier]int{}
	for _, tool := range res.Tools {
		tier := e.mcp.Tier(tool.Name)
		tiers[tier]++
		a := tool.Annotations
		if a == nil || a.DestructiveHint == nil {
			t.Fatalf("%s has no annotations", tool.Name)
		}
		if a.ReadOnlyHint != (tier == control.Read) || *a.DestructiveHint != (tier == control.Destructive) {
			t.Errorf("%s (%s): readOnly=%v destructive=%v", tool.Name, tier, a.ReadOnlyHint, *a.DestructiveHint)
		}
	}
	if tiers[control.Read] < 7 || tiers[control.Write] < 4 || tiers[control.Destructive] < 6 {
		t.Errorf("tools by tier: %v", tiers)
	}
	r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "status", Arguments: map[string]any{}})
	if err != nil || r.IsError || !strings.Contains(text(r), `"version":"test"`) {
		t.Fatalf("status: %v %v", text(r), err)
	}
}

func TestAgentTokenCallsWaitForAPersonAndCannotBeReused(t *testing.T) {
	e := newEnv(t)
	entry := e.mcp.AgentServer("worker")
	tok := strings.TrimPrefix(entry.Headers["Authorization"], "Bearer ")
	var progress atomic.Int32
	cs := e.client(t, tok, &progress)
	type res struct {
		r   *mcp.CallToolResult
		err error
	}
	done := make(chan res, 1)
	call := func(name string, args map[string]any) {
		p := &mcp.CallToolParams{Name: name, Arguments: args}
		p.SetProgressToken("p-" + name)
		r, err := cs.CallTool(t.Context(), p)
		done <- res{r, err}
	}
	go call("config_write", map[string]any{"path": e.conf, "content": `{"a": 2}`})
	ap := pending(t, e.svc)
	var ask struct {
		Tool   string          `json:"tool"`
		Source string          `json:"source"`
		Args   json.RawMessage `json:"args"`
	}
	json.Unmarshal(ap.Ask, &ask)
	if ap.Agent != "worker" || ask.Tool != "config_write" || ask.Source != "taosagent" || !strings.Contains(string(ask.Args), `{\"a\": 2}`) {
		t.Errorf("approval %+v ask %+v", ap, ask)
	}
	for progress.Load() == 0 {
		time.Sleep(5 * time.Millisecond) // progress arrives on the call's stream
	}
	if _, err := e.svc.Decide(t.Context(), control.Actor{Kind: control.Operator, Channel: control.API}, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.r.IsError {
		t.Fatalf("approved call: %v %v", r.err, text(r.r))
	}
	if b, _ := os.ReadFile(e.conf); string(b) != `{"a": 2}` {
		t.Errorf("file holds %s", b)
	}

	// The agent cannot widen its own permissions without a person: the
	// call waits, a person says no, and the error says so.
	go call("agent_permissions", map[string]any{"agent": "worker", "permission": "allow"})
	ap = pending(t, e.svc)
	if _, err := e.svc.Decide(t.Context(), control.Actor{Kind: control.Operator, Channel: control.API}, ap.ID, "reject", "no"); err != nil {
		t.Fatal(err)
	}
	r = <-done
	if r.err != nil || !r.r.IsError || !strings.Contains(text(r.r), "rejected") {
		t.Fatalf("rejected call: %v %+v", r.err, text(r.r))
	}
	if a, _ := e.svc.Log.Agent(t.Context(), "worker"); len(a.Permission) != 0 {
		t.Errorf("permission changed to %s", a.Permission)
	}
	// Arguments outside a tool's schema are refused, not ignored: a write
	// tool cannot smuggle a permission change.
	rr, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "agent_update", Arguments: map[string]any{"agent": "worker", "permission": "allow"}})
	if err == nil && !rr.IsError {
		t.Errorf("agent_update took a permission: %s", text(rr))
	}

	e.mcp.Revoke("worker")
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	if _, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.url, HTTPClient: &http.Client{Transport: bearer{tok}}, MaxRetries: -1}, nil); err == nil {
		t.Error("a revoked token connected")
	}
}

func TestUnauthenticatedRequestsAreRefused(t *testing.T) {
	e := newEnv(t)
	for _, auth := range []string{"", "Bearer nope", "Basic b3BlcmF0b3ItdG9rZW4="} {
		req, _ := http.NewRequest("POST", e.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%q: %d, want 401", auth, resp.StatusCode)
		}
	}
}

func pending(t testing.TB, svc *control.Service) eventlog.Approval {
	for range 1000 {
		as, _ := svc.Approvals(context.Background(), "pending")
		if len(as) == 1 {
			return as[0]
		}
		time.Sleep(5 * time.Millisecond) // the store has no change feed for approvals
	}
	t.Fatal("no pending approval")
	return eventlog.Approval{}
}

// TestAnAgentReadsOnlyWhatItMayRead: agent_events and an agent's log are
// an agent's own, host's for every agent, and another's only when a
// person granted it (may_read); every output that carries text agents
// chose is marked untrusted.
func TestAnAgentReadsOnlyWhatItMayRead(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, n := range []string{"spy", agent.Host} {
		if _, err := e.svc.Log.CreateAgent(ctx, agent.Agent{Name: n, Model: "p/m", Models: []string{"p/m"}}); err != nil {
			t.Fatal(err)
		}
	}
	call := func(as, tool string, args map[string]any) (string, bool) {
		t.Helper()
		entry := e.mcp.AgentServer(as)
		cs := e.client(t, strings.TrimPrefix(entry.Headers["Authorization"], "Bearer "), nil)
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		return text(r), r.IsError
	}
	for _, tool := range []string{"agent_events", "logs"} {
		if out, isErr := call("spy", tool, map[string]any{"agent": "worker"}); !isErr || !strings.Contains(out, "may_read") {
			t.Errorf("spy read worker's %s: %s", tool, out)
		}
		if out, isErr := call("spy", tool, map[string]any{"agent": "spy"}); isErr || !strings.Contains(out, "UNTRUSTED CONTENT") {
			t.Errorf("spy's own %s: %s", tool, out)
		}
		if out, isErr := call(agent.Host, tool, map[string]any{"agent": "worker"}); isErr || !strings.Contains(out, "UNTRUSTED CONTENT") {
			t.Errorf("host's read of worker's %s: %s", tool, out)
		}
	}
	if es, _ := e.svc.Log.AuditSearch(ctx, eventlog.AuditQuery{Action: "agent_events"}); len(es) != 1 || es[0].Outcome != "refused" {
		t.Errorf("the refusal is not audited: %+v", es)
	}
	mr := []string{"worker"}
	if _, err := e.svc.UpdateAgent(ctx, control.Actor{Kind: control.Operator, Channel: control.API}, "spy", control.AgentPatch{MayRead: &mr}); err != nil {
		t.Fatal(err)
	}
	if out, isErr := call("spy", "agent_events", map[string]any{"agent": "worker"}); isErr {
		t.Errorf("granted, spy still cannot read worker's events: %s", out)
	}
	for _, tool := range []string{"agents_list", "audit_recent", "snapshots_list"} {
		if out, _ := call(agent.Host, tool, map[string]any{}); !strings.Contains(out, "UNTRUSTED CONTENT") {
			t.Errorf("%s lacks the untrusted note: %.200s", tool, out)
		}
	}
}

// Through an agent's door the MCP server takes that agent's token only:
// not another agent's, not the operator's.
func TestATokenWorksOnlyThroughItsAgentsDoor(t *testing.T) {
	e := newEnv(t)
	worker := strings.TrimPrefix(e.mcp.AgentServer("worker").Headers["Authorization"], "Bearer ")
	other := strings.TrimPrefix(e.mcp.AgentServer("other").Headers["Authorization"], "Bearer ")
	srv := httptest.NewServer(door.Routes{MCP: e.mcp.Handler()}.For("worker"))
	defer srv.Close()
	for _, c := range []struct {
		tok  string
		want int
	}{{worker, 200}, {other, 401}, {"operator-token", 401}} {
		req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+c.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("token %.8s… at worker's door: %d, want %d", c.tok, resp.StatusCode, c.want)
		}
	}
}

// An agent with taosagent's tools reads the Library: its list, and an item
// with a waiting version's diff.
func TestTheLibraryIsReadThroughTools(t *testing.T) {
	e := newEnv(t)
	person := control.Actor{Kind: control.Operator, Channel: control.API}
	files := map[string][]byte{"item.json": []byte(`{"kind":"skill","name":"notes","description":"Takes notes."}`),
		"SKILL.md": []byte("---\nname: notes\ndescription: Takes notes\n---\nTake notes.\n")}
	if _, _, _, err := e.svc.LibraryAdd(t.Context(), person, files); err != nil {
		t.Fatal(err)
	}
	files["SKILL.md"] = []byte("---\nname: notes\ndescription: Takes notes\n---\nTake short notes.\n")
	if _, _, _, err := e.svc.LibraryAdd(t.Context(), person, files); err != nil {
		t.Fatal(err)
	}
	cs := e.client(t, "operator-token", nil)
	r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "library_list", Arguments: map[string]any{}})
	if err != nil || r.IsError || !strings.Contains(text(r), `"name":"notes"`) || !strings.Contains(text(r), `"pending"`) {
		t.Fatalf("library_list: %s %v", text(r), err)
	}
	r, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "library_show", Arguments: map[string]any{"kind": "skill", "name": "notes"}})
	if err != nil || r.IsError || !strings.Contains(text(r), "+Take short notes.") {
		t.Fatalf("library_show: %s %v", text(r), err)
	}
	r, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "library_show", Arguments: map[string]any{"kind": "skill", "name": "absent"}})
	if err == nil && !r.IsError {
		t.Fatalf("library_show of an absent item: %s", text(r))
	}
}
