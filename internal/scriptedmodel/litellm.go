package scriptedmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// LiteLLM stands in for a LiteLLM proxy in front of the scripted model: it
// enforces per-key model lists the way LiteLLM's virtual keys do, with
// LiteLLM's error shapes, and reports a cost per call in LiteLLM's
// x-litellm-response-cost header.
//
//	GET  /models            the models the key may access
//	POST /chat/completions  401 for an unknown key, 401 key_model_access_denied
//	                        for a model outside the key's list, else the
//	                        scripted model's answer
type LiteLLM struct {
	Model *Server // answers the permitted calls
	// Cost is the cost reported per call (default 0.0001).
	Cost float64

	mu    sync.Mutex
	keys  map[string][]string
	calls []ProxyCall
}

// ProxyCall is a chat call that reached the proxy.
type ProxyCall struct {
	Key, Model string
	Allowed    bool
}

// SetKey gives key exactly models (none: the key is revoked).
func (l *LiteLLM) SetKey(key string, models ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string][]string{}
	}
	if len(models) == 0 {
		delete(l.keys, key)
		return
	}
	l.keys[key] = slices.Clone(models)
}

// Calls returns the chat calls that reached the proxy so far.
func (l *LiteLLM) Calls() []ProxyCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *LiteLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	l.mu.Lock()
	models, known := l.keys[key]
	l.mu.Unlock()
	if !known {
		writeJSON(w, 401, map[string]any{"error": map[string]any{
			"message": "Authentication Error, Invalid proxy server token passed. Unable to find token in cache or `LiteLLM_VerificationTokenTable`",
			"type":    "auth_error", "param": "None", "code": "401"}})
		return
	}
	switch {
	case r.Method == "GET" && path == "/models":
		data := []map[string]any{}
		for _, m := range models {
			data = append(data, map[string]any{"id": m, "object": "model", "created": 1677610602, "owned_by": "openai"})
		}
		writeJSON(w, 200, map[string]any{"object": "list", "data": data})
	case r.Method == "POST" && path == "/chat/completions":
		body, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		var req struct {
			Model string `json:"model"`
		}
		json.Unmarshal(body, &req)
		allowed := slices.Contains(models, req.Model)
		l.mu.Lock()
		l.calls = append(l.calls, ProxyCall{Key: key, Model: req.Model, Allowed: allowed})
		l.mu.Unlock()
		if !allowed {
			quoted := make([]string, len(models))
			for i, m := range models {
				quoted[i] = "'" + m + "'"
			}
			writeJSON(w, 401, map[string]any{"error": map[string]any{
				"message": fmt.Sprintf("key not allowed to access model. This key can only access models=[%s]. Tried to access %s", strings.Join(quoted, ", "), req.Model),
				"type":    "key_model_access_denied", "param": "model", "code": "401"}})
			return
		}
		cost := l.Cost
		if cost == 0 {
			cost = 0.0001
		}
		w.Header().Set("X-Litellm-Response-Cost", fmt.Sprint(cost))
		r.Body = io.NopCloser(bytes.NewReader(body))
		l.Model.chat(w, r)
	default:
		writeJSON(w, 404, apiError(404, "no such route: "+r.Method+" "+r.URL.Path, "invalid_request_error"))
	}
}
