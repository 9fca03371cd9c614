package mcpserver_test

import (
	"encoding/json"
	"os"
	"path/filepath"
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
