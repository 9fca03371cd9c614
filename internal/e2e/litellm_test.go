package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/testenv"
)

// noKeyIn fails t if a file under dir holds any of keys.
func noKeyIn(t *testing.T, dir string, keys ...string) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			for _, k := range keys {
				if strings.Contains(string(b), k) {
					t.Errorf("%s holds a key of the upstream", p)
				}
			}
		}
		return nil
	})
}

// gatewayCall posts a chat to the daemon's gateway with agent's own
// gateway key (as its opencode would) and returns the status and body.
func (d *daemon) gatewayCall(t *testing.T, agent, model string) (int, string) {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(instanceDir(d.home, agent), "gateway.key"))
	if err != nil {
		t.Fatal(err)
	}
	return request(t, "POST", d.addr+"/llm/v1/chat/completions", strings.TrimSpace(string(key)),
		`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
}

// A LiteLLM provider, stood in by a proxy that enforces per-key model
// lists as LiteLLM does: an agent created with its own virtual key gets
// that key's scope as its permitted set; its opencode turns go through the
// gateway with that key (which never enters its directory); when the key
// loses a model, a sync narrows the set, and the gateway refuses the model
// before any call reaches the proxy.
func TestALiteLLMAgentFollowsItsKeysScope(t *testing.T) {
	t.Parallel()
	proxy := &scriptedmodel.LiteLLM{Model: &scriptedmodel.Server{}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	const vk, master = "sk-litellm-virtual-coder-0123456789", "sk-litellm-master-0123456789"
	proxy.SetKey(vk, "scripted-demo", "scripted-small")
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token,
		`{"id":"lite","kind":"litellm","base_url":"`+srv.URL+`/v1","api_key":"`+master+`","models":[]}`)
	if code != 201 {
		t.Fatalf("provider: %d %s", code, body)
	}
	a, err := d.c.CreateAgent(ctx, client.Agent{Name: "coder", Model: "lite/scripted-demo", UpstreamKey: vk})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Models, []string{"lite/scripted-demo", "lite/scripted-small"}) || !a.HasUpstreamKey {
		t.Fatalf("created: %v, has key %v", a.Models, a.HasUpstreamKey)
	}
	acc := d.send(ctx, "coder", "hello there", "")
	if evs := d.turnOf(ctx, "coder", acc.Seq, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("turn: %v %s", kinds(evs), last(evs).Data)
	}
	calls := proxy.Calls()
	if len(calls) == 0 {
		t.Fatal("no call reached the proxy")
	}
	for _, c := range calls {
		if c.Key != vk {
			t.Fatalf("the proxy was called with another key than the agent's own: %+v", c)
		}
	}
	noKeyIn(t, filepath.Join(d.home, "agents", "coder"), vk, master)
	cfgPath := agentConfig(d.home, "coder")
	cfg, _ := os.ReadFile(cfgPath)
	if !strings.Contains(string(cfg), `"scripted-small"`) {
		t.Fatalf("opencode's models are not the permitted set:\n%s", cfg)
	}

	// The key loses scripted-small at the proxy; a sync follows it.
	proxy.SetKey(vk, "scripted-demo")
	s, err := d.c.SyncModels(ctx, "coder")
	if err != nil || !s.Changed || !slices.Equal(s.Removed, []string{"lite/scripted-small"}) {
		t.Fatalf("sync: %+v %v", s, err)
	}
	before := len(proxy.Calls())
	code, body = d.gatewayCall(t, "coder", "scripted-small")
	if code != 401 || !strings.Contains(body, "key_model_access_denied") {
		t.Fatalf("a model the key lost: %d %s", code, body)
	}
	if n := len(proxy.Calls()); n != before {
		t.Fatalf("the refused call reached the proxy (%d calls, was %d)", n, before)
	}
	// The next turn runs on an opencode configured with the new set.
	acc = d.send(ctx, "coder", "and again", "")
	if evs := d.turnOf(ctx, "coder", acc.Seq, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("turn after the sync: %v %s", kinds(evs), last(evs).Data)
	}
	if cfg, _ := os.ReadFile(cfgPath); strings.Contains(string(cfg), `"scripted-small"`) {
		t.Fatalf("opencode still offers the model the key lost:\n%s", cfg)
	}
	out, _, code2 := d.run("sync-models", "coder")
	if code2 != 0 || !strings.Contains(out, "unchanged") {
		t.Fatalf("taosagent sync-models: %d %s", code2, out)
	}
}

// A model switch made in opencode itself (its TUI prompts the pinned
// session on another model) is seen by the codec as model.switched; one
// within the permitted set becomes the agent's model, one outside it is
// refused by the gateway and by the audit, and the agent stays as it was.
func TestAModelSwitchMadeInOpencode(t *testing.T) {
	t.Parallel()
	_, modelURL := testenv.Model(t)
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token,
		`{"id":"acme","base_url":"`+modelURL+`","models":["scripted-demo","scripted-small"]}`)
	if code != 201 {
		t.Fatalf("provider: %d %s", code, body)
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "sw", Model: "acme/scripted-demo", Models: []string{"acme/scripted-demo", "acme/scripted-small"}}); err != nil {
		t.Fatal(err)
	}
	acc := d.send(ctx, "sw", "hello", "")
	evs := d.turnOf(ctx, "sw", acc.Seq, acc.Input)
	if last(evs).Kind != "final" {
		t.Fatalf("turn: %v %s", kinds(evs), last(evs).Data)
	}
	at, err := d.c.Attach(ctx, "sw")
	if err != nil {
		t.Fatal(err)
	}
	oc := &opencode.Client{BaseURL: at.URL, Password: at.Password, Directory: at.Directory}
	// As the TUI does after /models: the next prompt names the model.
	head := last(evs).Seq
	if err := oc.PromptAsync(ctx, at.Session, opencode.Prompt{Text: "hello from the TUI", ProviderID: "acme", ModelID: "scripted-small"}); err != nil {
		t.Fatal(err)
	}
	waitSwitch(t, ctx, d, "sw", head, "acme/scripted-small")
	waitFor(t, ctx, func() bool {
		a, err := d.c.Agent(ctx, "sw")
		return err == nil && a.Model == "acme/scripted-small"
	})

	// The set narrows to scripted-small; a switch back to scripted-demo,
	// which the running opencode still offers, is refused.
	code, body = patch(t, d.addr+"/v1/agents/sw", d.c.Token, `{"models":["acme/scripted-small"]}`)
	if code != 200 {
		t.Fatalf("patch: %d %s", code, body)
	}
	waitTurnEnd(t, ctx, d, "sw", head) // the attached turn on scripted-small
	if err := oc.PromptAsync(ctx, at.Session, opencode.Prompt{Text: "back to the big one", ProviderID: "acme", ModelID: "scripted-demo"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, func() bool {
		es, _ := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "agent.model.switch"})
		for _, e := range es {
			if e.Outcome == "refused" && strings.Contains(e.Detail, "acme/scripted-demo") {
				return true
			}
		}
		return false
	})
	if a, _ := d.c.Agent(ctx, "sw"); a.Model != "acme/scripted-small" {
		t.Fatalf("a refused switch changed the agent's model to %s", a.Model)
	}
	// A turn through taosagent runs on the agent's model.
	acc = d.send(ctx, "sw", "hello again", "")
	if evs := d.turnOf(ctx, "sw", acc.Seq, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("turn: %v %s", kinds(evs), last(evs).Data)
	}
}

// waitSwitch waits for a model.switched event from opencode to model.
func waitSwitch(t *testing.T, ctx context.Context, d *daemon, agent string, after int64, to string) {
	t.Helper()
	err := d.c.Stream(ctx, agent, after, func(e client.Event) bool {
		return !(e.Kind == "model.switched" && e.Field("source") == "opencode" && e.Field("to") == to)
	})
	if err != nil {
		t.Fatalf("no switch to %s: %v", to, err)
	}
}

// waitTurnEnd waits for the end (final or error) of the first turn after
// seq after.
func waitTurnEnd(t *testing.T, ctx context.Context, d *daemon, agent string, after int64) {
	t.Helper()
	err := d.c.Stream(ctx, agent, after, func(e client.Event) bool { return e.Kind != "final" && e.Kind != "error" })
	if err != nil {
		t.Fatalf("no turn ended: %v", err)
	}
}

// An agent whose budget is spent: opencode would retry the gateway's 429
// for as long as the period lasts; the turn instead ends at once with one
// clean budget_exceeded error, and a raised budget lets the next one run.
func TestASpentBudgetEndsAnOpencodeTurnCleanly(t *testing.T) {
	t.Parallel()
	_, modelURL := testenv.Model(t)
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token,
		`{"id":"acme","base_url":"`+modelURL+`","models":["scripted-demo"]}`)
	if code != 201 {
		t.Fatalf("provider: %d %s", code, body)
	}
	code, body = request(t, "POST", d.addr+"/v1/agents", d.c.Token,
		`{"name":"thrifty","model":"acme/scripted-demo","budget":{"daily_tokens":1}}`)
	if code != 201 {
		t.Fatalf("agent: %d %s", code, body)
	}
	acc := d.send(ctx, "thrifty", "hello", "")
	d.turnOf(ctx, "thrifty", acc.Seq, acc.Input) // it may end either way: the budget is spent within it
	waitFor(t, ctx, func() bool {
		rows, _ := d.c.Usage(ctx, "thrifty", "", "")
		return len(rows) > 0 && rows[0].InputTokens > 0
	})
	t0 := time.Now()
	acc = d.send(ctx, "thrifty", "hello again", "")
	evs := d.turnOf(ctx, "thrifty", acc.Seq, acc.Input)
	terminal := 0
	for _, e := range evs {
		if e.Kind == "final" || e.Kind == "error" {
			terminal++
		}
	}
	if e := last(evs); e.Kind != "error" || e.Field("code") != "budget_exceeded" || terminal != 1 {
		t.Fatalf("turn on a spent budget: %v %s", kinds(evs), e.Data)
	}
	t.Logf("the turn on a spent budget ended in %v: %v", time.Since(t0), kinds(evs))
	code, body = patch(t, d.addr+"/v1/agents/thrifty", d.c.Token, `{"budget":{"daily_tokens":100000000}}`)
	if code != 200 {
		t.Fatalf("raise the budget: %d %s", code, body)
	}
	acc = d.send(ctx, "thrifty", "and now", "")
	if evs := d.turnOf(ctx, "thrifty", acc.Seq, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("turn after the budget was raised: %v %s", kinds(evs), last(evs).Data)
	}
}

// When the agent's upstream cannot be reached, its fallback answers the
// opencode turn; the turn says which model answered (model.switched from
// the gateway), and the audit has the switch.
func TestAFallbackAnswersAnOpencodeTurnWhenTheProxyIsDown(t *testing.T) {
	t.Parallel()
	_, modelURL := testenv.Model(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	for _, p := range []string{
		`{"id":"proxy","base_url":"` + downURL + `/v1","api_key":"sk-proxy-0123456789","models":["scripted-demo"]}`,
		`{"id":"direct","base_url":"` + modelURL + `","api_key":"sk-direct-0123456789","models":["scripted-small"]}`,
	} {
		if code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token, p); code != 201 {
			t.Fatalf("provider: %d %s", code, body)
		}
	}
	if code, body := request(t, "POST", d.addr+"/v1/agents", d.c.Token,
		`{"name":"resilient","model":"proxy/scripted-demo","fallback":"direct/scripted-small"}`); code != 201 {
		t.Fatalf("agent: %d %s", code, body)
	}
	acc := d.send(ctx, "resilient", "hello", "")
	evs := d.turnOf(ctx, "resilient", acc.Seq, acc.Input)
	if last(evs).Kind != "final" {
		t.Fatalf("turn with the proxy down: %v %s", kinds(evs), last(evs).Data)
	}
	var switched bool
	for _, e := range evs {
		switched = switched || (e.Kind == "model.switched" && e.Field("source") == "gateway" && e.Field("to") == "direct/scripted-small")
	}
	if !switched {
		t.Fatalf("the turn does not say its fallback answered: %v", kinds(evs))
	}
	es, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "gateway.fallback"})
	if err != nil || len(es) == 0 || !strings.Contains(es[0].Detail, "proxy/scripted-demo → direct/scripted-small") {
		t.Fatalf("audit of the fallback: %+v %v", es, err)
	}
}
