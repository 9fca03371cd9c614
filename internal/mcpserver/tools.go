package mcpserver

import (
	"context"
	"encoding/json"
	"github.com/taosagent/taosagent/internal/api"
	"os"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/appkit"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/hostops"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/snapshot"
)

func ptr[T any](v T) *T { return &v }

// add registers a tool of tier, with annotations that match it, on the
// servers of sets.
func add[In, Out any](s *Server, sets toolSet, name string, desc string, h func(ctx context.Context, a control.Actor, in In) (Out, error)) {
	tier, ok := control.ActionTier(name)
	if !ok {
		panic("mcpserver: tool " + name + " has no tier in control.Actions")
	}
	s.tiers[name] = tier
	ann := &mcp.ToolAnnotations{Title: strings.ReplaceAll(name, "_", " "), ReadOnlyHint: tier == control.Read,
		DestructiveHint: ptr(tier == control.Destructive), OpenWorldHint: ptr(false), IdempotentHint: tier == control.Read}
	switch tier {
	case control.Destructive:
		desc += " DESTRUCTIVE: a person approves each call; the call waits for the decision, and a refusal or expiry changes nothing."
	case control.Write:
		desc += " Recorded in the audit."
	}
	handler := func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		a, ctx := s.actor(ctx, req)
		out, err := h(ctx, a, in)
		if err != nil {
			var zero Out
			return errorResult(err), zero, nil
		}
		return nil, out, nil
	}
	tool := &mcp.Tool{Name: name, Description: desc, Annotations: ann}
	for set, srv := range s.servers {
		if sets&set != 0 {
			mcp.AddTool(srv, tool, handler)
		}
	}
}

type none struct{}

type diagnoseIn struct {
	Checks []string `json:"checks,omitempty" jsonschema:"check ids (see taosagent doctor --list); none: every check"`
}
type diagnoseOut struct {
	Note     string       `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	Worst    string       `json:"worst"`
	Findings []findingOut `json:"findings"`
}

// findingOut is a doctor.Finding with its severity by name, as its JSON
// (and so the tool's output schema) has it.
type findingOut struct {
	ID       string `json:"id"`
	Severity string `json:"severity" jsonschema:"ok, warning, error or critical"`
	Summary  string `json:"summary"`
	Details  string `json:"details,omitempty"`
	Recipe   string `json:"recipe,omitempty" jsonschema:"the recipe of taosagent fix that repairs it"`
}

type pathIn struct {
	Path string `json:"path" jsonschema:"absolute path of a config file declared in the managed-host file"`
}
type agentIn struct {
	Agent string `json:"agent" jsonschema:"the agent's name"`
}
type serviceIn struct {
	Service string `json:"service" jsonschema:"a managed service's name (see status)"`
}
type containerIn struct {
	Container string `json:"container" jsonschema:"a managed container's name, as declared (see containers_list)"`
}
type containerLogsIn struct {
	Container string `json:"container" jsonschema:"a managed container's name, as declared (see containers_list)"`
	Lines     int    `json:"lines,omitempty" jsonschema:"how many of the last lines (default 100, at most 500)"`
	Pattern   string `json:"pattern,omitempty" jsonschema:"only lines that contain this text"`
	Since     string `json:"since,omitempty" jsonschema:"an RFC 3339 time, or a duration back from now (15m)"`
}
type containersOut struct {
	Note       string                   `json:"note"`
	Containers []hostctl.ContainerState `json:"containers"`
}
type eventsIn struct {
	Agent string   `json:"agent" jsonschema:"the agent's name"`
	After int64    `json:"after,omitempty" jsonschema:"only events after this seq (0: from the oldest kept)"`
	Kinds []string `json:"kinds,omitempty" jsonschema:"only these kinds, e.g. final, error, tool_call"`
	Limit int      `json:"limit,omitempty" jsonschema:"at most this many (default 50, at most 500)"`
}
type eventsOut struct {
	Note    string            `json:"note"`
	Events  []json.RawMessage `json:"events"`
	LastSeq int64             `json:"last_seq"`
}
type auditIn struct {
	Actor   string `json:"actor,omitempty" jsonschema:"actors whose name begins with this, e.g. 'agent host'"`
	Tool    string `json:"tool,omitempty" jsonschema:"only this action"`
	Outcome string `json:"outcome,omitempty" jsonschema:"pending, ok, refused or failed"`
	Since   string `json:"since,omitempty" jsonschema:"RFC 3339 time, or a duration back from now such as 2h"`
	Limit   int    `json:"limit,omitempty" jsonschema:"the newest this many (default 50, at most 500)"`
}
type auditOut struct {
	Note    string                `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	Entries []eventlog.AuditEntry `json:"entries"`
}
type agentsOut struct {
	Note   string              `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	Agents []control.AgentView `json:"agents"`
}
type snapshotsIn struct {
	Path string `json:"path,omitempty" jsonschema:"only snapshots of this file"`
}
type snapshotsOut struct {
	Note      string              `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	Snapshots []snapshot.Snapshot `json:"snapshots"`
}
type snapshotIn struct {
	Snapshot string `json:"snapshot" jsonschema:"a snapshot id from snapshots_list"`
}
type writeIn struct {
	Path    string `json:"path" jsonschema:"absolute path of a config file declared in the managed-host file"`
	Content string `json:"content" jsonschema:"the file's whole new contents; validated in the file's format before anything is written"`
}
type snapshotOut struct {
	Snapshot snapshot.Snapshot `json:"snapshot"`
	Message  string            `json:"message"`
}
type createIn struct {
	Name     string   `json:"name" jsonschema:"the new agent's name: a-z, 0-9 and -"`
	Model    string   `json:"model,omitempty" jsonschema:"provider/model (the template's when one is named)"`
	Models   []string `json:"models,omitempty" jsonschema:"its permitted models (provider/model)"`
	Prompt   string   `json:"prompt,omitempty" jsonschema:"its persona"`
	Template string   `json:"template,omitempty" jsonschema:"the Library's agent template to make it from: agent/NAME; it fills what is left unset"`
}
type updateIn struct {
	Agent  string        `json:"agent" jsonschema:"the agent's name"`
	Model  *string       `json:"model,omitempty" jsonschema:"provider/model"`
	Models *[]string     `json:"models,omitempty" jsonschema:"its permitted models"`
	Prompt *string       `json:"prompt,omitempty" jsonschema:"its persona"`
	Limits *agent.Limits `json:"limits,omitempty" jsonschema:"limits of its confined opencode"`
}
type permissionsIn struct {
	Agent      string           `json:"agent" jsonschema:"the agent's name"`
	Permission any              `json:"permission,omitempty" jsonschema:"opencode's permission config: an action (allow, ask, deny) or an object of tool to action"`
	Tools      *map[string]bool `json:"tools,omitempty" jsonschema:"tool name to enabled"`
}
type restartOut struct {
	Agent   string `json:"agent"`
	Stopped bool   `json:"stopped"`
	Message string `json:"message"`
}
type unitOut struct {
	Service string             `json:"service"`
	Status  hostctl.UnitStatus `json:"status"`
}
type deletedOut struct {
	Deleted string `json:"deleted"`
}

// addTools adds every tool, grouped by tier; add takes each tool's tier
// from control.Actions.
func (s *Server) addTools() {
	s.addReadTools()
	s.addWriteTools()
	s.addDestructiveTools()
	s.addFactoryTools()
	s.addTaskTools()
}

// addReadTools adds the tools that only read.
func (s *Server) addReadTools() {
	c := s.Control
	add(s, hostSet, "status", "The state of the host: taosagent, every agent and its instance (memory, CPU), the managed services and their health, disk, memory and load.",
		func(ctx context.Context, _ control.Actor, _ none) (hostops.HostStatus, error) {
			return s.Host.Status(ctx)
		})
	add(s, hostSet, "logs", "Recent lines of a managed service's log (or journal) or of an agent's opencode log; secrets redacted. Give service or agent.",
		func(ctx context.Context, a control.Actor, in hostops.LogsRequest) (hostops.Logs, error) {
			return s.Host.Logs(ctx, a, in)
		})
	add(s, hostSet, "containers_list", "The managed containers, as their runtime shows them: state, health, restarts, image, ports, and what is wrong with each.",
		func(ctx context.Context, _ control.Actor, _ none) (containersOut, error) {
			cs, err := s.Host.ContainersList(ctx)
			return containersOut{Note: control.UntrustedNote, Containers: cs}, err
		})
	add(s, hostSet, "container_logs", "Recent lines of a managed container's output (stdout and stderr); secrets redacted.",
		func(ctx context.Context, a control.Actor, in containerLogsIn) (hostops.Logs, error) {
			return s.Host.Logs(ctx, a, hostops.LogsRequest{Container: in.Container, Lines: in.Lines, Pattern: in.Pattern, Since: in.Since})
		})
	add(s, hostSet, "config_show", "A managed service's config file, secrets redacted.",
		func(ctx context.Context, _ control.Actor, in pathIn) (hostops.ConfigFile, error) {
			return s.Host.ConfigShow(ctx, in.Path)
		})
	add(s, hostSet, "agents_list", "The agents: model, permitted models, permissions, tools, limits and status.",
		func(ctx context.Context, _ control.Actor, _ none) (agentsOut, error) {
			as, err := c.Agents(ctx)
			return agentsOut{Note: control.UntrustedNote, Agents: as}, err
		})
	add(s, hostSet, "agent_events", "An agent's recent events (its turns: text, tool calls, results, errors). An agent reads its own, and those of agents a person let it read; host reads every agent's.",
		func(ctx context.Context, a control.Actor, in eventsIn) (eventsOut, error) {
			var kinds []event.Kind
			for _, k := range in.Kinds {
				kinds = append(kinds, event.Kind(k))
			}
			evs, last, err := c.Events(ctx, a, in.Agent, in.After, kinds, in.Limit)
			return eventsOut{Note: control.UntrustedNote, Events: evs, LastSeq: last}, err
		})
	add(s, hostSet, "audit_recent", "What was done on this host and by whom: the audit, newest last.",
		func(ctx context.Context, a control.Actor, in auditIn) (auditOut, error) {
			es, err := c.Audit(ctx, a, control.AuditRequest{Actor: in.Actor, Tool: in.Tool, Outcome: in.Outcome, Since: in.Since, Limit: in.Limit, Newest: true})
			return auditOut{Note: control.UntrustedNote, Entries: es}, err
		})
	add(s, hostSet, "diagnose", "Run the recovery checks of `taosagent doctor` (all, or those named): the home, the daemon, opencode, the database, the sandbox, the providers and every managed service, each finding with its severity and the recipe that fixes it.",
		func(ctx context.Context, _ control.Actor, in diagnoseIn) (diagnoseOut, error) {
			fs, err := s.Host.Diagnose(ctx, in.Checks)
			out := diagnoseOut{Note: control.UntrustedNote, Worst: doctor.Worst(fs).String(), Findings: []findingOut{}}
			for _, f := range fs {
				out.Findings = append(out.Findings, findingOut{f.ID, f.Severity.String(), f.Summary, f.Details, f.Recipe})
			}
			return out, err
		})
	add(s, hostSet, "snapshots_list", "Saved copies of config files, newest first.",
		func(ctx context.Context, _ control.Actor, in snapshotsIn) (snapshotsOut, error) {
			ss, err := s.Host.SnapshotList(ctx, in.Path)
			return snapshotsOut{Note: control.UntrustedNote, Snapshots: ss}, err
		})
}

// addWriteTools adds the tools that change what a snapshot or a person's
// approval can undo.
func (s *Server) addWriteTools() {
	c := s.Control
	add(s, hostSet, "config_snapshot", "Save a copy of a managed service's config file.",
		func(ctx context.Context, a control.Actor, in pathIn) (snapshotOut, error) {
			sn, err := s.Host.ConfigSnapshot(ctx, a, in.Path)
			return snapshotOut{sn, "saved as " + sn.ID}, err
		})
	add(s, hostSet, "agent_create", "Create an agent with a persona and a model, or from a Library template; a person approves it. Without a template it starts with every tool denied (a person grants more: agent_permissions); it gets the daemon's default budget.",
		func(ctx context.Context, a control.Actor, in createIn) (control.AgentView, error) {
			return c.CreateAgentFrom(ctx, a, agent.Agent{Name: in.Name, Model: in.Model, Models: in.Models, Prompt: in.Prompt}, in.Template)
		})
	add(s, hostSet, "agent_update", "Change an agent's model, permitted models, persona or limits (never its permissions or tools: that is agent_permissions). A person approves any change but a switch among the models it is already permitted and an agent's own persona.",
		func(ctx context.Context, a control.Actor, in updateIn) (control.AgentView, error) {
			return c.UpdateAgent(ctx, a, in.Agent, control.AgentPatch{Model: in.Model, Models: in.Models, Prompt: in.Prompt, Limits: in.Limits})
		})
	add(s, hostSet, "agent_restart", "Stop another agent's opencode instance; it starts afresh at its next turn.",
		func(ctx context.Context, a control.Actor, in agentIn) (restartOut, error) {
			was, err := s.Host.AgentRestart(ctx, a, in.Agent)
			return restartOut{in.Agent, was, "it starts afresh at its next turn"}, err
		})
}

// addTaskTools adds the tools by which agents hand each other tasks.
func (s *Server) addTaskTools() {
	c := s.Control
	add(s, hostSet, "task_start", "Hand a task to another agent without waiting: it runs as that agent's input (marked as yours, an agent's, never a person's), and its id comes back at once. When it ends, its result arrives in this conversation as a new message. You may hand tasks only to the agents a person allowed (may_task).",
		func(ctx context.Context, a control.Actor, in taskStartIn) (taskOut, error) {
			t, err := c.StartTask(ctx, a, in.Agent, in.Text)
			return taskOut{Task: t, Next: "its result arrives in this conversation when it ends; task_status {\"task\": \"" + t.ID + "\"} checks it"}, err
		})
	add(s, hostSet, "task_status", "A task you handed or were handed: its state (queued, running, done, error, cancelled) and, once it ended, its result. Without a task, your newest tasks.",
		func(ctx context.Context, a control.Actor, in taskIn) (tasksOut, error) {
			if in.Task == "" {
				ts, err := c.Tasks(ctx, a, "")
				return tasksOut{Note: control.UntrustedNote, Tasks: ts}, err
			}
			t, err := c.Task(ctx, a, in.Task)
			return tasksOut{Note: control.UntrustedNote, Tasks: []api.Task{t}}, err
		})
	add(s, hostSet, "task_cancel", "Cancel a task you handed: it leaves the other agent's inbox, or its turn is stopped; no result comes back.",
		func(ctx context.Context, a control.Actor, in taskIn) (taskOut, error) {
			t, err := c.CancelTask(ctx, a, in.Task)
			return taskOut{Task: t}, err
		})
}

type taskStartIn struct {
	Agent string `json:"agent" jsonschema:"the agent to hand the task to"`
	Text  string `json:"text" jsonschema:"the task, with everything the other agent needs to know"`
}
type taskIn struct {
	Task string `json:"task,omitempty" jsonschema:"the task's id (task_...)"`
}
type taskOut struct {
	Task api.Task `json:"task"`
	Next string   `json:"next,omitempty"`
}
type tasksOut struct {
	Note  string     `json:"note"` // control.UntrustedNote: results are other agents' words
	Tasks []api.Task `json:"tasks"`
}

// addDestructiveTools adds the tools that wait for a person's approval of
// the exact call.
func (s *Server) addDestructiveTools() {
	c := s.Control
	add(s, hostSet, "service_restart", "Restart a managed service through systemd.",
		func(ctx context.Context, a control.Actor, in serviceIn) (unitOut, error) {
			st, err := s.Host.ServiceRestart(ctx, a, in.Service)
			return unitOut{in.Service, st}, err
		})
	add(s, hostSet, "container_restart", "Restart a managed container (stopped, killed after its grace, started); its settings are kept in a snapshot record first.",
		func(ctx context.Context, a control.Actor, in containerIn) (hostctl.ContainerState, error) {
			return s.Host.ContainerRestart(ctx, a, in.Container)
		})
	add(s, hostSet, "config_write", "Replace a managed service's config file; it is snapshotted first.",
		func(ctx context.Context, a control.Actor, in writeIn) (snapshotOut, error) {
			sn, err := s.Host.ConfigWrite(ctx, a, in.Path, in.Content)
			return snapshotOut{sn, "written; the previous contents are snapshot " + sn.ID}, err
		})
	add(s, hostSet, "config_restore", "Restore a config file from a snapshot; the current contents are snapshotted first.",
		func(ctx context.Context, a control.Actor, in snapshotIn) (snapshotOut, error) {
			before, err := s.Host.ConfigRestore(ctx, a, in.Snapshot)
			return snapshotOut{before, "restored; the contents it replaced are snapshot " + before.ID}, err
		})
	add(s, hostSet, "agent_delete", "Delete an agent (its history stays readable).",
		func(ctx context.Context, a control.Actor, in agentIn) (deletedOut, error) {
			return deletedOut{in.Agent}, c.DeleteAgent(ctx, a, in.Agent)
		})
	add(s, hostSet, "agent_permissions", "Change an agent's permissions or tools.",
		func(ctx context.Context, a control.Actor, in permissionsIn) (control.AgentView, error) {
			p := control.AgentPatch{Tools: in.Tools}
			if in.Permission != nil {
				b, err := json.Marshal(in.Permission)
				if err != nil {
					return control.AgentView{}, err
				}
				raw := json.RawMessage(b)
				p.Permission = &raw
			}
			return c.UpdateAgent(ctx, a, in.Agent, p)
		})
	add(s, hostSet, "instance_kill", "Stop any agent's opencode instance at once; a turn it runs ends interrupted.",
		func(ctx context.Context, a control.Actor, in agentIn) (restartOut, error) {
			was, err := s.Host.InstanceKill(ctx, a, in.Agent)
			return restartOut{in.Agent, was, "stopped; it starts afresh at its next turn"}, err
		})
}

// addFactoryTools adds the App Builder's tools (and the host's way to ask
// it for an app).
func (s *Server) addFactoryTools() {
	add(s, hostSet|factorySet, "app_new", "Start a web app from the scaffold in a new directory: a manifest, an entry page with a strict Content Security Policy, a script, a style sheet and an icon, which pass every check as they are. Edit them; do not invent a layout.",
		func(ctx context.Context, a control.Actor, in newIn) (newOut, error) {
			m, dir, err := s.Apps.NewApp(ctx, a, in.Dir, in.Name)
			if err != nil {
				return newOut{}, err
			}
			files := []string{appkit.ManifestName}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.Name() != appkit.ManifestName {
					files = append(files, e.Name())
				}
			}
			return newOut{Dir: in.Dir, ID: m.ID, Files: files, Next: "edit the files, then app_validate {\"dir\": " + strconv.Quote(in.Dir) + "}"}, nil
		})
	add(s, hostSet, "app_build", "Hand a request for a web app to the App Builder, an agent of its own that works in a confined workspace, as a task: this returns at once with the task's id; the builder's answer arrives in this conversation as a new message when it ends, and the packages it submits wait at the gate (where a person decides whether they are shared). Use it whenever the person asks for an app.",
		func(ctx context.Context, a control.Actor, in buildIn) (appgate.Build, error) {
			return s.Apps.BuildApp(ctx, a, in.Request)
		})
	add(s, hostSet|factorySet, "app_validate", "Check the web app in a workspace with every check of the gate (archive, manifest, URLs, secrets, the HTML and its Content Security Policy): its findings, each with a rule, a path and a message, to fix and check again.",
		func(ctx context.Context, a control.Actor, in workspaceIn) (reportOut, error) {
			rep, err := s.Apps.ValidateWorkspace(ctx, a, in.Dir)
			return reportOf(rep), err
		})
	add(s, hostSet|factorySet, "app_run", "Run a command over a workspace in a fresh disposable sandbox (no network; limits on time, CPU, memory, processes, files, disk and /tmp): a vendored bundler, or the app's own tests. Its exit code, the limit it hit if any, and its output.",
		func(ctx context.Context, a control.Actor, in runIn) (runOut, error) {
			res, err := s.Apps.RunInWorkspace(ctx, a, in.Dir, in.Command)
			if err != nil {
				return runOut{}, err
			}
			return runOut{Note: control.UntrustedNote, ExitCode: res.ExitCode, Limit: res.LimitHit, Stdout: string(res.Stdout), Stderr: string(res.Stderr)}, nil
		})
	add(s, hostSet|factorySet, "app_submit", "Package the web app in a workspace and submit it to the gate, where it is checked again from scratch and a person decides whether it may be shared (you cannot). Its report comes back; a failing app is not submitted.",
		func(ctx context.Context, a control.Actor, in workspaceIn) (reportOut, error) {
			rep, err := s.Apps.SubmitWorkspace(ctx, a, in.Dir)
			return reportOf(rep), err
		})
	add(s, hostSet, "library_list", "The items of taosagent's Library (skills, commands, rules, MCP servers, agent templates): each one's current version, its description, and how many versions wait for a person. An agent is given items by a person, pinned to a version.",
		func(ctx context.Context, _ control.Actor, _ none) (libraryListOut, error) {
			es, err := s.Control.Library()
			return libraryListOut{Items: es}, err
		})
	add(s, hostSet, "library_show", "One item of the Library: its current files, each waiting version's diff, and, for an MCP server, which of its secrets are set (never a value). Give kind and name.",
		func(ctx context.Context, _ control.Actor, in libraryRefIn) (control.LibraryItem, error) {
			return s.Control.LibraryShow(library.Kind(in.Kind), in.Name)
		})
	add(s, hostSet, "library_propose", "Propose an item for taosagent's Library (a skill: item.json and SKILL.md; a command: item.json and command.md; see the Library's docs), or a new version of one: it is checked like any item and then waits for a person, who reviews it and decides. No agent gets it before a person accepts it and gives it to an agent.",
		func(ctx context.Context, a control.Actor, in proposeIn) (proposeOut, error) {
			files := make(map[string][]byte, len(in.Files))
			for p, c := range in.Files {
				files[p] = []byte(c)
			}
			it, _, err := s.Control.LibraryPropose(ctx, a, files)
			if err != nil {
				return proposeOut{}, err
			}
			return proposeOut{Item: it.Ref(), Digest: it.Digest, Waiting: true,
				Next: "a person reviews it (taosagent library show " + it.Ref() + ") and accepts it or not"}, nil
		})
}

type libraryListOut struct {
	Items []library.Entry `json:"items"`
}
type libraryRefIn struct {
	Kind string `json:"kind" jsonschema:"skill, command, tool, mcp, agent or rule"`
	Name string `json:"name" jsonschema:"the item's name"`
}
type proposeIn struct {
	Files map[string]string `json:"files" jsonschema:"the item's files: path (relative, / separated) to its text; item.json is its manifest: {\"kind\",\"name\",\"description\"}"`
}
type proposeOut struct {
	Item    string `json:"item"`
	Digest  string `json:"digest"`
	Waiting bool   `json:"waiting"`
	Next    string `json:"next"`
}

type newIn struct {
	Dir  string `json:"dir" jsonschema:"a new directory for the app: for an agent, a path inside its workspace, relative to it"`
	Name string `json:"name" jsonschema:"the app's name, as a person sees it"`
}
type newOut struct {
	Dir   string   `json:"dir"`
	ID    string   `json:"app_id"`
	Files []string `json:"files"`
	Next  string   `json:"next"`
}
type buildIn struct {
	Request string `json:"request" jsonschema:"what to build, in the person's words, with everything they said about it"`
}

type workspaceIn struct {
	Dir string `json:"dir" jsonschema:"the app's directory: for an agent, a path inside its workspace, relative to it ('.' for the workspace itself)"`
}
type runIn struct {
	Dir     string   `json:"dir" jsonschema:"the app's directory, as for app_validate"`
	Command []string `json:"command" jsonschema:"the program and its arguments, run in the directory"`
}
type runOut struct {
	Note     string `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	ExitCode int    `json:"exit_code"`
	Limit    string `json:"limit,omitempty" jsonschema:"the limit that ended it, if any"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}
type reportOut struct {
	Note     string           `json:"note"` // control.UntrustedNote: it carries text agents or models chose
	Source   string           `json:"source"`
	OK       bool             `json:"ok"`
	Findings []appkit.Finding `json:"findings"`
}

func reportOf(rep *appkit.Report) reportOut {
	if rep == nil {
		return reportOut{Note: control.UntrustedNote, Findings: []appkit.Finding{}}
	}
	return reportOut{Note: control.UntrustedNote, Source: rep.Source, OK: rep.OK, Findings: rep.Findings}
}
