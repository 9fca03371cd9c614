package opencode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"

	"github.com/taosagent/taosagent/internal/permission"
)

// Config is what taosagent decides about one instance; ConfigJSON renders it
// as opencode.json. Everything opencode would otherwise fetch, ask or share
// on its own is switched off.
type Config struct {
	Provider   Provider
	Model      string // model id within Provider, e.g. "gpt-x"
	SmallModel string // model for titles; defaults to Model
	// Permission is opencode's permission config: one action ("allow",
	// "ask", "deny") or an object of tool → action or pattern → action.
	// It is kept as raw JSON because opencode gives key order meaning (the
	// last matching pattern wins). Empty means opencode's defaults. Every
	// "ask" is answerable: asks reach taosagent as permission.asked events.
	Permission json.RawMessage
	Agent      Agent                // the persona, installed as opencode's default agent
	MCP        map[string]MCPServer // MCP servers the agent may use
	// Tools switches tools of the persona on or off by name (opencode's
	// agent "tools" map); absent tools keep opencode's default.
	Tools map[string]bool
	// Questions offers the model opencode's question tool, its turn then
	// waiting for a person's answer: only where a person can answer (the
	// daemon's questions API). opencode serve offers the tool only when
	// told (OPENCODE_ENABLE_QUESTION_TOOL, set by the supervisor), and
	// its defaults deny it to any agent but its own: it is allowed here
	// unless Permission says otherwise (permissionWithQuestion).
	Questions bool
	// Instructions are files opencode adds to the system prompt of every
	// turn (its "instructions"): absolute paths, as the instance sees them.
	Instructions []string
}

// Provider is an OpenAI-compatible model provider.
type Provider struct {
	ID      string // opencode provider id, e.g. "taos"
	Name    string // shown in opencode's own UI
	BaseURL string // e.g. http://127.0.0.1:7077/llm/v1
	APIKey  string
	Models  []Model
}

// Model is one model of a Provider.
type Model struct {
	ID        string
	Name      string
	ToolCall  bool
	Reasoning bool
	Context   int // tokens; 0 means 128000
	Output    int // tokens; 0 means 4096
}

// Agent is the persona of a taosagent agent.
type Agent struct {
	Name        string // opencode agent name; defaults to "taosagent"
	Description string
	Prompt      string // system prompt; empty keeps opencode's
}

// MCPServer is a local (Command) or remote (URL) MCP server.
type MCPServer struct {
	Command     []string
	Environment map[string]string
	URL         string
	Headers     map[string]string
	// TimeoutMS bounds each request to the server (opencode's default is
	// 5 s); a server that sends progress notifications resets it.
	TimeoutMS int
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate names the first bad field.
func (c Config) Validate() error {
	p := c.Provider
	switch {
	case !idPattern.MatchString(p.ID):
		return fmt.Errorf("config: provider id %q: want letters, digits, . _ -", p.ID)
	case p.BaseURL == "":
		return errors.New("config: provider base_url is empty")
	case len(p.Models) == 0:
		return errors.New("config: provider has no models")
	}
	if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("config: provider base_url %q is not an http(s) URL", p.BaseURL)
	}
	known := map[string]bool{}
	for _, m := range p.Models {
		if m.ID == "" {
			return errors.New("config: provider has a model with an empty id")
		}
		known[m.ID] = true
	}
	if !known[c.Model] {
		return fmt.Errorf("config: model %q is not one of the provider's models", c.Model)
	}
	if c.SmallModel != "" && !known[c.SmallModel] {
		return fmt.Errorf("config: small_model %q is not one of the provider's models", c.SmallModel)
	}
	if c.Agent.Name != "" && !idPattern.MatchString(c.Agent.Name) {
		return fmt.Errorf("config: agent name %q: want letters, digits, . _ -", c.Agent.Name)
	}
	if len(c.Permission) > 0 {
		if err := permission.Validate(c.Permission); err != nil {
			return fmt.Errorf("config: permission: %w", err)
		}
	}
	for name, s := range c.MCP {
		if !idPattern.MatchString(name) {
			return fmt.Errorf("config: mcp server name %q: want letters, digits, . _ -", name)
		}
		if (len(s.Command) == 0) == (s.URL == "") {
			return fmt.Errorf("config: mcp server %q: give exactly one of command or url", name)
		}
	}
	return nil
}

// ConfigJSON renders c as an opencode.json document.
//
// It is long: the config document itself, field by field.
func (c Config) ConfigJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	small := c.SmallModel
	if small == "" {
		small = c.Model
	}
	models := map[string]any{}
	for _, m := range c.Provider.Models {
		ctx, out := m.Context, m.Output
		if ctx == 0 {
			ctx = 128000
		}
		if out == 0 {
			out = 4096
		}
		name := m.Name
		if name == "" {
			name = m.ID
		}
		models[m.ID] = map[string]any{
			"name": name, "tool_call": m.ToolCall, "reasoning": m.Reasoning,
			"limit": map[string]int{"context": ctx, "output": out},
		}
	}
	pname := c.Provider.Name
	if pname == "" {
		pname = c.Provider.ID
	}
	agentName := c.Agent.Name
	if agentName == "" {
		agentName = "taosagent"
	}
	agent := map[string]any{"mode": "primary"}
	if c.Agent.Prompt != "" {
		agent["prompt"] = c.Agent.Prompt
	}
	if c.Agent.Description != "" {
		agent["description"] = c.Agent.Description
	}
	if len(c.Tools) > 0 {
		agent["tools"] = c.Tools
	}
	doc := map[string]any{
		"$schema":           "https://opencode.ai/config.json",
		"autoupdate":        false,
		"share":             "disabled",
		"model":             c.Provider.ID + "/" + c.Model,
		"small_model":       c.Provider.ID + "/" + small,
		"enabled_providers": []string{c.Provider.ID},
		"provider": map[string]any{c.Provider.ID: map[string]any{
			"npm":     "@ai-sdk/openai-compatible",
			"name":    pname,
			"options": map[string]any{"baseURL": c.Provider.BaseURL, "apiKey": c.Provider.APIKey},
			"models":  models,
		}},
		"agent":         map[string]any{agentName: agent},
		"default_agent": agentName,
	}
	perm := c.Permission
	if c.Questions {
		perm = permissionWithQuestion(perm)
	}
	if len(perm) > 0 {
		doc["permission"] = perm
	}
	if len(c.Instructions) > 0 {
		doc["instructions"] = c.Instructions
	}
	if len(c.MCP) > 0 {
		mcp := map[string]any{}
		for name, s := range c.MCP {
			if len(s.Command) > 0 {
				e := map[string]any{"type": "local", "command": s.Command, "enabled": true}
				if len(s.Environment) > 0 {
					e["environment"] = s.Environment
				}
				mcp[name] = e
			} else {
				// oauth false: the server is authenticated by its header,
				// and opencode must not go looking for an OAuth flow.
				e := map[string]any{"type": "remote", "url": s.URL, "enabled": true, "oauth": false}
				if len(s.Headers) > 0 {
					e["headers"] = s.Headers
				}
				if s.TimeoutMS > 0 {
					e["timeout"] = s.TimeoutMS
				}
				mcp[name] = e
			}
		}
		doc["mcp"] = mcp
	}
	return json.MarshalIndent(doc, "", "  ")
}

// ConfigGitignore is the .gitignore opencode 1.18.33 writes into its config
// directory when it is missing.
const ConfigGitignore = "node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore"

// permissionWithQuestion is permission p with the question tool allowed
// where p says nothing of it: first, so that a later rule of p (a "*"
// wildcard) still decides, as opencode's last matching rule does. A single
// action for every tool is p's to keep.
func permissionWithQuestion(p json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(p)
	if len(t) == 0 {
		return json.RawMessage(`{"question":"allow"}`)
	}
	var obj map[string]json.RawMessage
	if t[0] != '{' || json.Unmarshal(t, &obj) != nil {
		return p
	}
	if _, ok := obj["question"]; ok {
		return p
	}
	if len(obj) == 0 {
		return json.RawMessage(`{"question":"allow"}`)
	}
	return json.RawMessage(append([]byte(`{"question":"allow",`), t[1:]...))
}
