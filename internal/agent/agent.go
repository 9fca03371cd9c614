// Package agent holds the domain types that the store, the runner and the
// API share: model providers and agents, with the rules that make them
// valid. A value that passed Validate can be handed to opencode. It
// imports no adapter (opencode's config, the sandbox, the store): what
// turns an agent into those lives with them (runner.EffectiveLimits, say).
package agent

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/permission"
)

// Host is the built-in host assistant, present from the first start.
const Host = "host"

// TaosTools is the name, in an agent's tools, of taosagent's own MCP tools
// (opencode shows them as taos_<tool>). The host agent has them.
const TaosTools = "taos"

// HostPrompt is the host agent's persona: a manual of managing this host
// with taosagent's tools, versioned with the code.
//
//go:embed hostprompt.md
var HostPrompt string

// OldHostPrompt is the host prompt of versions before the manual; a host
// agent still holding it is given HostPrompt.
const OldHostPrompt = "You are the host assistant of this taOS home server."

// DemoProvider is the id of the built-in scripted demo provider.
const DemoProvider = "demo"

// Model is one model a provider serves.
type Model struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	ToolCall  bool   `json:"tool_call"`
	Reasoning bool   `json:"reasoning"`
	Context   int    `json:"context,omitempty"` // tokens
	Output    int    `json:"output,omitempty"`  // tokens
}

// UnmarshalJSON accepts a bare id ("gpt-x", tool calls on) or an object.
func (m *Model) UnmarshalJSON(b []byte) error {
	var id string
	if json.Unmarshal(b, &id) == nil {
		*m = Model{ID: id, ToolCall: true}
		return nil
	}
	type plain Model
	p := plain{ToolCall: true}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return err
	}
	*m = Model(p)
	return nil
}

// Provider kinds.
const (
	// KindOpenAI (the default, "") is an OpenAI-compatible provider: one
	// key, its own for every agent, and a fixed list of models.
	KindOpenAI = ""
	// KindLiteLLM is a LiteLLM proxy. Each agent has its own virtual key
	// (Agent.UpstreamKey; the provider's key, if any, serves agents
	// without one), and an agent's permitted models are exactly what its
	// key may access (GET /models with that key), synced by the daemon.
	// Models only adds what is known of a model (tool calls, limits).
	KindLiteLLM = "litellm"
)

// Provider is an upstream OpenAI-compatible model provider. APIKey is only
// ever read from a request; it is stored apart (mode 0600) and never shown.
type Provider struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Kind    string    `json:"kind,omitempty"` // KindOpenAI or KindLiteLLM
	BaseURL string    `json:"base_url"`
	APIKey  string    `json:"api_key,omitempty"`
	Models  []Model   `json:"models"`
	Demo    bool      `json:"demo,omitempty"` // the scripted demo provider: a test stand-in, not an AI
	HasKey  bool      `json:"has_key"`
	Created time.Time `json:"created"`
}

// Public is p as shown to clients: without its key.
func (p Provider) Public() Provider {
	p.HasKey = p.HasKey || p.APIKey != ""
	p.APIKey = ""
	return p
}

// Model returns the model of p with id. A LiteLLM proxy serves whatever an
// agent's key may access: any valid id is one of its models (with tool
// calls on), described by Models when listed there.
func (p Provider) Model(id string) (Model, bool) {
	for _, m := range p.Models {
		if m.ID == id {
			return m, true
		}
	}
	if p.Kind == KindLiteLLM && modelRE.MatchString(id) {
		return Model{ID: id, ToolCall: true}, true
	}
	return Model{}, false
}

var (
	idRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// Model ids may carry slashes and dots (org/model-1.5).
	modelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$`)
)

// InvalidError names a field that is not valid.
type InvalidError struct{ Field, Reason string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// Validate checks p as a client sent it.
//
// It is long: one check per field, in the order of the fields.
func (p Provider) Validate() error {
	if !idRE.MatchString(p.ID) {
		return invalid("id", "must be 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit")
	}
	u, err := url.Parse(p.BaseURL)
	switch {
	case p.BaseURL == "" || err != nil:
		return invalid("base_url", "must be an http or https URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return invalid("base_url", "must be an http or https URL")
	case u.Host == "":
		return invalid("base_url", "has no host")
	case u.User != nil:
		return invalid("base_url", "must not carry credentials; use api_key")
	case u.RawQuery != "" || u.Fragment != "":
		return invalid("base_url", "must not have a query or fragment")
	}
	if len(p.Name) > 200 {
		return invalid("name", "is longer than 200 characters")
	}
	if len(p.APIKey) > 4096 || strings.ContainsAny(p.APIKey, "\r\n") {
		return invalid("api_key", "is not a valid key")
	}
	if p.Kind != KindOpenAI && p.Kind != KindLiteLLM {
		return invalid("kind", "must be %q or omitted (OpenAI-compatible)", KindLiteLLM)
	}
	if len(p.Models) == 0 && p.Kind != KindLiteLLM {
		return invalid("models", "must list at least one model")
	}
	if len(p.Models) > 256 {
		return invalid("models", "lists more than 256 models")
	}
	seen := map[string]bool{}
	for i, m := range p.Models {
		if !modelRE.MatchString(m.ID) {
			return invalid(fmt.Sprintf("models[%d]", i), "is not a valid model id")
		}
		if seen[m.ID] {
			return invalid(fmt.Sprintf("models[%d]", i), "repeats %q", m.ID)
		}
		seen[m.ID] = true
		if m.Context < 0 || m.Output < 0 {
			return invalid(fmt.Sprintf("models[%d]", i), "has a negative limit")
		}
	}
	return nil
}

// Agent is one agent: a persona on a model, with its permitted models and
// its permission policy.
type Agent struct {
	Name       string          `json:"name"`
	Model      string          `json:"model"`            // provider/model
	Models     []string        `json:"models,omitempty"` // permitted set; always holds Model
	Prompt     string          `json:"prompt,omitempty"`
	Permission json.RawMessage `json:"permission,omitempty"` // opencode's permission config
	Tools      map[string]bool `json:"tools,omitempty"`      // tool name → enabled
	Limits     *Limits         `json:"limits,omitempty"`     // of its confined opencode; nil: the defaults
	Budget     *Budget         `json:"budget,omitempty"`     // of its model use through the gateway; nil: none
	// Fallback is the provider/model the gateway calls instead when the
	// agent's upstream cannot be reached, fails (5xx) or refuses its key:
	// for host, a direct provider that bypasses a proxy. "" for none.
	Fallback string `json:"fallback,omitempty"`
	// MayRead names the other agents whose events and logs this agent may
	// read through taosagent's tools (a person grants it). An agent always
	// reads its own; host reads every agent's.
	MayRead []string `json:"may_read,omitempty"`
	// MayTask names the agents this agent may hand tasks to (task_start):
	// a person's setting; none by default, for host too.
	MayTask []string `json:"may_task,omitempty"`
	// Egress is where its instance may connect beyond the daemon, through
	// the daemon's egress proxy; nil: nowhere (egress.None). The host
	// agent's is always none.
	Egress *egress.Policy `json:"egress,omitempty"`
	// Library names the Library's items the agent is given, each pinned
	// to a version ("kind/name@digest"; library.Pin): rendered into its
	// read-only opencode config, where opencode loads them.
	Library []string `json:"library,omitempty"`
	// Workspaces are host directories a person gives the agent, bound
	// into its sandbox, its tools' and its MCP servers' at
	// /workspaces/NAME (Workspace).
	Workspaces []Workspace `json:"workspaces,omitempty"`
	// Workdir names the workspace that is the agent's working directory
	// (opencode's project); "": its own directory.
	Workdir string `json:"workdir,omitempty"`
	// UpstreamKey is the agent's own key at its provider, for a LiteLLM
	// provider (its virtual key). Like a provider's key it is only read
	// from a request: stored apart (mode 0600), never shown, never in
	// the agent's directory. HasUpstreamKey says whether it has one.
	UpstreamKey    string    `json:"upstream_key,omitempty"`
	HasUpstreamKey bool      `json:"has_upstream_key,omitempty"`
	Builtin        bool      `json:"builtin,omitempty"`
	Session        string    `json:"session,omitempty"` // the pinned opencode session
	Created        time.Time `json:"created"`
	Updated        time.Time `json:"updated"`
}

// Workspace is a host directory a person gives an agent: its project.
// The agent sees it at Dst, read-only or read-write; when the daemon is
// root it works there as the directory's owner (sandbox.Bind).
type Workspace struct {
	Name string `json:"name"`
	Path string `json:"path"` // on the host, absolute, no link in it
	Mode string `json:"mode"` // "ro" (the default) or "rw"
}

// WorkspacesDir is where an agent sees its workspaces.
const WorkspacesDir = "/workspaces"

// Dst is where the agent sees w.
func (w Workspace) Dst() string { return WorkspacesDir + "/" + w.Name }

// RW reports whether the agent may write w.
func (w Workspace) RW() bool { return w.Mode == "rw" }

// MaxWorkspaces bounds an agent's workspaces.
const MaxWorkspaces = 8

// systemDirs are host directories no workspace is, or is inside: the
// system itself, and what the kernel serves.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr"}

// WorkspaceAt is the workspace of a named name, or nil.
func (a Agent) WorkspaceAt(name string) *Workspace {
	for i := range a.Workspaces {
		if a.Workspaces[i].Name == name {
			return &a.Workspaces[i]
		}
	}
	return nil
}

func validateWorkspaces(a Agent) error {
	if len(a.Workspaces) > MaxWorkspaces {
		return invalid("workspaces", "at most %d", MaxWorkspaces)
	}
	seen := map[string]bool{}
	for i, w := range a.Workspaces {
		field := fmt.Sprintf("workspaces[%d]", i)
		switch {
		case !nameRE.MatchString(w.Name):
			return invalid(field+".name", "must be 1-32 of a-z, 0-9 and '-', starting with a letter or digit")
		case seen[w.Name]:
			return invalid(field+".name", "%q is named twice", w.Name)
		case !filepath.IsAbs(w.Path) || filepath.Clean(w.Path) != w.Path:
			return invalid(field+".path", "%q is not an absolute, clean path", w.Path)
		case w.Path == "/":
			return invalid(field+".path", "the root directory is not a workspace")
		case w.Mode != "ro" && w.Mode != "rw":
			return invalid(field+".mode", "must be ro or rw")
		}
		for _, d := range systemDirs {
			if w.Path == d || strings.HasPrefix(w.Path, d+"/") {
				return invalid(field+".path", "%s is a system directory", d)
			}
		}
		seen[w.Name] = true
	}
	if a.Workdir != "" && !seen[a.Workdir] {
		return invalid("workdir", "%q is not one of its workspaces", a.Workdir)
	}
	return nil
}

// EgressPolicy is a's egress policy, normalized (None when unset).
func (a Agent) EgressPolicy() egress.Policy {
	if a.Egress == nil {
		return egress.Policy{Mode: egress.None}
	}
	return a.Egress.Normalized()
}

// MayReadOf reports whether agent a may read other's events and logs.
func (a Agent) MayReadOf(other string) bool {
	return a.Name == other || a.Name == Host || slices.Contains(a.MayRead, other)
}

// MayTaskTo reports whether agent a may hand a task to other: never to
// itself, otherwise only as a person allowed (MayTask).
func (a Agent) MayTaskTo(other string) bool {
	return a.Name != other && slices.Contains(a.MayTask, other)
}

// SplitModel splits "provider/model".
func SplitModel(s string) (provider, model string, ok bool) {
	provider, model, ok = strings.Cut(s, "/")
	return provider, model, ok && provider != "" && model != ""
}

// Lookup finds providers by id.
type Lookup func(id string) (Provider, bool)

// Normalize fills defaults: Models holds Model.
func (a *Agent) Normalize() {
	for i := range a.Workspaces {
		if a.Workspaces[i].Mode == "" {
			a.Workspaces[i].Mode = "ro"
		}
	}
	if a.Egress != nil {
		e := a.Egress.Normalized()
		a.Egress = &e
	}
	if a.Model != "" && !slices.Contains(a.Models, a.Model) {
		a.Models = append([]string{a.Model}, a.Models...)
	}
}

// Validate checks a (normalized) against the providers there are.
func (a Agent) Validate(providers Lookup) error {
	if !nameRE.MatchString(a.Name) {
		return invalid("name", "must be 1-32 of a-z, 0-9 and '-', starting with a letter or digit")
	}
	if a.Model == "" {
		return invalid("model", "is required, as provider/model")
	}
	var first string
	for i, m := range a.Models {
		field := fmt.Sprintf("models[%d]", i)
		if m == a.Model {
			field = "model"
		}
		pid, mid, ok := SplitModel(m)
		if !ok {
			return invalid(field, "%q is not provider/model", m)
		}
		p, ok := providers(pid)
		if !ok {
			return invalid(field, "unknown provider %q", pid)
		}
		if _, ok := p.Model(mid); !ok {
			return invalid(field, "provider %q has no model %q", pid, mid)
		}
		if first == "" {
			first = pid
		} else if pid != first {
			return invalid(field, "all of an agent's models must come from one provider")
		}
	}
	if len(a.UpstreamKey) > 4096 || strings.ContainsAny(a.UpstreamKey, "\r\n") {
		return invalid("upstream_key", "is not a valid key")
	}
	if len(a.Prompt) > 64<<10 {
		return invalid("prompt", "is longer than 64 KiB")
	}
	if len(a.Permission) > 0 {
		if err := permission.Validate(a.Permission); err != nil {
			return invalid("permission", "%s", err)
		}
	}
	for t := range a.Tools {
		if !modelRE.MatchString(t) {
			return invalid("tools", "%q is not a tool name", t)
		}
	}
	if a.Fallback != "" {
		pid, mid, ok := SplitModel(a.Fallback)
		if !ok {
			return invalid("fallback", "%q is not provider/model", a.Fallback)
		}
		p, ok := providers(pid)
		if !ok {
			return invalid("fallback", "unknown provider %q", pid)
		}
		if _, ok := p.Model(mid); !ok {
			return invalid("fallback", "provider %q has no model %q", pid, mid)
		}
	}
	if len(a.Library) > 64 {
		return invalid("library", "at most 64 items")
	}
	given := map[string]bool{}
	for i, ref := range a.Library {
		p, err := library.ParseRef(ref)
		if err != nil {
			return invalid(fmt.Sprintf("library[%d]", i), "%v", err)
		}
		if p.Digest == "" {
			return invalid(fmt.Sprintf("library[%d]", i), "%s is not pinned to a version", ref)
		}
		k := string(p.Kind) + "/" + p.Name
		if given[k] {
			return invalid(fmt.Sprintf("library[%d]", i), "%s is named twice", k)
		}
		given[k] = true
	}
	if err := validateWorkspaces(a); err != nil {
		return err
	}
	if len(a.MayRead) > 64 {
		return invalid("may_read", "at most 64 agents")
	}
	if e := a.Egress; e != nil {
		if err := e.Validate(); err != nil {
			return invalid("egress", "%v", err)
		}
		if a.Name == Host && e.Mode != egress.None {
			return invalid("egress", "the host agent connects nowhere beyond the daemon; it acts on the host through its tools")
		}
	}
	for _, n := range a.MayRead {
		if !nameRE.MatchString(n) {
			return invalid("may_read", "%q is not an agent's name", n)
		}
	}
	if len(a.MayTask) > 64 {
		return invalid("may_task", "at most 64 agents")
	}
	for _, n := range a.MayTask {
		switch {
		case !nameRE.MatchString(n):
			return invalid("may_task", "%q is not an agent's name", n)
		case n == a.Name:
			return invalid("may_task", "an agent does not hand tasks to itself")
		}
	}
	if b := a.Budget; b != nil && (b.DailyTokens < 0 || b.MonthlyTokens < 0 || b.DailyCost < 0 || b.MonthlyCost < 0 || b.SoftPercent < 0 || b.SoftPercent > 100) {
		return invalid("budget", "limits must be 0 (none) or more, soft_percent 0 to 100")
	}
	if l := a.Limits; l != nil {
		switch {
		case l.MemoryMB < 0 || l.MemoryMB > 1<<20:
			return invalid("limits.memory_mb", "must be 0 (the default) to 1048576")
		case l.Processes < 0 || l.Processes > 1<<16:
			return invalid("limits.processes", "must be 0 (the default) to 65536")
		case l.FileSizeMB < 0 || l.FileSizeMB > 1<<20:
			return invalid("limits.file_size_mb", "must be 0 (the default) to 1048576")
		case l.TmpMB < 0 || l.TmpMB > 1<<16:
			return invalid("limits.tmp_mb", "must be 0 (the default) to 65536")
		case l.RecycleMB < 0 || l.RecycleMB > 1<<20:
			return invalid("limits.recycle_mb", "must be 0 (the default) to 1048576")
		case l.MemoryMB > 0 && l.MemoryMB < 512:
			return invalid("limits.memory_mb", "below 512 MiB opencode cannot start")
		case l.Processes > 0 && l.Processes < 64:
			return invalid("limits.processes", "below 64 opencode cannot start")
		}
	}
	return nil
}

// Budget bounds an agent's model use through the gateway, per UTC day
// and per calendar month: tokens (in and out) and cost (as the upstream
// reports it). A zero field is no limit. Past SoftPercent of a limit an
// event and an audit entry say so; at the limit the gateway refuses (429,
// budget_exceeded).
type Budget struct {
	DailyTokens   int64   `json:"daily_tokens,omitempty"`
	MonthlyTokens int64   `json:"monthly_tokens,omitempty"`
	DailyCost     float64 `json:"daily_cost,omitempty"`
	MonthlyCost   float64 `json:"monthly_cost,omitempty"`
	SoftPercent   int     `json:"soft_percent,omitempty"` // default 80
}

// Soft is the share of a limit past which a warning is given.
func (b Budget) Soft() float64 {
	if b.SoftPercent <= 0 || b.SoftPercent > 100 {
		return 0.8
	}
	return float64(b.SoftPercent) / 100
}

// Limits bound an agent's confined opencode and everything it runs. A zero
// field means the default (see Effective).
type Limits struct {
	MemoryMB   int64 `json:"memory_mb,omitempty"`    // data memory per process, MiB
	Processes  int   `json:"processes,omitempty"`    // processes and threads
	FileSizeMB int64 `json:"file_size_mb,omitempty"` // largest file written, MiB
	TmpMB      int64 `json:"tmp_mb,omitempty"`       // private /tmp, MiB
	// RecycleMB: an instance that holds more (its whole process tree,
	// resident) is restarted between two turns, never in one. MiB.
	RecycleMB int64 `json:"recycle_mb,omitempty"`
}

// Permits reports whether model (provider/model) is in a's permitted set.
func (a Agent) Permits(model string) bool { return slices.Contains(a.Models, model) }

// HostDenied are the tools the host agent never has: a raw shell, file
// edits, web fetches and paths outside its directory. It acts on the host
// only through taosagent's own tools.
var HostDenied = []string{"bash", "edit", "write", "patch", "webfetch", "external_directory"}

// HostPermission returns the permission map of the host agent built from
// the one a client gave (raw may be empty): every HostDenied tool is
// "deny", placed last so that no earlier rule (a "*" wildcard, say) can
// outrank it (opencode's last matching rule wins). A map that asks for any
// of them otherwise is refused.
func HostPermission(raw json.RawMessage) (json.RawMessage, error) {
	var keys []string
	vals := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) > 0 {
		var action string
		if json.Unmarshal(raw, &action) == nil {
			if action != "deny" {
				return nil, invalid("permission", "the host agent never gets a raw shell or file edits: %q would allow %s", action, strings.Join(HostDenied, ", "))
			}
			raw = nil
		} else {
			dec := json.NewDecoder(bytes.NewReader(raw))
			if t, err := dec.Token(); err != nil || t != json.Delim('{') {
				return nil, invalid("permission", "must be an action or an object")
			}
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					return nil, invalid("permission", "is not valid JSON")
				}
				k := t.(string)
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					return nil, invalid("permission", "is not valid JSON")
				}
				if slices.Contains(HostDenied, k) {
					var a string
					if json.Unmarshal(v, &a) != nil || a != "deny" {
						return nil, invalid("permission", "the host agent never gets a raw shell or file edits: %q must be \"deny\"", k)
					}
					continue
				}
				if _, dup := vals[k]; !dup {
					keys = append(keys, k)
				}
				vals[k] = v
			}
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vals[k])
		b.WriteByte(',')
	}
	for i, k := range HostDenied {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:\"deny\"", k)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
