package mcpserver_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taosagent/taosagent/internal/appkit"
)

// The App Builder's loop, as an agent calls it: validate its workspace
// (findings as data), run a command over it in the sandbox, submit it to
// the gate; nothing outside its own workspace is reachable.
func TestTheFactoryTools(t *testing.T) {
	e := newEnv(t)
	ws := filepath.Join(e.svc.Home, "agents", "worker", "work")
	os.MkdirAll(ws, 0o755)
	if _, err := appkit.New(filepath.Join(ws, "notes"), "Notes"); err != nil {
		t.Fatal(err)
	}
	entry := e.mcp.AgentServer("worker")
	cs := e.client(t, strings.TrimPrefix(entry.Headers["Authorization"], "Bearer "), nil)
	call := func(name string, args map[string]any) (map[string]any, bool) {
		t.Helper()
		r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var out map[string]any
		b, _ := json.Marshal(r.StructuredContent)
		json.Unmarshal(b, &out)
		if r.IsError {
			return map[string]any{"error": text(r)}, false
		}
		return out, true
	}
	// The scaffold passes; without its CSP it fails, with the rule named.
	if out, ok := call("app_validate", map[string]any{"dir": "notes"}); !ok || out["ok"] != true {
		t.Fatalf("the scaffold: %v", out)
	}
	page := filepath.Join(ws, "notes", "index.html")
	b, _ := os.ReadFile(page)
	os.WriteFile(page, []byte(strings.Replace(string(b), "Content-Security-Policy", "X-Nothing", 1)), 0o644)
	out, _ := call("app_validate", map[string]any{"dir": "notes"})
	if out["ok"] != false || !strings.Contains(mustJSON(out["findings"]), "web.csp-missing") {
		t.Fatalf("without a CSP: %v", out)
	}
	os.WriteFile(page, b, 0o644)
	// A command over the workspace, in the sandbox: no network.
	if os.Getenv("TAOSAGENT_NO_SANDBOX") == "" {
		out, ok := call("app_run", map[string]any{"dir": "notes", "command": []string{"/bin/sh", "-c", "ls manifest.json && (getent hosts example.com || echo no-network)"}})
		if !ok || out["exit_code"].(float64) != 0 || !strings.Contains(out["stdout"].(string), "no-network") {
			t.Fatalf("app_run: %v", out)
		}
	}
	// Submitted to the gate: pending a person.
	out, ok := call("app_submit", map[string]any{"dir": "notes"})
	if !ok || !strings.Contains(out["source"].(string), "(pending)") {
		t.Fatalf("app_submit: %v", out)
	}
	// Nothing outside its workspace.
	for _, dir := range []string{"/etc", "../../..", "notes/../../.."} {
		if out, ok := call("app_validate", map[string]any{"dir": dir}); ok || !strings.Contains(out["error"].(string), "workspace") {
			t.Errorf("dir %q: %v", dir, out)
		}
	}
	os.Symlink("/etc", filepath.Join(ws, "escape"))
	if out, ok := call("app_validate", map[string]any{"dir": "escape"}); ok {
		t.Errorf("a symlink out of the workspace: %v", out)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The builder is served its factory tools and nothing else: it cannot read
// the host's logs, change an agent, or hand work to itself; the host has
// every tool, app_build among them. app_new writes the scaffold inside the
// caller's workspace only.
func TestTheBuilderIsServedItsFactoryToolsOnly(t *testing.T) {
	e := newEnv(t)
	names := func(token string) []string {
		cs := e.client(t, token, nil)
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tl := range res.Tools {
			out = append(out, tl.Name)
		}
		slices.Sort(out)
		return out
	}
	tok := func(agent string) string {
		return strings.TrimPrefix(e.mcp.AgentServer(agent).Headers["Authorization"], "Bearer ")
	}
	builder := tok("builder")
	if got, want := names(builder), []string{"app_new", "app_run", "app_submit", "app_validate"}; !slices.Equal(got, want) {
		t.Fatalf("the builder's tools: %v, want %v", got, want)
	}
	host := names(tok("host"))
	for _, want := range []string{"app_build", "app_new", "app_validate", "status", "service_restart"} {
		if !slices.Contains(host, want) {
			t.Errorf("the host lacks %s: %v", want, host)
		}
	}
	cs := e.client(t, builder, nil)
	for _, name := range []string{"status", "logs", "agent_update", "app_build", "service_restart"} {
		r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{}})
		if err == nil && !r.IsError {
			t.Errorf("the builder called %s: %v", name, r.StructuredContent)
		}
	}

	ws := filepath.Join(e.svc.Home, "agents", "builder", "work")
	os.MkdirAll(ws, 0o755)
	r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "app_new", Arguments: map[string]any{"dir": "notes", "name": "Notes"}})
	if err != nil || r.IsError {
		t.Fatalf("app_new: %v %v", err, text(r))
	}
	if _, err := os.Stat(filepath.Join(ws, "notes", appkit.ManifestName)); err != nil {
		t.Fatalf("the scaffold is not in the workspace: %v", err)
	}
	if r, _ := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "app_validate", Arguments: map[string]any{"dir": "notes"}}); r.IsError || !strings.Contains(mustJSON(r.StructuredContent), `"ok":true`) {
		t.Fatalf("the scaffold does not validate: %v", mustJSON(r.StructuredContent))
	}
	outside := t.TempDir()
	for _, dir := range []string{"notes", "../escape", outside + "/x", "."} {
		r, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "app_new", Arguments: map[string]any{"dir": dir, "name": "Again"}})
		if err != nil || !r.IsError {
			t.Errorf("app_new %q: not refused", dir)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("app_new wrote outside the workspace: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(e.svc.Home, "agents", "builder", "escape")); err == nil {
		t.Error("app_new wrote beside the workspace")
	}
}
