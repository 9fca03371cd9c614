package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvMCPSDK points at the node_modules holding the official MCP TypeScript
// SDK; `make test` installs it and sets it.
const EnvMCPSDK = "TAOSAGENT_MCP_SDK"

// tsClient runs the TypeScript SDK's client (testdata/mcp_client.mjs) with
// args and returns what it printed.
func tsClient(t *testing.T, args ...string) (out struct {
	Tools []struct {
		Name        string `json:"name"`
		Annotations struct {
			ReadOnlyHint    bool  `json:"readOnlyHint"`
			DestructiveHint *bool `json:"destructiveHint"`
		} `json:"annotations"`
	} `json:"tools"`
	Status struct {
		IsError           bool           `json:"isError"`
		StructuredContent map[string]any `json:"structuredContent"`
	} `json:"status"`
}) {
	t.Helper()
	mods := os.Getenv(EnvMCPSDK)
	if mods == "" {
		if testing.Short() {
			t.Skip(EnvMCPSDK + " is not set (make test sets it)")
		}
		t.Fatal(EnvMCPSDK + " is not set: run `make test`, which installs the MCP TypeScript SDK")
	}
	// An ES module finds its imports next to itself: run a copy beside
	// the SDK's node_modules.
	src, err := os.ReadFile("testdata/mcp_client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(filepath.Dir(mods), "check-"+strings.ReplaceAll(t.Name(), "/", "_")+".mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(script) })
	cmd := exec.CommandContext(t.Context(), "node", append([]string{script}, args...)...)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("the TypeScript SDK client: %v\n%s", err, b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("its output: %v\n%s", err, b)
	}
	return out
}

// The official TypeScript SDK lists taosagent's tools with annotations
// that match their tier and calls a read tool, over streamable HTTP and
// over `taosagent mcp` (stdio).
func TestMCPWithTheTypeScriptSDK(t *testing.T) {
	t.Parallel()
	d, _, _ := hostDaemon(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http", []string{"http", d.addr + "/mcp", d.c.Token}},
		{"stdio", []string{"stdio", binary, "mcp", "--home", d.home, "--addr", d.addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tsClient(t, tc.args...)
			tiers := map[string]string{}
			for _, tool := range out.Tools {
				a := tool.Annotations
				switch {
				case a.ReadOnlyHint && a.DestructiveHint != nil && !*a.DestructiveHint:
					tiers[tool.Name] = "read"
				case !a.ReadOnlyHint && a.DestructiveHint != nil && *a.DestructiveHint:
					tiers[tool.Name] = "destructive"
				case !a.ReadOnlyHint && a.DestructiveHint != nil:
					tiers[tool.Name] = "write"
				default:
					t.Errorf("%s: annotations %+v", tool.Name, a)
				}
			}
			for name, want := range map[string]string{"status": "read", "logs": "read", "config_snapshot": "write",
				"agent_update": "write", "service_restart": "destructive", "config_write": "destructive", "agent_permissions": "destructive"} {
				if tiers[name] != want {
					t.Errorf("%s: %q, want %s", name, tiers[name], want)
				}
			}
			st := out.Status
			if st.IsError || st.StructuredContent["services"] == nil {
				t.Errorf("status: %+v", st)
			}
		})
	}
}
