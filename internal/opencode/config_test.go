package opencode

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testConfig() Config {
	return Config{
		Provider: Provider{ID: "taos", BaseURL: "http://127.0.0.1:9/v1", APIKey: "sk-secret",
			Models: []Model{{ID: "m1", ToolCall: true}, {ID: "small"}}},
		Model: "m1", SmallModel: "small",
		Permission: json.RawMessage(`{"bash":{"*":"ask","echo *":"allow"},"edit":"deny"}`),
		Agent:      Agent{Name: "host", Prompt: "You are the host assistant."},
		MCP:        map[string]MCPServer{"tools": {Command: []string{"/bin/taosagent", "mcp"}}},
	}
}

func TestConfigJSON(t *testing.T) {
	b, err := testConfig().ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"model": "taos/m1"`, `"small_model": "taos/small"`, `"autoupdate": false`,
		`"share": "disabled"`, `"default_agent": "host"`, `"prompt": "You are the host assistant."`, `"type": "local"`} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %s:\n%s", want, s)
		}
	}
	// opencode gives pattern order meaning: it must survive as written.
	if i, j := strings.Index(s, `"*": "ask"`), strings.Index(s, `"echo *": "allow"`); i < 0 || j < i {
		t.Errorf("permission pattern order lost:\n%s", s)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad provider id", func(c *Config) { c.Provider.ID = "a/b" }, "provider id"},
		{"no base url", func(c *Config) { c.Provider.BaseURL = "" }, "base_url"},
		{"not http", func(c *Config) { c.Provider.BaseURL = "file:///etc/passwd" }, "base_url"},
		{"unknown model", func(c *Config) { c.Model = "nope" }, `model "nope"`},
		{"unknown small model", func(c *Config) { c.SmallModel = "nope" }, "small_model"},
		{"bad action", func(c *Config) { c.Permission = json.RawMessage(`{"bash":"maybe"}`) }, "bash"},
		{"bad pattern action", func(c *Config) { c.Permission = json.RawMessage(`{"bash":{"*":1}}`) }, `bash["*"]`},
		{"not json", func(c *Config) { c.Permission = json.RawMessage(`{`) }, "permission"},
		{"mcp both", func(c *Config) { c.MCP = map[string]MCPServer{"x": {Command: []string{"a"}, URL: "http://x"}} }, "mcp server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
			if _, err := c.ConfigJSON(); err == nil {
				t.Error("ConfigJSON rendered an invalid config")
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Verify(t.Context(), filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "taosagent setup") {
		t.Errorf("missing binary: %v", err)
	}
	notExec := filepath.Join(dir, "plain")
	os.WriteFile(notExec, []byte("x"), 0o644)
	if err := Verify(t.Context(), notExec); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("non-executable: %v", err)
	}
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("#!/bin/sh\necho 0.0.1\n"), 0o755)
	if err := Verify(t.Context(), wrong); err == nil || !strings.Contains(err.Error(), "wrong version") {
		t.Errorf("wrong version: %v", err)
	}
	broken := filepath.Join(dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\nexit 3\n"), 0o755)
	if err := Verify(t.Context(), broken); err == nil || !strings.Contains(err.Error(), "does not run") {
		t.Errorf("broken binary: %v", err)
	}
}

func TestInstallWithoutNPM(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Install(t.Context(), t.TempDir(), os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "npm not found") {
		t.Fatalf("err = %v, want npm not found", err)
	}
}

func TestCleanMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Model not found: fake/x.", "Model not found: fake/x."},
		{"Boom\n    at a (b.js:1:2)\n    at c", "Boom"},
		{"Error: x    at f (y.js:3:4)", "Error: x"},
		{strings.Repeat("é", 400), strings.Repeat("é", 250) + "…"},
	}
	for _, tt := range tests {
		if got := CleanMessage(tt.in); got != tt.want {
			t.Errorf("CleanMessage(%.20q) = %.30q, want %.30q", tt.in, got, tt.want)
		}
	}
}

// With Questions, the question tool (which opencode denies to any agent
// but its own) is allowed, first, unless the permission says otherwise:
// a person's later "*" still decides, and their own rule for it stands.
func TestQuestionsAreAllowedUnlessThePermissionSaysOtherwise(t *testing.T) {
	for _, c := range []struct{ perm, want string }{
		{``, `{"question":"allow"}`},
		{`{}`, `{"question":"allow"}`},
		{`{"bash":"ask"}`, `{"question":"allow","bash":"ask"}`},
		{`{"*":"deny"}`, `{"question":"allow","*":"deny"}`},
		{`{"bash":"ask","question":"deny"}`, `{"bash":"ask","question":"deny"}`},
		{`"deny"`, `"deny"`},
	} {
		cfg := testConfig()
		cfg.Permission, cfg.Questions = json.RawMessage(c.perm), true
		b, err := cfg.ConfigJSON()
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Permission json.RawMessage }
		json.Unmarshal(b, &doc)
		compact := strings.Join(strings.Fields(string(doc.Permission)), "")
		if compact != strings.ReplaceAll(c.want, " ", "") {
			t.Errorf("permission %s: got %s, want %s (in this order)", c.perm, compact, c.want)
		}
	}
	cfg := testConfig()
	b, _ := cfg.ConfigJSON()
	if strings.Contains(string(b), "question") {
		t.Errorf("without Questions the permission is as given:\n%s", b)
	}
}
