package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

// An agent on a LiteLLM proxy calls it with its own virtual key, never the
// provider's; a model outside its permitted set never reaches the proxy;
// the proxy's cost is what is counted.
func TestALiteLLMAgentCallsWithItsOwnKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	proxy := &scriptedmodel.LiteLLM{Model: &scriptedmodel.Server{}, Cost: 0.25}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	const vk = "sk-virtual-key-of-agent-b-000000"
	proxy.SetKey(vk, "gpt-a", "gpt-b")
	e.log.CreateProvider(ctx, agent.Provider{ID: "lite", Kind: agent.KindLiteLLM, BaseURL: srv.URL + "/v1"})
	e.gw.Keys.Put("lite", "sk-the-proxy-master-key-0000") // never an agent's
	e.gw.Keys.Put(agent.UpstreamKeyID("b"), vk)
	e.log.CreateAgent(ctx, agent.Agent{Name: "b", Model: "lite/gpt-a", Models: []string{"lite/gpt-a"}})
	key, hash := gateway.NewKey()
	e.log.SetAgentKey(ctx, "b", hash)

	a, _ := e.log.Agent(ctx, "b")
	scope, err := e.gw.Scope(ctx, a)
	if err != nil || strings.Join(scope, ",") != "lite/gpt-a,lite/gpt-b" {
		t.Fatalf("scope = %v, %v", scope, err)
	}

	tools := `"tools":[{"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}]`
	resp := e.do(t, "POST", "/chat/completions", key, `{"model":"gpt-a","messages":[{"role":"user","content":"hi"}],`+tools+`}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a permitted call: %d %s", resp.StatusCode, b)
	}
	select {
	case c := <-e.calls:
		if c.Model != "lite/gpt-a" || c.Cost != 0.25 {
			t.Errorf("counted %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call was not counted")
	}
	// gpt-b is in the key's scope at the proxy but not (yet) in the
	// agent's permitted set: refused here, in LiteLLM's own shape.
	resp = e.do(t, "POST", "/chat/completions", key, `{"model":"gpt-b","messages":[{"role":"user","content":"hi"}]}`)
	if er := errorOf(t, resp); resp.StatusCode != 401 || er["type"] != "key_model_access_denied" {
		t.Fatalf("a model outside the set: %d %v", resp.StatusCode, er)
	}
	calls := proxy.Calls()
	if len(calls) != 1 || calls[0].Key != vk || calls[0].Model != "gpt-a" {
		t.Fatalf("the proxy saw %+v; want one call of gpt-a with the agent's own key", calls)
	}
}

// Upstream timeouts are bounded and configurable: no headers within
// HeaderTimeout is a 504; a body silent for StallTimeout is cut.
func TestUpstreamTimeouts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "chat") {
			if b, _ := io.ReadAll(r.Body); strings.Contains(string(b), "stall") {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n")
				w.(http.Flusher).Flush()
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	e.log.CreateProvider(ctx, agent.Provider{ID: "slow", BaseURL: slow.URL + "/v1", Models: []agent.Model{{ID: "m"}}})
	e.log.CreateAgent(ctx, agent.Agent{Name: "s", Model: "slow/m", Models: []string{"slow/m"}})
	key, hash := gateway.NewKey()
	e.log.SetAgentKey(ctx, "s", hash)
	gw := &gateway.Gateway{Log: e.gw.Log, Keys: e.gw.Keys, HeaderTimeout: 300 * time.Millisecond, StallTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	post := func(body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/llm/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post(`{"model":"m","messages":[{"role":"user","content":"think forever"}]}`)
	if er := errorOf(t, resp); resp.StatusCode != 504 || er["code"] != "upstream_timeout" {
		t.Fatalf("no headers in time: %d %v", resp.StatusCode, er)
	}
	resp = post(`{"model":"m","stream":true,"messages":[{"role":"user","content":"stall"}]}`)
	b, err := io.ReadAll(resp.Body) // ends: the stream is cut, not left hanging
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "first") {
		t.Fatalf("a stalled stream: %d %q %v", resp.StatusCode, b, err)
	}
}
