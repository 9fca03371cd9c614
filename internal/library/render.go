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

// Given are the kinds an agent can be given today: opencode loads skills
// and commands from its config directory (Render); the daemon runs a local
// MCP server and bridges it through the agent's door (mcpbridge). The
// others are kept in the Library and not yet given (tools run inside
// opencode's process; templates are for later).
var Given = []Kind{Skill, Command, MCP, Rule}

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

// givable refuses an item an agent cannot be given yet although its kind
// can: a remote MCP server (its reach through the egress proxy is a later
// step).
func givable(it Item) error {
	if it.Kind == MCP && it.MCP != nil && it.MCP.URL != "" {
		return fmt.Errorf("%s: an agent cannot be given a remote MCP server yet (local ones only: package)", it.Ref())
	}
	return nil
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
	case MCP:
		// No file: opencode reaches the server at the door (the runner
		// names it in the config), and the daemon runs it.
	default:
		return nil, fmt.Errorf("%s: an agent cannot be given a %s yet", it.Ref(), it.Kind)
	}
	return out, nil
}
