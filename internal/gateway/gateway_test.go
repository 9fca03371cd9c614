package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

const upstreamKey = "sk-upstream-secret-0123456789"

type env struct {
	gw       *gateway.Gateway
	log      *eventlog.Log
	srv      *httptest.Server
	key      string
	calls    chan gateway.Call
	mu       sync.Mutex
	seen     []seenReq // what the upstream received
	canceled chan struct{}
	model    *scriptedmodel.Server // the upstream's model
}

type seenReq struct {
	Auth string
	Body map[string]any
}

func newEnv(t testing.TB) *env {
	e := &env{calls: make(chan gateway.Call, 100), canceled: make(chan struct{}, 10)}
	model := &scriptedmodel.Server{}
	e.model = model
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		e.mu.Lock()
		e.seen = append(e.seen, seenReq{r.Header.Get("Authorization"), body})
		e.mu.Unlock()
		if strings.Contains(string(b), "echo-my-key") {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+upstreamKey+`"}}`)
			return
		}
		go func() { <-r.Context().Done(); e.canceled <- struct{}{} }()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		model.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	keys := agent.Keys{Dir: filepath.Join(dir, "keys")}
	ctx := context.Background()
	log.CreateProvider(ctx, agent.Provider{ID: "acme", BaseURL: up.URL + "/v1", Models: []agent.Model{{ID: "scripted-demo"}, {ID: "scripted-small"}}})
	keys.Put("acme", upstreamKey)
	log.CreateAgent(ctx, agent.Agent{Name: "a", Model: "acme/scripted-demo", Models: []string{"acme/scripted-demo"}})
	key, hash := gateway.NewKey()
	log.SetAgentKey(ctx, "a", hash)
	e.key, e.log = key, log
	e.gw = &gateway.Gateway{Log: log, Keys: keys, OnCall: func(c gateway.Call) { e.calls <- c }}
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) do(t testing.TB, method, path, key, body string) *http.Response {
	req, _ := http.NewRequest(method, e.srv.URL+"/llm/v1"+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func errorOf(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var v struct{ Error map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Error == nil {
		t.Fatalf("not an OpenAI error (%d): %v", resp.StatusCode, err)
	}
	return v.Error
}

func TestStreamedChatPassesThroughAndIsCounted(t *testing.T) {
	e := newEnv(t)
	resp := e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || d == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		json.Unmarshal([]byte(d), &ch)
		for _, c := range ch.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	resp.Body.Close()
	if text.String() != "Scripted demo chat" { // the scripted model's answer to a request without tools
		t.Errorf("streamed text %q", text.String())
	}
	c := <-e.calls
	if c.Agent != "a" || c.Model != "acme/scripted-demo" || c.InputTokens == 0 || c.OutputTokens != 20 {
		t.Errorf("counted %+v", c)
	}
	rows, _ := e.log.Usage(context.Background(), "a", "", "")
	if len(rows) != 1 || rows[0].Requests != 1 || rows[0].OutputTokens != 20 {
		t.Errorf("usage rows %+v", rows)
	}
	e.mu.Lock()
	got := e.seen[0]
	e.mu.Unlock()
	if got.Auth != "Bearer "+upstreamKey {
		t.Error("the upstream did not get the provider's key")
	}
	if so, _ := got.Body["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options sent upstream: %v", got.Body["stream_options"])
	}
	if got.Body["model"] != "scripted-demo" {
		t.Errorf("model sent upstream: %v", got.Body["model"])
	}
}

func TestOnlyThePermittedSetOnEveryRoute(t *testing.T) {
	e := newEnv(t)
	resp := e.do(t, "GET", "/models", e.key, "")
	var list struct{ Data []struct{ ID string } }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Data) != 1 || list.Data[0].ID != "scripted-demo" {
		t.Errorf("models %+v, want exactly the permitted set", list.Data)
	}
	for _, path := range []string{"/chat/completions", "/embeddings"} {
		resp = e.do(t, "POST", path, e.key, `{"model":"scripted-small","messages":[],"input":"x"}`)
		if resp.StatusCode != 401 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		er := errorOf(t, resp)
		want := "key not allowed to access model. This key can only access models=[scripted-demo]. Tried to access scripted-small"
		if er["message"] != want || er["type"] != "key_model_access_denied" || er["param"] != "model" || er["code"] != "401" {
			t.Errorf("%s: %v", path, er)
		}
	}
	e.mu.Lock()
	n := len(e.seen)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("%d refused calls reached the upstream", n)
	}
}

func TestBadKeysPathsAndBodies(t *testing.T) {
	e := newEnv(t)
	for _, key := range []string{"", "tak_nope", upstreamKey} {
		resp := e.do(t, "POST", "/chat/completions", key, `{"model":"scripted-demo","messages":[]}`)
		if resp.StatusCode != 401 || errorOf(t, resp)["code"] != "invalid_api_key" {
			t.Errorf("key %q: %d", key, resp.StatusCode)
		}
	}
	resp := e.do(t, "POST", "/completions", e.key, `{}`)
	if resp.StatusCode != 404 || errorOf(t, resp)["code"] != "not_found" {
		t.Errorf("unknown route: %d", resp.StatusCode)
	}
	resp = e.do(t, "POST", "/chat/completions", e.key, `{"model":`)
	if resp.StatusCode != 400 {
		t.Errorf("malformed: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp = e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","x":"`+strings.Repeat("a", 9<<20)+`"}`)
	if resp.StatusCode != 413 {
		t.Errorf("oversize: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// An upstream that echoes its key back in an error: passed through,
	// with its status, without the key.
	resp = e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","messages":[{"role":"user","content":"echo-my-key"}]}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || strings.Contains(string(b), upstreamKey) || !strings.Contains(string(b), "[REDACTED]") {
		t.Errorf("upstream error: %d %s", resp.StatusCode, b)
	}
}

func TestClientDisconnectCancelsTheUpstreamCall(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/llm/v1/chat/completions",
		strings.NewReader(`{"model":"scripted-demo","stream":true,"messages":[{"role":"user","content":"write slow output"}]}`))
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n') // the stream has begun
	cancel()
	resp.Body.Close()
	select {
	case <-e.canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream call went on after the client left")
	}
}

// A key rotated, or a model taken out of the set, holds from the next
// request on, though the caller was cached.
func TestChangesHoldAtOnceDespiteTheCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if resp := e.do(t, "GET", "/models", e.key, ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	a, _ := e.log.Agent(ctx, "a")
	a.Models = []string{"acme/scripted-small"}
	a.Model = "acme/scripted-small"
	e.log.UpdateAgent(ctx, a)
	e.gw.Invalidate()
	resp := e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","messages":[]}`)
	if resp.StatusCode != 401 {
		t.Errorf("a model taken out of the set: %d", resp.StatusCode)
	}
	resp.Body.Close()
	_, hash := gateway.NewKey()
	e.log.SetAgentKey(ctx, "a", hash)
	e.gw.Invalidate()
	if resp := e.do(t, "GET", "/models", e.key, ""); resp.StatusCode != 401 {
		t.Errorf("a replaced key: %d", resp.StatusCode)
	}
}

// A budget's hard limit refuses (429, budget_exceeded) before any upstream
// call; its soft share is reported once, when a call crosses it.
func TestBudget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	soft := make(chan string, 10)
	e.gw.OnSoftLimit = func(agent, what string) { soft <- agent + ": " + what }
	a, _ := e.log.Agent(ctx, "a")
	a.Budget = &agent.Budget{DailyTokens: 20, SoftPercent: 50} // the scripted model answers with 20 tokens out, and more in
	e.log.UpdateAgent(ctx, a)
	e.gw.Invalidate()
	call := func() *http.Response {
		return e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","messages":[{"role":"user","content":"hi"}]}`)
	}
	resp := call()
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first call: %d", resp.StatusCode)
	}
	<-e.calls
	select {
	case s := <-soft:
		if !strings.Contains(s, "daily tokens") {
			t.Errorf("soft: %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("crossing the soft share was not reported")
	}
	e.mu.Lock()
	before := len(e.seen)
	e.mu.Unlock()
	resp = call()
	if resp.StatusCode != 429 {
		t.Fatalf("over budget: %d", resp.StatusCode)
	}
	if er := errorOf(t, resp); er["type"] != "budget_exceeded" || !strings.Contains(er["message"].(string), "daily tokens") {
		t.Errorf("refusal: %v", er)
	}
	e.mu.Lock()
	after := len(e.seen)
	e.mu.Unlock()
	if after != before {
		t.Error("a call over budget reached the upstream")
	}
}

// When the agent's upstream fails (5xx, a refused key, unreachable), its
// fallback takes the call; the switch is reported and the call counted
// for the model that answered.
func TestFallbackTakesTheCallWhenTheUpstreamFails(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The fallback answers whatever is asked (the prompt that makes the
	// main upstream fail is taken out of it).
	model := &scriptedmodel.Server{}
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(strings.NewReplacer("fail500", "", "fail401", "").Replace(string(b))))
		model.ServeHTTP(w, r)
	}))
	t.Cleanup(direct.Close)
	e.log.CreateProvider(ctx, agent.Provider{ID: "direct", BaseURL: direct.URL + "/v1", Models: []agent.Model{{ID: "scripted-small"}}})
	e.gw.Keys.Put("direct", "sk-direct-0123456789")
	a, _ := e.log.Agent(ctx, "a")
	a.Fallback = "direct/scripted-small"
	e.log.UpdateAgent(ctx, a)
	e.gw.Invalidate()
	switched := make(chan string, 10)
	e.gw.OnFallback = func(agent, from, to, reason string) { switched <- from + " → " + to + ": " + reason }
	for _, prompt := range []string{"please fail500", "please fail401"} {
		// With a tool offered: the scripted model answers a request
		// without tools as a title request, whatever it says.
		resp := e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","messages":[{"role":"user","content":"`+prompt+`"}],`+
			`"tools":[{"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}]}`)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", prompt, resp.StatusCode, b)
		}
		var s string
		select {
		case s = <-switched:
		case <-time.After(10 * time.Second):
			t.Fatal("no switch reported")
		}
		if !strings.HasPrefix(s, "acme/scripted-demo → direct/scripted-small: the upstream answered") {
			t.Errorf("switch: %s", s)
		}
		select {
		case c := <-e.calls:
			if c.Model != "direct/scripted-small" {
				t.Errorf("counted for %s", c.Model)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the call was not counted")
		}
	}
	// A model the agent may not use is refused before anything: the
	// fallback is not a way around the permitted set.
	resp := e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-small","messages":[]}`)
	if resp.StatusCode != 401 {
		t.Errorf("the fallback's model asked directly: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// TestBudgetHoldsUnderConcurrentCalls: calls in flight hold what they may
// use, so eight streamed calls at once on a budget of 100 tokens cannot
// spend more than the budget and one call's use; the others get 429.
func TestBudgetHoldsUnderConcurrentCalls(t *testing.T) {
	e := newEnv(t)
	e.model.Delay = 20 * time.Millisecond // "slow": 40 chunks, so the calls overlap
	ctx := context.Background()
	a, _ := e.log.Agent(ctx, "a")
	a.Budget = &agent.Budget{DailyTokens: 100}
	e.log.UpdateAgent(ctx, a)
	e.gw.Invalidate()
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp := e.do(t, "POST", "/chat/completions", e.key, `{"model":"scripted-demo","stream":true,"messages":[{"role":"user","content":"write slow output"}]}`)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	ok, refused := 0, 0
	for c := range codes {
		switch c {
		case 200:
			ok++
		case 429:
			refused++
		default:
			t.Errorf("status %d", c)
		}
	}
	var used, most int64
	for range ok {
		c := <-e.calls
		u := c.InputTokens + c.OutputTokens
		used += u
		most = max(most, u)
	}
	t.Logf("%d calls answered, %d refused; %d tokens used (one call: at most %d)", ok, refused, used, most)
	if refused == 0 {
		t.Error("no call was refused")
	}
	if used > 100+most {
		t.Errorf("%d tokens used on a budget of 100 (one call uses up to %d)", used, most)
	}
}

// Through an agent's door, the gateway takes that agent's key and no
// other's: a key that leaked to another agent is worth nothing there.
func TestAKeyWorksOnlyThroughItsAgentsDoor(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		door string
		want int
	}{{"a", 200}, {"b", 403}} {
		srv := httptest.NewServer(door.Routes{LLM: e.gw}.For(c.door))
		req, _ := http.NewRequest("GET", srv.URL+"/llm/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != c.want || (c.want == 403 && !strings.Contains(string(b), "wrong_door")) {
			t.Errorf("a's key at %s's door: %d %s", c.door, resp.StatusCode, b)
		}
	}
}
