package agent

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"maps"
)

// Builder is the built-in App Builder: it makes .taosapp web apps in its
// own workspace with taosagent's factory tools (see mcpserver), and can
// neither fetch from the web, run a shell, nor reach outside its
// workspace. What it builds runs only in the sandbox, and is shared only
// after a person approves the exact package at the gate.
const Builder = "builder"

// BuilderPrompt is the builder's persona, versioned with the code.
//
//go:embed builderprompt.md
var BuilderPrompt string

// BuilderPermission is the builder's permission map, locked: it reads and
// edits files in its workspace; it has no shell (a command runs through
// app_run, in a fresh sandbox without network), no web, no sub-agents,
// nothing outside its directory. opencode's last matching rule wins, so
// the denials come last.
var BuilderPermission = json.RawMessage(`{"read":"allow","edit":"allow","glob":"allow","grep":"allow","list":"allow","todowrite":"allow",` +
	`"bash":"deny","task":"deny","webfetch":"deny","websearch":"deny","codesearch":"deny","skill":"deny","external_directory":"deny"}`)

// BuilderTools are the builder's tools: taosagent's (its factory set).
func BuilderTools() map[string]bool { return map[string]bool{TaosTools: true} }

// BuilderRules applies the builder's locked permissions and tools to a,
// or refuses a spec that asks for others.
func BuilderRules(a *Agent) error {
	if len(bytes.TrimSpace(a.Permission)) > 0 && string(a.Permission) != "null" && !sameJSON(a.Permission, BuilderPermission) {
		return invalid("permission", "the builder's permissions are locked: files in its workspace and taosagent's factory tools, no shell, no web")
	}
	if a.Tools != nil && !maps.Equal(a.Tools, BuilderTools()) {
		return invalid("tools", "the builder's tools are locked: taosagent's factory tools (\"taos\": true) and no others")
	}
	a.Permission, a.Tools = BuilderPermission, BuilderTools()
	return nil
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
