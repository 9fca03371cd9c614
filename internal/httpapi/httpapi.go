// Package httpapi serves taosagent's HTTP API (DESIGN §5): providers,
// agents, messages, events (stored and as a resumable SSE stream),
// approvals and the audit trail, behind one bearer token. Bad input gets a
// 4xx with {"error":{"code","message"}} and changes nothing.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/panel"
	"github.com/taosagent/taosagent/internal/runner"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of this API.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// Server is the API. Set the fields, then serve Handler.
type Server struct {
	Log     *eventlog.Log
	Runner  *runner.Manager
	Control *control.Service // required: every change and every host action goes through it
	// MCP, when set, is served at /mcp (it authenticates by itself: the
	// operator token or an agent's MCP token).
	MCP http.Handler
	// LLM, when set, is the model gateway, served at /llm/v1/ (it
	// authenticates by itself: an agent's gateway key).
	LLM       http.Handler
	Token     string // the bearer token every route but /healthz needs
	Version   string
	Logger    *slog.Logger
	KeepAlive time.Duration // SSE keep-alive comment interval; default 15 s
	MaxBody   int64         // request body limit; default 1 MiB
	// WriteWait bounds each write to an event stream; a client that stops
	// reading is dropped and its subscription freed. Default 30 s.
	WriteWait time.Duration
	// Hosts are the host names, beyond IP literals and "localhost", that
	// requests may name in their Host header. Any other name is refused:
	// a web page cannot reach the loopback API by DNS rebinding.
	Hosts []string

	// Sessions, when set, serves the web panel at "/" and lets its
	// signed-in pages call the API (see panel.Sessions.Check).
	Sessions *panel.Sessions

	refusals logLimiter
}

// MaxText is the longest message text accepted.
const MaxText = control.MaxText

type route struct {
	pattern string // "METHOD /path"
	h       http.HandlerFunc
	open    bool // served without the token
}

// routes lists every route but the catch-all. openapi.json describes
// exactly these: a test holds the two together.
func (s *Server) routes() []route {
	return []route{
		{"GET /healthz", s.healthz, true},
		{"GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(openAPI)
		}, false},
		{"POST /v1/providers", s.createProvider, false},
		{"GET /v1/providers", s.listProviders, false},
		{"DELETE /v1/providers/{id}", s.deleteProvider, false},
		{"POST /v1/agents", s.createAgent, false},
		{"GET /v1/agents", s.listAgents, false},
		{"GET /v1/agents/{name}", s.getAgent, false},
		{"PATCH /v1/agents/{name}", s.patchAgent, false},
		{"DELETE /v1/agents/{name}", s.deleteAgent, false},
		{"POST /v1/agents/{name}/messages", s.postMessage, false},
		{"POST /v1/agents/{name}/reply", s.postReply, false},
		{"GET /v1/agents/{name}/reply", s.getReply, false},
		{"POST /v1/agents/{name}/abort", s.abort, false},
		{"POST /v1/agents/{name}/conversations", s.newConversation, false},
		{"POST /v1/agents/{name}/attach", s.attach, false},
		{"POST /v1/agents/{name}/key", s.rotateKey, false},
		{"POST /v1/agents/{name}/models/sync", s.syncModels, false},
		{"GET /v1/usage", s.usage, false},
		{"POST /v1/opencode/reload", s.reloadOpencode, false},
		{"POST /v1/apps", s.submitApp, false},
		{"GET /v1/apps", s.listApps, false},
		{"GET /v1/apps/{sha}", s.getApp, false},
		{"POST /v1/apps/{sha}/decision", s.decideApp, false},
		{"POST /v1/apps/{sha}/preview", s.previewApp, false},
		{"GET /apps/preview/{token}/{path...}", s.previewFile, true},
		{"GET /v1/agents/{name}/events", s.listEvents, false},
		{"GET /v1/agents/{name}/events/stream", s.stream, false},
		{"GET /v1/approvals", s.listApprovals, false},
		{"POST /v1/approvals/{id}", s.replyApproval, false},
		{"GET /v1/audit", s.listAudit, false},
		{"GET /metrics", s.metrics, false},
	}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	if s.KeepAlive <= 0 {
		s.KeepAlive = 15 * time.Second
	}
	if s.MaxBody <= 0 {
		s.MaxBody = 1 << 20
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.WriteWait <= 0 {
		s.WriteWait = 30 * time.Second
	}
	mux := http.NewServeMux()
	if s.MCP != nil {
		mux.Handle("/mcp", s.MCP)
	}
	if s.LLM != nil {
		mux.Handle("/llm/v1/", s.LLM)
	}
	if s.Sessions != nil {
		ph := s.Sessions.Handler()
		mux.Handle("GET /{$}", ph)
		mux.Handle("/panel/", ph)
	}
	for _, rt := range s.routes() {
		if rt.open {
			mux.HandleFunc(rt.pattern, rt.h)
		} else {
			mux.Handle(rt.pattern, s.auth(rt.h))
		}
	}
	mux.Handle("/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		// The catch-all hides the mux's own 405: find the methods the path has.
		var allow []string
		for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pattern := mux.Handler(r2); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: "+strings.Join(allow, ", "))
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no route "+r.Method+" "+r.URL.Path)
	}))
	return s.checkHost(mux)
}

// HTTPServer returns the http.Server the daemon serves h with: bounded
// header, body and idle times (an idle keep-alive connection is closed
// after two minutes). Event streams bound each write instead (WriteWait).
func HTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
}

// checkHost refuses a request whose Host header names anything but an IP
// literal, localhost, or one of Hosts.
func (s *Server) checkHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
		if net.ParseIP(host) == nil && !strings.EqualFold(host, "localhost") && !slices.ContainsFunc(s.Hosts, func(x string) bool { return strings.EqualFold(x, host) }) {
			s.refused("refused: foreign Host header", r)
			writeError(w, http.StatusMisdirectedRequest, "foreign_host", "this daemon does not answer to the host name "+strconv.Quote(host))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refused logs a refused request, at most about once a second; the lines
// left out are counted in the next one.
func (s *Server) refused(msg string, r *http.Request) {
	if n, ok := s.refusals.allow(); ok {
		s.Logger.Warn(msg, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "not_logged_before", n)
	}
}

// logLimiter lets one log line through per second.
type logLimiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (l *logLimiter) allow() (dropped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < time.Second {
		l.dropped++
		return 0, false
	}
	dropped, l.dropped, l.last = l.dropped, 0, time.Now()
	return dropped, true
}

func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || s.Token == "" || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.Token)) != 1 {
			if s.Sessions != nil && r.Header.Get("Authorization") == "" {
				switch s.Sessions.Check(r) {
				case panel.Allowed:
					h(w, r.WithContext(context.WithValue(r.Context(), panelKey{}, true)))
					return
				case panel.Forged:
					s.refused("refused: a change with the panel's cookie but not its CSRF token or origin", r)
					writeError(w, http.StatusForbidden, "forbidden", "a change from the panel must carry its CSRF token ("+panel.CSRFHeader+") and come from its own origin")
					return
				}
			}
			s.refused("refused: bad or missing token", r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="taosagent"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required (see the token file in the taosagent home)")
			return
		}
		h(w, r)
	})
}

// healthz answers 200 {"status":"ok"}, or 503 {"status":"degraded",
// "problem"} while something keeps turns from running.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.Runner != nil {
		if p := s.Runner.Problem(); p != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "problem": p, "version": s.Version})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.Version})
}

// ---- helpers

// Error is the body of every error answer.
type Error = api.ErrorBody

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "the answer could not be encoded")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError is api.WriteError, the one writer of error answers.
var writeError = api.WriteError

// fail maps an error of the services to its answer.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ie *agent.InvalidError
	switch {
	case errors.As(err, &ie):
		writeError(w, http.StatusUnprocessableEntity, "invalid", err.Error())
	case errors.Is(err, runner.ErrInvalid):
		writeError(w, http.StatusUnprocessableEntity, "invalid", strings.TrimPrefix(err.Error(), "invalid: "))
	case errors.Is(err, eventlog.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, eventlog.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, eventlog.ErrInUse):
		writeError(w, http.StatusConflict, "in_use", err.Error())
	case errors.Is(err, eventlog.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, runner.ErrIdle):
		writeError(w, http.StatusConflict, "idle", err.Error())
	case errors.Is(err, control.ErrForbidden), errors.Is(err, control.ErrRefused):
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, control.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, control.ErrUpstream):
		writeError(w, http.StatusBadGateway, "upstream", strings.TrimPrefix(err.Error(), "upstream: "))
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "canceled", "the request was canceled")
	default:
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; see the daemon's log")
	}
}

// decode reads a JSON body into v strictly: one object, known fields only,
// within the size limit. It answers the error itself and reports false.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	// The Content-Type is not insisted on (curl -d sends a form type); the
	// body must be one JSON object whatever it says.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes", s.MaxBody))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return false
	}
	if err := repeatedKey(body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: "+err.Error())
		return false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: "+jsonProblem(err))
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: data after the object")
		return false
	}
	return true
}

// repeatedKey refuses an object that names a key twice, in any case:
// encoding/json would keep the last, matching keys case-insensitively
// ("api_key" and "API_KEY"), and two readers of one body could each
// believe a different value.
func repeatedKey(body []byte) error {
	d := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		t, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // Decode reports malformed JSON
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := t.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: t == '{', key: t == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				k := strings.ToLower(t)
				if top.keys[k] {
					return fmt.Errorf("the key %q appears twice (keys are matched without regard to case)", t)
				}
				top.keys[k] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// panelKey marks a request signed in through the panel.
type panelKey struct{}

// actor is who calls: the operator, through the API or the panel.
func actor(r *http.Request) control.Actor {
	if r.Context().Value(panelKey{}) != nil {
		return control.Actor{Kind: control.Operator, Channel: control.Panel}
	}
	return control.Actor{Kind: control.Operator, Channel: control.API}
}

// ---- providers

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
	Name       string          `json:"name"`
	Model      string          `json:"model"`
	Models     []string        `json:"models"`
	Prompt     string          `json:"prompt"`
	Permission json.RawMessage `json:"permission"`
	Tools      map[string]bool `json:"tools"`
	Limits     *agent.Limits   `json:"limits"`
	Budget     *agent.Budget   `json:"budget"`
	Fallback   string          `json:"fallback"`
	// UpstreamKey is the agent's own key at its LiteLLM proxy (write-only).
	UpstreamKey string `json:"upstream_key"`
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) {
	var b agentBody
	if !s.decode(w, r, &b) {
		return
	}
	v, err := s.Control.CreateAgent(r.Context(), actor(r), agent.Agent{Name: b.Name, Model: b.Model, Models: b.Models,
		Prompt: b.Prompt, Permission: b.Permission, Tools: b.Tools, Limits: b.Limits, Budget: b.Budget, Fallback: b.Fallback,
		UpstreamKey: b.UpstreamKey})
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
	var b struct {
		Text  string `json:"text"`
		Mode  string `json:"mode"`
		ID    string `json:"id"`
		Model string `json:"model"`
		Trace string `json:"trace_id"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	in, created, err := s.Control.Submit(r.Context(), actor(r), r.PathValue("name"), control.Message{Text: b.Text, Mode: b.Mode, ClientID: b.ID, Model: b.Model, TraceID: b.Trace})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"input": in.ID, "id": in.ClientID, "seq": in.Seq,
		"state": in.State, "duplicate": !created})
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

var knownKinds = map[event.Kind]bool{}

func init() {
	for _, k := range []event.Kind{event.Delta, event.Reasoning, event.ToolCall, event.ToolResult, event.Final, event.Error,
		event.InputAccepted, event.InputSteered, event.TurnStarted, event.Status, event.PermissionAsked, event.PermissionResolved,
		event.QuestionAsked, event.QuestionResolved, event.Usage, event.ModelSwitched, event.Instance} {
		knownKinds[k] = true
	}
}

// cursor reads after (and Last-Event-ID for streams), kinds and limit.
func cursor(r *http.Request, stream bool) (after int64, explicit bool, kinds []event.Kind, limit int, err error) {
	q := r.URL.Query()
	v := q.Get("after")
	if stream && r.Header.Get("Last-Event-ID") != "" {
		v = r.Header.Get("Last-Event-ID")
	}
	if v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return 0, false, nil, 0, errors.New("after: must be a seq (a non-negative integer)")
		}
		explicit = true
	}
	if ks := q.Get("kinds"); ks != "" {
		list := strings.Split(ks, ",")
		if len(list) > len(knownKinds) {
			return 0, false, nil, 0, fmt.Errorf("kinds: at most %d kinds", len(knownKinds))
		}
		for _, k := range list {
			if !knownKinds[event.Kind(k)] {
				return 0, false, nil, 0, fmt.Errorf("kinds: unknown kind %q", k)
			}
			if !slices.Contains(kinds, event.Kind(k)) {
				kinds = append(kinds, event.Kind(k))
			}
		}
	}
	limit = 1000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10000 {
			return 0, false, nil, 0, errors.New("limit: must be 1 to 10000")
		}
	}
	return after, explicit, kinds, limit, nil
}

// eventsRequest reads the agent and cursor of the two event routes; on bad
// input it answers and reports false.
func (s *Server) eventsRequest(w http.ResponseWriter, r *http.Request, stream bool) (name string, after int64, explicit bool, kinds []event.Kind, limit int, ok bool) {
	name = r.PathValue("name")
	after, explicit, kinds, limit, err := cursor(r, stream)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if _, err := s.Log.Agent(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	if v := r.URL.Query().Get("turns"); v != "" && !explicit {
		// Only the latest turns: begin at the n-th latest one's start.
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "bad_request", "turns: must be 1 to 10000")
			return
		}
		seq, err := s.Log.RecentTurnsStart(r.Context(), name, n)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		after = max(seq-1, 0)
	}
	return name, after, explicit, kinds, limit, true
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	name, after, _, kinds, limit, ok := s.eventsRequest(w, r, false)
	if !ok {
		return
	}
	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	last, n := after, 0
	err := s.Log.Scan(r.Context(), eventlog.Query{Agent: name, After: after, Kinds: kinds, Limit: limit}, func(rec eventlog.Record) error {
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(rec.Body)
		last, n = rec.Seq, n+1
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fmt.Fprintf(&buf, `],"last_seq":%d,"head":%d,"oldest_kept":%d}`+"\n", last, s.Log.Head(), s.Log.Floor()+1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	name, after, explicit, kinds, _, ok := s.eventsRequest(w, r, true)
	if !ok {
		return
	}
	sub, err := s.Log.Subscribe(name, after, explicit, kinds...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer sub.Close()
	rc := startStream(w, "text/event-stream")
	bw := newFrameWriter(w)
	bw.comment("taosagent events of " + name)
	if err := bw.flush(rc); err != nil {
		return
	}
	for {
		recs, quiet, err := s.next(r.Context(), sub, rc)
		switch {
		case err != nil:
			return // the client left, or the daemon is stopping
		case quiet:
			bw.comment("keep-alive")
		default:
			for _, rec := range recs {
				bw.frame(rec)
			}
		}
		if err := bw.flush(rc); err != nil {
			return
		}
	}
}

// startStream starts a streamed response of content type ct, which no
// cache keeps and no proxy buffers.
func startStream(w http.ResponseWriter, ct string) *http.ResponseController {
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w)
}

// next waits up to KeepAlive for sub's next records; quiet says none came
// and a keep-alive is due. An error ends the stream: the client left, or
// the daemon is stopping. Every write after it is bounded by WriteWait
// (frames may reach the connection before the flush).
func (s *Server) next(ctx context.Context, sub *eventlog.Sub, rc *http.ResponseController) (recs []eventlog.Record, quiet bool, err error) {
	kctx, cancel := context.WithTimeout(ctx, s.KeepAlive)
	recs, err = sub.Next(kctx, 512)
	cancel()
	rc.SetWriteDeadline(time.Now().Add(s.WriteWait))
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, true, nil
	}
	return recs, false, err
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if err := api.CheckApprovalState(state); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	as, err := s.Control.Approvals(r.Context(), state)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": as})
}

func (s *Server) replyApproval(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Decision string `json:"decision"`
		Message  string `json:"message"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	// The decision and the message are checked by the control service
	// (api.CheckDecision): 422 when wrong.
	ap, err := s.Control.Decide(r.Context(), actor(r), r.PathValue("id"), b.Decision, b.Message)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ap)
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err1 := intParam(q.Get("after"), 0)
	limit, err2 := intParam(q.Get("limit"), 1000)
	before, err3 := intParam(q.Get("before"), 0)
	if err1 != nil || err2 != nil || err3 != nil || limit == 0 || limit > 10000 {
		writeError(w, http.StatusBadRequest, "bad_request", "after and before must be non-negative integers, limit 1 to 10000")
		return
	}
	newest := false
	switch q.Get("newest") {
	case "", "false":
	case "true":
		newest = true
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "newest: true or false")
		return
	}
	aq := eventlog.AuditQuery{After: after, Before: before, Newest: newest, Limit: int(limit), Actor: q.Get("actor"), Action: q.Get("tool"), Outcome: q.Get("outcome")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "since: must be an RFC 3339 time")
			return
		}
		aq.Since = t
	}
	switch aq.Outcome {
	case "", "pending", "ok", "refused", "failed":
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "outcome: must be pending, ok, refused or failed")
		return
	}
	if len(aq.Actor) > 256 || len(aq.Action) > 128 {
		writeError(w, http.StatusBadRequest, "bad_request", "actor or tool: too long")
		return
	}
	es, err := s.Control.Audit(r.Context(), aq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es})
}

// intParam parses a non-negative integer parameter; "" gives def.
func intParam(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}
