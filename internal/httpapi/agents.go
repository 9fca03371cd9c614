package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/egress"
)

func (s *Server) createProvider(w http.ResponseWriter, r *http.Request) {
	var p agent.Provider
	if !s.decode(w, r, &p) {
		return
	}
	out, err := s.Control.CreateProvider(r.Context(), actor(r), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listProviders(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Control.Providers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": ps})
}

func (s *Server) deleteProvider(w http.ResponseWriter, r *http.Request) {
	if err := s.Control.DeleteProvider(r.Context(), actor(r), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- agents

type agentBody struct {
	Name       string            `json:"name"`
	Model      string            `json:"model"`
	Models     []string          `json:"models"`
	Prompt     string            `json:"prompt"`
	Permission json.RawMessage   `json:"permission"`
	Tools      map[string]bool   `json:"tools"`
	Limits     *agent.Limits     `json:"limits"`
	Budget     *agent.Budget     `json:"budget"`
	Fallback   string            `json:"fallback"`
	MayRead    []string          `json:"may_read"`
	MayTask    []string          `json:"may_task"`
	Egress     *egress.Policy    `json:"egress"`
	Library    []string          `json:"library"`
	Workspaces []agent.Workspace `json:"workspaces"`
	Workdir    string            `json:"workdir"`
	// UpstreamKey is the agent's own key at its LiteLLM proxy (write-only).
	UpstreamKey string `json:"upstream_key"`
	// Template is the Library's agent template the agent is made from
	// (creation only).
	Template string `json:"template"`
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) {
	var b agentBody
	if !s.decode(w, r, &b) {
		return
	}
	v, err := s.Control.CreateAgentFrom(r.Context(), actor(r), agent.Agent{Name: b.Name, Model: b.Model, Models: b.Models,
		Prompt: b.Prompt, Permission: b.Permission, Tools: b.Tools, Limits: b.Limits, Budget: b.Budget, Fallback: b.Fallback,
		MayRead: b.MayRead, MayTask: b.MayTask, Egress: b.Egress, Library: b.Library, Workspaces: b.Workspaces, Workdir: b.Workdir, UpstreamKey: b.UpstreamKey}, b.Template)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	out, err := s.Control.Agents(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	v, err := s.Control.Agent(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) patchAgent(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.Log.Agent(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	var p control.AgentPatch
	if !s.decode(w, r, &p) {
		return
	}
	v, err := s.Control.UpdateAgent(r.Context(), actor(r), name, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) {
	if err := s.Control.DeleteAgent(r.Context(), actor(r), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- messages

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	var b api.Message
	if !s.decode(w, r, &b) {
		return
	}
	in, created, err := s.Control.Submit(r.Context(), actor(r), r.PathValue("name"), control.Message{Text: b.Text, Mode: b.Mode, ClientID: b.ID, Model: b.Model, TraceID: b.TraceID, Conversation: b.Conversation})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.Accepted{Input: in.ID, ID: in.ClientID, Seq: in.Seq, State: in.State, Duplicate: !created})
}

// newConversation starts the agent on a new opencode session at its next
// turn; the earlier conversation stays in the log.
func (s *Server) newConversation(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	prev, err := s.Control.NewConversation(r.Context(), actor(r), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": name, "previous_session": prev})
}

// listConversations lists an agent's conversations, the latest first.
func (s *Server) listConversations(w http.ResponseWriter, r *http.Request) {
	cs, err := s.Control.Conversations(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": cs})
}

// resumeConversation makes an earlier conversation the agent's current one.
func (s *Server) resumeConversation(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if err := s.Control.Resume(r.Context(), actor(r), name, id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": name, "conversation": id})
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request) {
	turn, err := s.Control.Abort(r.Context(), actor(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"turn": turn, "aborted": true})
}

// attach starts the agent's opencode and answers how to attach to it:
// {url, password, session, directory}. It is for opencode's own TUI on
// this machine (taosagent tui); the password is the instance's, never one
// of taosagent's.
func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Minute)
	defer cancel()
	at, err := s.Control.Attach(ctx, actor(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, at)
}

// rotateKey issues the agent a new gateway key: 201 {"key"}, the only time
// it is shown; the old one stops working.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	key, err := s.Control.RotateKey(r.Context(), actor(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"key": key})
}

// reloadOpencode switches the daemon to the opencode release its home
// records.
func (s *Server) reloadOpencode(w http.ResponseWriter, r *http.Request) {
	v, err := s.Control.ReloadOpencode(r.Context(), actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"version": v})
}

// syncModels brings a LiteLLM agent's permitted models up to date with
// its key's scope at the proxy.
func (s *Server) syncModels(w http.ResponseWriter, r *http.Request) {
	out, err := s.Control.SyncModels(r.Context(), actor(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// usage answers the gateway's usage per agent, model and day.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q.Get("agent")) > 64 || len(q.Get("model")) > 256 {
		writeError(w, http.StatusBadRequest, "bad_request", "agent or model: too long")
		return
	}
	rows, err := s.Control.Usage(r.Context(), q.Get("agent"), q.Get("model"), q.Get("since"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"usage": rows})
}

// ---- events

// createSchedule gives an agent a schedule: 201 with its next slots.
func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) {
	var req api.ScheduleRequest
	if !s.decode(w, r, &req) {
		return
	}
	sc, err := s.Control.CreateSchedule(r.Context(), actor(r), r.PathValue("name"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sc)
}

// listSchedules lists an agent's schedules, each with its next three slots.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	ss, err := s.Control.Schedules(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": ss})
}

// deleteSchedule removes one of an agent's schedules.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	if err := s.Control.DeleteSchedule(r.Context(), actor(r), r.PathValue("name"), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// runSchedule sends a schedule's message now: 202, as a message is.
func (s *Server) runSchedule(w http.ResponseWriter, r *http.Request) {
	in, err := s.Control.RunSchedule(r.Context(), actor(r), r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.Accepted{Input: in.ID, ID: in.ClientID, Seq: in.Seq, State: in.State})
}

// createHook gives an agent a webhook: 201 with its secret, shown once.
func (s *Server) createHook(w http.ResponseWriter, r *http.Request) {
	var req api.HookRequest
	if !s.decode(w, r, &req) {
		return
	}
	h, err := s.Control.CreateHook(r.Context(), actor(r), r.PathValue("name"), req.Template)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, h)
}

// listHooks lists an agent's webhooks, without their secrets.
func (s *Server) listHooks(w http.ResponseWriter, r *http.Request) {
	hs, err := s.Control.Hooks(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"hooks": hs})
}

// deleteHook removes one of an agent's webhooks.
func (s *Server) deleteHook(w http.ResponseWriter, r *http.Request) {
	if err := s.Control.DeleteHook(r.Context(), actor(r), r.PathValue("name"), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deliver takes a delivery of a webhook: no token, its HMAC signature
// instead (control.Verify), its body bounded.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, control.MaxHookBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return
	}
	in, err := s.Control.Deliver(r.Context(), r.PathValue("id"), r.Header.Get(control.HookSignatureHeader), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.Accepted{Input: in.ID, ID: in.ClientID, Seq: in.Seq, State: in.State})
}

// listTasks lists the newest tasks agents handed each other (?agent= for
// those one handed or was handed).
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Control.Tasks(r.Context(), actor(r), r.URL.Query().Get("agent"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": ts})
}

// getTask shows one task.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.Control.Task(r.Context(), actor(r), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// cancelTask cancels an open task.
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.Control.CancelTask(r.Context(), actor(r), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}
