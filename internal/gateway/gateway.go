// Package gateway is taosagent's model gateway: an OpenAI-compatible
// endpoint at /llm/v1 that every agent's opencode talks to with a key of
// its own. The gateway holds the upstream providers' keys (no agent ever
// does), enforces each agent's permitted models on every route, and
// counts usage from the upstream's own figures.
//
// Requests pass through unchanged but for the model name and, on a
// streamed chat, stream_options.include_usage (so that a streamed call is
// never counted as zero).
package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/randid"
)

// NewKey returns a new agent key and its hash.
func NewKey() (key, hash string) {
	key = "tak_" + randid.Secret()
	return key, Hash(key)
}

// Hash is how a key is stored.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Call is one call through the gateway, as counted.
type Call struct {
	Agent        string
	Model        string // provider/model
	InputTokens  int64
	OutputTokens int64
	Cost         float64
	Status       int
	Duration     time.Duration
}

// Store is what the gateway needs of the event log: the agents and
// providers it routes for, their keys and their usage.
type Store interface {
	eventlog.Metering
	Agent(ctx context.Context, name string) (agent.Agent, error)
	Provider(ctx context.Context, id string) (agent.Provider, error)
}

// Gateway serves /llm/v1. Set the fields, then serve it.
type Gateway struct {
	Log  Store
	Keys agent.Keys // the upstream providers' keys
	// DemoURL is the upstream of the built-in demo provider, "" if none.
	DemoURL string
	Logger  *slog.Logger
	// Upstream is the client for upstream calls; default: one built from
	// the timeouts below, with no overall timeout (streams are long).
	Upstream *http.Client
	// ConnectTimeout bounds connecting to an upstream (default 30 s);
	// HeaderTimeout the wait for its response's headers, which is the
	// model's time to its first byte (default 5 min); StallTimeout the
	// silence within a response's body, past which the call is ended
	// (default 5 min). A call that runs past one is a 504 when nothing
	// was sent yet; a stream is cut.
	ConnectTimeout, HeaderTimeout, StallTimeout time.Duration
	MaxBody                                     int64 // a request's body limit; default 8 MiB
	// OnCall, when set, is told of every counted call (after it ended).
	OnCall func(Call)
	// OnFallback, when set, is told when a call goes to the agent's
	// fallback because its upstream failed (from, to: provider/model).
	OnFallback func(agent, from, to, reason string)
	// OnSoftLimit, when set, is told when a call takes an agent past the
	// soft share of one of its budget's limits (once per crossing).
	OnSoftLimit func(agent, what string)

	once sync.Once
	gen  atomic.Uint64 // bumped by Invalidate
	mu   sync.Mutex
	auth map[string]cached // key hash → its caller, as of a generation

	resMu    sync.Mutex       // guards reserved; held while a call is admitted
	reserved map[string]int64 // agent → tokens reserved by its calls in flight
}

type cached struct {
	c   caller
	gen uint64
}

// Invalidate forgets every cached caller: an agent, a provider or a key
// changed. The daemon calls it after each such change, so that a revoked
// key or a narrowed permitted set holds from the next request on.
func (g *Gateway) Invalidate() { g.gen.Add(1) }

func (g *Gateway) init() {
	g.once.Do(func() {
		if g.Logger == nil {
			g.Logger = slog.New(slog.DiscardHandler)
		}
		if g.MaxBody <= 0 {
			g.MaxBody = 8 << 20
		}
		if g.ConnectTimeout <= 0 {
			g.ConnectTimeout = 30 * time.Second
		}
		if g.HeaderTimeout <= 0 {
			g.HeaderTimeout = 5 * time.Minute // a model may think long before its first byte
		}
		if g.StallTimeout <= 0 {
			g.StallTimeout = 5 * time.Minute
		}
		if g.Upstream == nil {
			g.Upstream = &http.Client{Transport: &http.Transport{
				DialContext:           (&net.Dialer{Timeout: g.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
				ResponseHeaderTimeout: g.HeaderTimeout,
				MaxIdleConnsPerHost:   64,
				IdleConnTimeout:       90 * time.Second,
				ForceAttemptHTTP2:     true,
			}}
		}
	})
}

// apiError writes an error in the OpenAI shape.
func apiError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	var p any
	if param != "" {
		p = param
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": p, "code": code}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// caller is an authenticated agent with what it may reach.
type caller struct {
	agent    agent.Agent
	provider agent.Provider
	baseURL  string
	key      string
	fallback *fallback // the agent's fallback, nil if none
}

// fallback is where the gateway sends a call whose upstream failed.
type fallback struct {
	full, id string // provider/model, and the model's id there
	baseURL  string
	key      string
}

// upstreamID is model's id at the upstream, and its full provider/model
// name, when the agent may use it.
func (c caller) resolve(model string) (id, full string, ok bool) {
	for _, m := range c.agent.Models {
		_, mid, _ := agent.SplitModel(m)
		if model == m || model == mid {
			return mid, m, true
		}
	}
	return "", "", false
}

func (c caller) permitted() []string {
	out := make([]string, len(c.agent.Models))
	for i, m := range c.agent.Models {
		_, out[i], _ = agent.SplitModel(m)
	}
	return out
}

// authenticate finds the agent of the request's key (cached until the
// next Invalidate).
func (g *Gateway) authenticate(r *http.Request) (caller, int, string) {
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !strings.EqualFold(scheme, "Bearer") || key == "" {
		return caller{}, http.StatusUnauthorized, "no API key: send Authorization: Bearer <the agent's key>"
	}
	h := Hash(key)
	gen := g.gen.Load()
	g.mu.Lock()
	e, ok := g.auth[h]
	g.mu.Unlock()
	if ok && e.gen == gen {
		return e.c, 0, ""
	}
	c, status, msg := g.lookup(r.Context(), h)
	if status == 0 {
		g.mu.Lock()
		if g.auth == nil || len(g.auth) > 10000 {
			g.auth = map[string]cached{}
		}
		g.auth[h] = cached{c, gen}
		g.mu.Unlock()
	}
	return c, status, msg
}

// lookup reads the caller of key hash h from the store.
func (g *Gateway) lookup(ctx context.Context, h string) (caller, int, string) {
	name, err := g.Log.AgentOfKey(ctx, h)
	if err != nil {
		return caller{}, http.StatusUnauthorized, "invalid API key (revoked, or never issued)"
	}
	a, err := g.Log.Agent(ctx, name)
	if err != nil {
		return caller{}, http.StatusUnauthorized, "invalid API key: its agent is gone"
	}
	pid, _, _ := agent.SplitModel(a.Model)
	p, err := g.Log.Provider(ctx, pid)
	if err != nil {
		return caller{}, http.StatusBadGateway, "the agent's provider " + pid + " is not configured"
	}
	c := caller{agent: a, provider: p}
	if c.baseURL, c.key, err = g.reach(p, a.Name); err != nil {
		return caller{}, http.StatusBadGateway, err.Error()
	}
	if a.Fallback != "" {
		fpid, fid, _ := agent.SplitModel(a.Fallback)
		if fp, err := g.Log.Provider(ctx, fpid); err == nil {
			if base, key, err := g.reach(fp, a.Name); err == nil {
				c.fallback = &fallback{full: a.Fallback, id: fid, baseURL: base, key: key}
			}
		}
	}
	return c, 0, ""
}

// reach is a provider's base URL and the key agent name calls it with:
// for a LiteLLM proxy the agent's own key, else (or when it has none) the
// provider's.
func (g *Gateway) reach(p agent.Provider, name string) (baseURL, key string, err error) {
	if p.Demo {
		if g.DemoURL == "" {
			return "", "", errors.New("the demo provider is switched off")
		}
		return g.DemoURL, "demo-key-not-secret", nil
	}
	if p.Kind == agent.KindLiteLLM {
		if key, err = g.Keys.Get(agent.UpstreamKeyID(name)); err != nil {
			return "", "", errors.New("the agent's key at " + p.ID + " cannot be read")
		}
		if key != "" {
			return p.BaseURL, key, nil
		}
	}
	if key, err = g.Keys.Get(p.ID); err != nil {
		return "", "", errors.New("the provider's key cannot be read")
	}
	return p.BaseURL, key, nil
}

// MaxScope bounds how many models a key's scope may list.
const MaxScope = 256

// Scope lists the models (provider/model) agent a's key may access at its
// provider, as the provider itself answers GET /models with that key: a
// LiteLLM proxy lists exactly what a virtual key may call. Errors never
// carry a key.
func (g *Gateway) Scope(ctx context.Context, a agent.Agent) ([]string, error) {
	g.init()
	pid, _, _ := agent.SplitModel(a.Model)
	p, err := g.Log.Provider(ctx, pid)
	if err != nil {
		return nil, err
	}
	base, key, err := g.reach(p, a.Name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/models", nil)
	if err != nil {
		return nil, errors.New("the provider's URL is not usable")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := g.Upstream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the provider %s cannot be reached: %s", p.ID, g.clean(err.Error(), caller{key: key}))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the provider %s answered %s to GET /models: %s", p.ID, resp.Status, g.clean(string(b), caller{key: key}))
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("the provider %s answered GET /models with no model list", p.ID)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, m := range list.Data {
		full := p.ID + "/" + m.ID
		if _, ok := p.Model(m.ID); !ok || seen[full] {
			continue // not a model id taosagent can name, or a repeat
		}
		if len(out) == MaxScope {
			return nil, fmt.Errorf("the provider %s lists more than %d models for the key", p.ID, MaxScope)
		}
		seen[full] = true
		out = append(out, full)
	}
	return out, nil
}

// ServeHTTP serves /llm/v1/…
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.init()
	path := strings.TrimPrefix(r.URL.Path, "/llm/v1")
	route := r.Method + " " + path
	switch route {
	case "GET /models", "POST /chat/completions", "POST /embeddings":
	default:
		apiError(w, http.StatusNotFound, "invalid_request_error", "not_found", "", "no route "+r.Method+" /llm/v1"+path+
			"; the gateway serves GET /models, POST /chat/completions and POST /embeddings")
		return
	}
	c, status, msg := g.authenticate(r)
	if status != 0 {
		code := "invalid_api_key"
		if status != http.StatusUnauthorized {
			code = "upstream_unavailable"
		}
		apiError(w, status, "authentication_error", code, "", msg)
		return
	}
	if !door.Admits(r.Context(), c.agent.Name) {
		// A key works only through its own agent's door.
		apiError(w, http.StatusForbidden, "authentication_error", "wrong_door", "", "this key is not the key of the agent whose instance sent it")
		return
	}
	if route == "GET /models" {
		data := []map[string]any{}
		for _, m := range c.permitted() {
			data = append(data, map[string]any{"id": m, "object": "model", "created": 0, "owned_by": c.provider.ID})
		}
		b, _ := json.Marshal(map[string]any{"object": "list", "data": data})
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		return
	}
	g.forward(w, r, c, path)
}

// forward passes a POST through to the agent's upstream.
//
// It is long: one request's path in the order it takes (admission, the
// upstream call, the stream, the accounting), so that each refusal and each
// charge reads where it happens.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, c caller, path string) {
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		apiError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "", fmt.Sprintf("the body is larger than %d bytes", g.MaxBody))
		return
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "bad_request", "", "the body could not be read")
		return
	}
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "", "the body is not a JSON object")
		return
	}
	var model string
	if json.Unmarshal(req["model"], &model) != nil || model == "" {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "missing_model", "model", "model: is required")
		return
	}
	id, full, ok := c.resolve(model)
	if !ok {
		// LiteLLM's shape, so that clients that know LiteLLM understand it.
		apiError(w, http.StatusUnauthorized, "key_model_access_denied", "401", "model",
			fmt.Sprintf("key not allowed to access model. This key can only access models=%s. Tried to access %s", modelList(c.permitted()), model))
		return
	}
	settle, msg := g.admit(r.Context(), c.agent, reservation(body, req, c.provider, id))
	if msg != "" {
		apiError(w, http.StatusTooManyRequests, "budget_exceeded", "budget_exceeded", "", msg)
		return
	}
	counted := false
	defer func() {
		if !counted {
			settle() // nothing to count: the call never reached a model
		}
	}()
	var stream bool
	json.Unmarshal(req["stream"], &stream)
	if stream && path == "/chat/completions" {
		opts := map[string]json.RawMessage{}
		json.Unmarshal(req["stream_options"], &opts)
		if string(opts["include_usage"]) != "true" {
			opts["include_usage"] = json.RawMessage("true")
			req["stream_options"], _ = json.Marshal(opts)
		}
	}
	// The upstream call ends with the client's request, or after
	// StallTimeout of silence in its response's body (the timer runs from
	// the headers on; every byte that arrives resets it).
	upCtx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stall := time.AfterFunc(time.Hour, func() { cancel(errStalled) })
	stall.Stop()
	defer stall.Stop()
	send := func(baseURL, key, id string) (*http.Response, error) {
		req["model"], _ = json.Marshal(id) // the upstream's own name of the model
		b := body
		if id != model || stream {
			b, _ = json.Marshal(req)
		}
		up, err := http.NewRequestWithContext(upCtx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+path, bytes.NewReader(b))
		if err != nil {
			return nil, errors.New("the provider's URL is not usable")
		}
		up.Header.Set("Content-Type", "application/json")
		if a := r.Header.Get("Accept"); a != "" {
			up.Header.Set("Accept", a)
		}
		if key != "" {
			up.Header.Set("Authorization", "Bearer "+key)
		}
		return g.Upstream.Do(up)
	}
	resp, err := send(c.baseURL, c.key, id)
	// The upstream failed (cannot be reached, 5xx, refused the key): the
	// agent's fallback, if it has one, takes the call.
	if f := c.fallback; f != nil && r.Context().Err() == nil && (err != nil || resp.StatusCode >= 500 || resp.StatusCode == 401 || resp.StatusCode == 403) {
		reason := "cannot be reached"
		if err == nil {
			reason = "answered " + resp.Status
			resp.Body.Close()
		}
		if g.OnFallback != nil {
			g.OnFallback(c.agent.Name, full, f.full, "the upstream "+reason)
		}
		c.key, full = f.key, f.full // redaction and counting follow the call
		resp, err = send(f.baseURL, f.key, f.id)
	}
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left: the upstream call was canceled with it
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(context.Cause(upCtx), errStalled) {
			apiError(w, http.StatusGatewayTimeout, "api_error", "upstream_timeout", "", "the provider "+c.provider.ID+" did not answer in time: "+g.clean(err.Error(), c))
			return
		}
		apiError(w, http.StatusBadGateway, "api_error", "upstream_unavailable", "", "the provider "+c.provider.ID+" cannot be reached: "+g.clean(err.Error(), c))
		return
	}
	defer resp.Body.Close()
	stall.Reset(g.StallTimeout)
	resp.Body = &stallReader{ReadCloser: resp.Body, t: stall, d: g.StallTimeout}
	call := Call{Agent: c.agent.Name, Model: full, Status: resp.StatusCode}
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := g.clean(string(b), c)
		w.Header().Set("Content-Type", "application/json")
		if !json.Valid([]byte(msg)) {
			apiError(w, resp.StatusCode, "api_error", strconv.Itoa(resp.StatusCode), "", "the provider answered "+resp.Status+": "+msg)
		} else {
			w.WriteHeader(resp.StatusCode)
			io.WriteString(w, msg)
		}
		return
	}
	for _, h := range []string{"Content-Type", "Cache-Control", "X-Request-Id"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	if v, err := strconv.ParseFloat(resp.Header.Get("X-Litellm-Response-Cost"), 64); err == nil {
		call.Cost = v
	}
	w.WriteHeader(resp.StatusCode)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		g.relayStream(w, resp.Body, &call)
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		w.Write(b)
		readUsage(b, &call)
	}
	call.Duration = time.Since(start)
	counted = true
	g.count(call, c.agent.Budget, settle)
}

// errStalled: an upstream response went silent for StallTimeout.
var errStalled = errors.New("the upstream went silent")

// stallReader resets the stall timer with every read that brings bytes.
type stallReader struct {
	io.ReadCloser
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}

// readers holds the line readers of relayed streams: a 64 KiB buffer per
// stream is not allocated (and cleared) anew for each call.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// relayStream copies an SSE stream to the client event by event, flushing
// each, and reads the usage chunk on the way.
func (g *Gateway) relayStream(w http.ResponseWriter, body io.Reader, call *Call) {
	rc := http.NewResponseController(w)
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); readers.Put(br) }()
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte("data: ")) && bytes.Contains(line, []byte(`"usage":{`)) {
				readUsage(bytes.TrimSpace(line[6:]), call)
			}
			if _, werr := w.Write(line); werr != nil {
				return
			}
			if len(line) <= 2 { // the blank line that ends an event
				rc.Flush()
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			rc.Flush()
			return
		}
	}
}

// readUsage reads OpenAI's usage object of a response or chunk.
func readUsage(b []byte, call *Call) {
	var v struct {
		Usage *struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(b, &v) == nil && v.Usage != nil {
		call.InputTokens, call.OutputTokens = v.Usage.Prompt, v.Usage.Completion
	}
}

// count records a call's usage, off the response's path, then settles
// its reservation (the usage now counts instead), and says when the call
// took its agent past the soft share of a budget's limit.
func (g *Gateway) count(c Call, b *agent.Budget, settle func()) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		defer settle()
		var before []spent
		if b != nil {
			before = g.spent(ctx, c.Agent, *b)
		}
		if err := g.Log.AddUsage(ctx, c.Agent, c.Model, time.Now(), c.InputTokens, c.OutputTokens, c.Cost); err != nil {
			g.Logger.Warn("usage could not be recorded", "agent", c.Agent, "err", err)
		}
		if g.OnCall != nil {
			g.OnCall(c)
		}
		if b == nil || g.OnSoftLimit == nil {
			return
		}
		for i, after := range g.spent(ctx, c.Agent, *b) {
			soft := after.limit * b.Soft()
			if i < len(before) && before[i].used < soft && after.used >= soft {
				g.OnSoftLimit(c.Agent, fmt.Sprintf("%s: %.6g of %.6g used (past %d%%)", after.what, after.used, after.limit, int(b.Soft()*100)))
			}
		}
	}()
}

// spent is the use of one limit of a budget.
type spent struct {
	what        string
	used, limit float64
	tokens      bool // a token limit (else a cost limit)
}

// spent measures each limit a budget sets.
func (g *Gateway) spent(ctx context.Context, name string, b agent.Budget) []spent {
	now := time.Now().UTC()
	var out []spent
	for _, p := range []struct {
		name, since string
		tokens      int64
		cost        float64
	}{{"daily", now.Format(time.DateOnly), b.DailyTokens, b.DailyCost}, {"monthly", now.Format("2006-01") + "-01", b.MonthlyTokens, b.MonthlyCost}} {
		if p.tokens <= 0 && p.cost <= 0 {
			continue
		}
		tok, cost, _ := g.Log.UsageSince(ctx, name, p.since)
		if p.tokens > 0 {
			out = append(out, spent{p.name + " tokens", float64(tok), float64(p.tokens), true})
		}
		if p.cost > 0 {
			out = append(out, spent{p.name + " cost", cost, p.cost, false})
		}
	}
	return out
}

// DefaultOutputCeiling is the output a call is assumed to be able to
// use when it sets no max_tokens and its model's ceiling is not known.
const DefaultOutputCeiling = 4096

// reservation is the tokens a call may use, reserved against its agent's
// token budgets while it runs: its prompt (estimated as the request's
// bytes / 4, tools and all) plus its output, min(max_tokens, the model's
// output ceiling). Both input and output tokens count against a budget.
func reservation(body []byte, req map[string]json.RawMessage, p agent.Provider, id string) int64 {
	out := int64(DefaultOutputCeiling)
	if m, ok := p.Model(id); ok && m.Output > 0 {
		out = int64(m.Output)
	}
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		var n int64
		if json.Unmarshal(req[k], &n) == nil && n > 0 && n < out {
			out = n
		}
	}
	return int64(len(body))/4 + out
}

// admit lets a call of agent a start, or says why it may not: a call may
// start only while the tokens spent plus the tokens reserved by the
// agent's calls in flight are below each token limit, and the cost spent
// below each cost limit. An admitted call reserves est tokens until
// settle, which the caller calls once its usage is recorded (or when it
// never reached a model). So concurrent calls cannot overspend: at most
// one call overshoots a token limit, by its own use beyond what was left.
// Cost is known only after a call, so a cost limit is checked, not
// reserved.
func (g *Gateway) admit(ctx context.Context, a agent.Agent, est int64) (settle func(), msg string) {
	if a.Budget == nil {
		return func() {}, ""
	}
	g.resMu.Lock()
	defer g.resMu.Unlock()
	held := g.reserved[a.Name]
	for _, s := range g.spent(ctx, a.Name, *a.Budget) {
		if s.used >= s.limit {
			return nil, fmt.Sprintf("budget exceeded: agent %s has used its %s (%.6g of %.6g); it resets with the next period, or a person raises it", a.Name, s.what, s.used, s.limit)
		}
		if s.tokens && s.used+float64(held) >= s.limit {
			return nil, fmt.Sprintf("budget exceeded: agent %s has used %.6g of its %s (%.6g) and its calls in flight hold %d more; try again when they end", a.Name, s.used, s.what, s.limit, held)
		}
	}
	if g.reserved == nil {
		g.reserved = map[string]int64{}
	}
	g.reserved[a.Name] += est
	var once sync.Once
	return func() {
		once.Do(func() {
			g.resMu.Lock()
			defer g.resMu.Unlock()
			if g.reserved[a.Name] -= est; g.reserved[a.Name] <= 0 {
				delete(g.reserved, a.Name)
			}
		})
	}, ""
}

// clean redacts the caller's upstream key from what the upstream said
// (some echo it back in their errors) and bounds it.
func (g *Gateway) clean(s string, c caller) string {
	for _, k := range append(g.Keys.All(), c.key) {
		if len(k) >= 4 {
			s = strings.ReplaceAll(s, k, "[REDACTED]")
		}
	}
	if len(s) > 4096 {
		s = s[:4096]
	}
	return s
}

func modelList(ms []string) string {
	return "[" + strings.Join(ms, ", ") + "]"
}
