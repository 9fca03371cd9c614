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
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/panel"
	"github.com/taosagent/taosagent/internal/runner"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of this API.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// Server is the API. Set the fields, then serve Handler.
type Server struct {
	Log     eventlog.Store
	Runner  *runner.Manager
	Control *control.Service // required: every change and every host action goes through it
	Apps    *appgate.Gate    // required: the App Builder's gate (the /v1/apps routes)
	// MCP, when set, is served at /mcp (it authenticates by itself: the
	// operator token or an agent's MCP token).
	MCP http.Handler
	// LLM, when set, is the model gateway, served at /llm/v1/ (it
	// authenticates by itself: an agent's gateway key).
	LLM   http.Handler
	Token string // the bearer token every route but /healthz needs
	// StoreProblem, when set, says what is wrong with the store ("" if
	// nothing): a database that does not answer.
	StoreProblem func() string
	Version      string
	Logger       *slog.Logger
	KeepAlive    time.Duration // SSE keep-alive comment interval; default 15 s
	MaxBody      int64         // request body limit; default 1 MiB
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

	endOnce, closeOnce sync.Once
	end                chan struct{} // closed by EndStreams
}

// EndStreams ends every event stream now, and any begun later: the daemon
// is stopping or handing over (its server's RegisterOnShutdown), and
// clients resume by cursor. Without it, a server's Shutdown waits its
// whole timeout for streams that never end on their own.
func (s *Server) EndStreams() {
	end := s.ending()
	s.closeOnce.Do(func() { close(end) })
}

func (s *Server) ending() chan struct{} {
	s.endOnce.Do(func() { s.end = make(chan struct{}) })
	return s.end
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
		{"GET /v1/agents/{name}/conversations", s.listConversations, false},
		{"POST /v1/agents/{name}/conversations/{id}/resume", s.resumeConversation, false},
		{"POST /v1/agents/{name}/schedules", s.createSchedule, false},
		{"GET /v1/agents/{name}/schedules", s.listSchedules, false},
		{"DELETE /v1/agents/{name}/schedules/{id}", s.deleteSchedule, false},
		{"POST /v1/agents/{name}/schedules/{id}/run", s.runSchedule, false},
		{"POST /v1/agents/{name}/hooks", s.createHook, false},
		{"GET /v1/agents/{name}/hooks", s.listHooks, false},
		{"DELETE /v1/agents/{name}/hooks/{id}", s.deleteHook, false},
		{"POST /v1/notify/channels", s.createChannel, false},
		{"GET /v1/notify/channels", s.listChannels, false},
		{"DELETE /v1/notify/channels/{id}", s.deleteChannel, false},
		{"GET /v1/notify/vapid", s.vapid, false},
		{"GET /v1/pending/stream", s.pendingStream, false},
		{"GET /v1/tasks", s.listTasks, false},
		{"GET /v1/tasks/{id}", s.getTask, false},
		{"POST /v1/tasks/{id}/cancel", s.cancelTask, false},
		{"POST /hooks/{id}", s.deliver, true}, // the one open route besides /healthz: its signature authenticates it
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
		{"GET /v1/questions", s.listQuestions, false},
		{"POST /v1/questions/{id}", s.answerQuestion, false},
		{"GET /v1/library", s.listLibrary, false},
		{"POST /v1/library", s.addLibraryItem, false},
		{"POST /v1/library/sync", s.syncLibrary, false},
		{"GET /v1/library/sources", s.librarySources, false},
		{"GET /v1/library/{kind}/{name}", s.showLibraryItem, false},
		{"POST /v1/library/{kind}/{name}/accept", s.acceptLibraryItem, false},
		{"DELETE /v1/library/{kind}/{name}", s.removeLibraryItem, false},
		{"PUT /v1/library/mcp/{name}/secrets/{secret}", s.putLibrarySecret, false},
		{"DELETE /v1/library/mcp/{name}/secrets/{secret}", s.putLibrarySecret, false},
		{"GET /v1/audit", s.listAudit, false},
		{"GET /v1/cluster", s.clusterStatus, false},
		{"POST /v1/cluster/drain", s.drain, false},
		{"PUT /v1/agents/{name}/pin", s.pin, false},
		{"POST /v1/agents/{name}/move", s.move, false},
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
	p := ""
	if s.StoreProblem != nil {
		p = s.StoreProblem()
	}
	if p == "" && s.Runner != nil {
		p = s.Runner.Problem()
	}
	if p != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "problem": p, "version": s.Version})
		return
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
	case errors.Is(err, eventlog.ErrNotFound), errors.Is(err, library.ErrNotFound):
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
	case errors.Is(err, control.ErrSignature):
		writeError(w, http.StatusUnauthorized, "bad_signature", err.Error())
	case errors.Is(err, control.ErrRateLimited):
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusTooManyRequests, "rate_limited", err.Error())
	case errors.Is(err, control.ErrUpstream):
		writeError(w, http.StatusBadGateway, "upstream", strings.TrimPrefix(err.Error(), "upstream: "))
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "canceled", "the request was canceled")
	default:
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; see the daemon's log")
	}
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
