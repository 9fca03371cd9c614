package library

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Pin is an agent's use of an item: "kind/name@digest", one version, so
// that an update reaches the agent only when a person moves the pin (a
// new pin of the current version, or a version accepted).
type Pin struct {
	Kind   Kind
	Name   string
	Digest string // "" in a ref still to be pinned (ParseRef)
}

func (p Pin) String() string {
	s := string(p.Kind) + "/" + p.Name
	if p.Digest != "" {
		s += "@" + p.Digest
	}
	return s
}

// Given are the kinds an agent can be given: opencode loads skills,
// commands, rules and tools from its config directory (Render); the daemon
// runs a local MCP server and bridges it through the agent's door
// (mcpbridge). Agent templates are for making agents (Store.Template).
var Given = []Kind{Skill, Command, Tool, MCP, Rule}

// ToolsDir is where opencode finds the tools of its config directory.
const ToolsDir = "tool"

// Note is what a person must know of an item of kind k before giving it
// to an agent, beyond its files: "" for most.
func (k Kind) Note() string {
	if k == Tool {
		return "A tool runs inside the agent's opencode process (that is how opencode loads tools), with what that process holds: " +
			"its server password, its gateway key and every file it reads. A program it starts runs in opencode's sandbox, " +
			"unless it runs it as `$SHELL -c …`, which is the tool sandbox."
	}
	return ""
}

// ParseRef parses "kind/name" or "kind/name@digest", of a kind an agent
// can be given.
func ParseRef(s string) (Pin, error) {
	p, err := parsePin(s)
	if err == nil && !slices.Contains(Given, p.Kind) {
		err = fmt.Errorf("%q: an agent can be given items of kinds %v", s, Given)
	}
	return p, err
}

// parsePin parses "kind/name" or "kind/name@digest", of any kind.
func parsePin(s string) (Pin, error) {
	ref, digest, pinned := strings.Cut(s, "@")
	kind, name, ok := strings.Cut(ref, "/")
	if !ok || !nameRE.MatchString(name) || (pinned && !hexRE(digest)) {
		return Pin{}, fmt.Errorf("%q is not kind/name or kind/name@digest (the digest as the Library shows it, 64 hex digits)", s)
	}
	return Pin{Kind: Kind(kind), Name: name, Digest: digest}, nil
}

// RulesDir is where rules are rendered, in the config directory.
const RulesDir = "rules"

// Instructions are the files of rendered (Render's, merged) that opencode
// adds to every turn's system prompt: the rules, in name order.
func Instructions(rendered map[string][]byte) []string {
	var out []string
	for p := range rendered {
		if strings.HasPrefix(p, RulesDir+"/") {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Render lays out it as opencode loads it from its config directory: a
// skill as skills/NAME/ (SKILL.md and its files), a command as
// commands/NAME.md, a rule as rules/NAME.md (one of Instructions); an MCP
// server as nothing (the runner names it in the config). The manifest
// stays behind. Paths are relative to the config directory, "/"
// separated.
func Render(it Item) (map[string][]byte, error) {
	out := map[string][]byte{}
	switch it.Kind {
	case Skill:
		for _, p := range it.Paths {
			if p != ManifestFile {
				out[path.Join("skills", it.Name, p)] = it.Files[p]
			}
		}
	case Command:
		out[path.Join("commands", it.Name+".md")] = it.Files["command.md"]
	case Rule:
		out[RulesDir+"/"+it.Name+".md"] = it.Files["rule.md"]
	case Tool:
		// opencode names the tool after its file.
		for _, f := range mainFiles[Tool] {
			if b, ok := it.Files[f]; ok {
				out[ToolsDir+"/"+it.Name+path.Ext(f)] = b
				break // one file, one tool
			}
		}
	case MCP:
		// No file: opencode reaches the server at the door (the runner
		// names it in the config), and the daemon runs it.
	default:
		return nil, fmt.Errorf("%s: an agent cannot be given a %s yet", it.Ref(), it.Kind)
	}
	return out, nil
}
