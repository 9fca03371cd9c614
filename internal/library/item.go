// Package library is the Library: vetted items a person gives agents
// (skills, commands, tools, MCP servers, agent templates, rules), each a
// kind, a name and its files, versioned by the digest of its content.
//
// An item is checked before anyone is asked to accept it (Check): a known
// kind, a manifest that validates, bounded size and file count, plain
// relative paths only (no links, nothing out of it), the main file its kind
// needs, and no credential in any file. What an agent proposes is checked
// the same way: it is data until a person accepts it.
package library

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/taosagent/taosagent/internal/secretscan"
)

// Kind is what an item is.
type Kind string

// The kinds, and the main file each needs beside the manifest.
const (
	Skill   Kind = "skill"   // SKILL.md (opencode's skill format) and its files
	Command Kind = "command" // command.md: a prompt template
	Tool    Kind = "tool"    // tool.ts or tool.js: runs inside opencode's process
	MCP     Kind = "mcp"     // the manifest's mcp: a server to run or reach
	Agent   Kind = "agent"   // agent.md: a persona, a template for agents
	Rule    Kind = "rule"    // rule.md: instructions
)

// Kinds are the kinds, in the order they are listed.
var Kinds = []Kind{Skill, Command, Tool, MCP, Agent, Rule}

// mainFiles are the files a kind needs (any one of them).
var mainFiles = map[Kind][]string{
	Skill: {"SKILL.md"}, Command: {"command.md"}, Tool: {"tool.ts", "tool.js"},
	MCP: nil, Agent: {"agent.md"}, Rule: {"rule.md"},
}

// ManifestFile is every item's manifest, at its root.
const ManifestFile = "item.json"

// Limits on an item.
const (
	MaxFiles       = 64
	MaxBytes       = 1 << 20 // all files together
	MaxDescription = 1024
)

// Manifest is an item's item.json.
type Manifest struct {
	Kind        Kind   `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// MCP describes an mcp item's server: a local one (Command, run by
	// the daemon in a sandbox of its own) or a remote one (URL). Env and
	// Headers name the secrets the server needs; their values are stored
	// by taosagent, never in the item.
	MCP *MCPServer `json:"mcp,omitempty"`
	// Agent is what an agent made from an agent item (a template) gets
	// besides its persona (agent.md, its prompt).
	Agent *AgentTemplate `json:"agent,omitempty"`
}

// AgentTemplate is an agent template's settings; an agent made from it
// takes each one the request that makes it leaves unset. They are checked
// as any agent's when the agent is made.
type AgentTemplate struct {
	Model      string          `json:"model,omitempty"`
	Models     []string        `json:"models,omitempty"`
	Permission json.RawMessage `json:"permission,omitempty"`
	Tools      map[string]bool `json:"tools,omitempty"`
	Library    []string        `json:"library,omitempty"` // kind/name, pinned when the agent is made
}

// MCPServer is an mcp item's server: a local one (Package, run by the
// daemon in a sandbox of its own) or a remote one (URL). Env and Headers
// name the secrets the server needs; their values are stored by taosagent,
// never in the item.
type MCPServer struct {
	// Package is the npm package of a local server, at one exact version
	// ("@scope/name@1.2.3"): installed by the daemon with its
	// dependencies (no install scripts), its bin run by node.
	Package string `json:"package,omitempty"`
	// Args are the bin's arguments; Environment, settings of its
	// environment that are not secrets. Both may say {workspace} (the
	// agent's working directory) and {state} (the server's own directory,
	// kept between runs).
	Args        []string          `json:"args,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	// Workspace is what the server sees of the agent's directories:
	// nothing (""); its working directory and its workspaces, read-only
	// ("ro"); or those, with the workspaces as the agent has them
	// ("rw": a read-write workspace is written as its owner, see
	// agent.Workspace).
	Workspace string   `json:"workspace,omitempty"`
	Env       []string `json:"env,omitempty"` // names of secrets given to the process
	URL       string   `json:"url,omitempty"`
	Headers   []string `json:"headers,omitempty"` // names of secret headers
}

// Item is one version of an item: its manifest, its files, and the digest
// of them all, which is its version.
type Item struct {
	Manifest
	Digest string            `json:"digest"` // sha256 over the files, in path order
	Size   int64             `json:"size"`
	Paths  []string          `json:"files"`
	Files  map[string][]byte `json:"-"`
}

// Ref is how an agent names the item: "kind/name".
func (it Item) Ref() string { return string(it.Kind) + "/" + it.Name }

// Finding is one problem of an item; an item with any is refused.
type Finding struct {
	Rule    string `json:"rule"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	if f.Path != "" {
		return f.Path + ": " + f.Message + " (" + f.Rule + ")"
	}
	return f.Message + " (" + f.Rule + ")"
}

// Invalid is an item refused, with every finding.
type Invalid struct{ Findings []Finding }

func (e *Invalid) Error() string {
	var parts []string
	for _, f := range e.Findings {
		parts = append(parts, f.String())
	}
	return "the item is refused: " + strings.Join(parts, "; ")
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	partRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	envRE  = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	// packageRE is an npm package name (scoped or not) at an exact version.
	packageRE = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._-]{0,99}/)?[a-z0-9][a-z0-9._-]{0,99}@[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]{1,64})?$`)
)

// Check validates files (paths relative to the item's root, "/"
// separated) as an item and returns it, or an *Invalid naming every
// problem.
func Check(files map[string][]byte) (Item, error) {
	var fs []Finding
	add := func(rule, p, format string, args ...any) {
		fs = append(fs, Finding{Rule: rule, Path: p, Message: fmt.Sprintf(format, args...)})
	}
	it := Item{Files: files}
	if len(files) > MaxFiles {
		add("item.files", "", "%d files, more than %d", len(files), MaxFiles)
	}
	for p, b := range files {
		it.Size += int64(len(b))
		if !cleanPath(p) {
			add("item.path", p, "not a plain relative path inside the item (letters, digits, '.', '_', '-' in each part; no '..', no leading '/')")
			continue
		}
		it.Paths = append(it.Paths, p)
		if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
			add("item.binary", p, "not UTF-8 text: an item holds text files only")
			continue
		}
		for _, h := range secretscan.Scan(p, b) {
			add(h.Rule, fmt.Sprintf("%s:%d", p, h.Line), "%s", h.Message)
		}
	}
	if it.Size > MaxBytes {
		add("item.size", "", "%d bytes, more than %d", it.Size, MaxBytes)
	}
	slices.Sort(it.Paths)
	raw, ok := files[ManifestFile]
	if !ok {
		add("manifest.missing", ManifestFile, "no manifest: every item has an %s with its kind, name and description", ManifestFile)
		return it, &Invalid{fs}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it.Manifest); err != nil {
		add("manifest.json", ManifestFile, "%v", err)
		return it, &Invalid{fs}
	}
	m := it.Manifest
	if !slices.Contains(Kinds, m.Kind) {
		add("manifest.kind", ManifestFile, "kind %q: must be one of %v", m.Kind, Kinds)
	}
	if !nameRE.MatchString(m.Name) {
		add("manifest.name", ManifestFile, "name %q: lowercase letters, digits and '-', at most 63, starting with a letter or digit", m.Name)
	}
	if strings.TrimSpace(m.Description) == "" || len(m.Description) > MaxDescription {
		add("manifest.description", ManifestFile, "description: required, at most %d bytes", MaxDescription)
	}
	if need := mainFiles[m.Kind]; len(need) > 0 && !slices.ContainsFunc(need, func(f string) bool { _, ok := files[f]; return ok }) {
		add("item.main", "", "a %s item needs %s", m.Kind, strings.Join(need, " or "))
	}
	if m.Agent != nil {
		checkTemplate(m.Kind, *m.Agent, func(format string, args ...any) { add("manifest.agent", ManifestFile, format, args...) })
	}
	switch {
	case m.Kind == MCP && m.MCP == nil:
		add("manifest.mcp", ManifestFile, "an mcp item describes its server (mcp: package or url)")
	case m.Kind != MCP && m.MCP != nil:
		add("manifest.mcp", ManifestFile, "only an mcp item describes a server")
	case m.MCP != nil:
		checkServer(*m.MCP, func(format string, args ...any) { add("manifest.mcp", ManifestFile, format, args...) })
	}
	if lock, ok := files[LockFile]; ok {
		if err := checkLock(m, lock); err != nil {
			add("mcp.lock", LockFile, "%v", err)
		}
	}
	if len(fs) > 0 {
		return it, &Invalid{fs}
	}
	it.Digest = digest(it.Paths, files)
	return it, nil
}

// checkTemplate checks an agent template's settings as far as the Library
// can: an object of permissions, refs of items an agent can be given. The
// rest is the agent's own check, when one is made from it.
func checkTemplate(kind Kind, t AgentTemplate, add func(string, ...any)) {
	if kind != Agent {
		add("agent: only an agent item is a template")
		return
	}
	var perm map[string]json.RawMessage
	if len(t.Permission) > 0 && json.Unmarshal(t.Permission, &perm) != nil {
		add("agent.permission: an object, as an agent's permission")
	}
	if len(t.Library) > 64 {
		add("agent.library: at most 64 items")
	}
	for i, ref := range t.Library {
		if _, err := ParseRef(ref); err != nil {
			add("agent.library[%d]: %v", i, err)
		}
	}
}

// LockFile, in a local MCP server's item, pins the whole tree of its
// package's dependencies: npm's package-lock.json (lockfile version 2 or
// 3), whose root depends on the package alone, at its version. The daemon
// then installs exactly that tree (npm ci), each tarball checked against
// the lock's integrity; without one, npm resolves the dependencies at
// install time.
const LockFile = "package-lock.json"

// checkLock checks a lockfile against the item's package.
func checkLock(m Manifest, lock []byte) error {
	if m.MCP == nil || m.MCP.Package == "" {
		return errors.New("only a local MCP server's item (package) holds a lockfile")
	}
	var l struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Dependencies map[string]string `json:"dependencies"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(lock, &l); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if l.LockfileVersion < 2 {
		return errors.New("npm's lockfile version 2 or 3 (npm 7 or later)")
	}
	i := strings.LastIndexByte(m.MCP.Package, '@')
	name, version := m.MCP.Package[:i], m.MCP.Package[i+1:]
	root := l.Packages[""].Dependencies
	if len(root) != 1 || root[name] != version {
		return fmt.Errorf("its root must depend on %s at %s alone (npm install --package-lock-only %s in an empty directory makes one)", name, version, m.MCP.Package)
	}
	return nil
}

// checkServer checks an mcp item's server: exactly one of a package and a
// URL; settings bounded; secrets named, never given.
func checkServer(s MCPServer, add func(string, ...any)) {
	switch {
	case s.Package != "" && s.URL != "":
		add("mcp: a server is local (package) or remote (url), not both")
	case s.Package == "" && s.URL == "":
		add("mcp: a package or a url")
	case s.Package != "" && !packageRE.MatchString(s.Package):
		add("mcp.package %q: an npm package at one exact version, like @scope/name@1.2.3", s.Package)
	case s.URL != "" && !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://"):
		add("mcp.url %q: http or https", s.URL)
	case s.URL != "" && (len(s.Args) > 0 || len(s.Environment) > 0 || s.Workspace != ""):
		add("mcp: args, environment and workspace are a local server's")
	case len(s.Args) > 32 || len(s.Environment) > 32:
		add("mcp: at most 32 args and 32 environment settings")
	case s.Workspace != "" && s.Workspace != "ro" && s.Workspace != "rw":
		add("mcp.workspace %q: \"\" (none), \"ro\" (read-only) or \"rw\" (the agent's workspaces as the agent has them)", s.Workspace)
	}
	for k, v := range s.Environment {
		if !envRE.MatchString(k) || len(v) > 4096 {
			add("mcp.environment %q: a name LIKE_THIS and a value of at most 4096 bytes", k)
		}
	}
	for _, a := range s.Args {
		if len(a) > 4096 {
			add("mcp.args: an argument of at most 4096 bytes")
		}
	}
	for _, n := range s.Env {
		if !envRE.MatchString(n) {
			add("mcp.env: %q is not a secret's name (LIKE_THIS)", n)
		} else if _, ok := s.Environment[n]; ok {
			add("mcp.env: %q is both a setting and a secret", n)
		}
	}
	for _, n := range s.Headers {
		if !partRE.MatchString(n) {
			add("mcp.headers: %q is not a header's name", n)
		}
	}
}

// cleanPath reports whether p is a plain relative path of the item.
func cleanPath(p string) bool {
	if p == "" || path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.Count(p, "/") > 8 {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == "." || part == ".." || !partRE.MatchString(part) {
			return false
		}
	}
	return true
}

// digest is sha256 over each path and its content, in path order, each
// length-prefixed: two items with the same files have the same digest.
func digest(paths []string, files map[string][]byte) string {
	h := sha256.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%d:%s\n%d:", len(p), p, len(files[p]))
		h.Write(files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}
