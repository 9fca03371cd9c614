package control_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

const virtualKey = "sk-litellm-virtual-0123456789abcdef"

// liteFixture is a control service whose gateway reaches a LiteLLM stand-in
// that enforces per-key model lists, with a provider "lite" on it.
func liteFixture(t *testing.T) (*controltest.Fixture, *scriptedmodel.LiteLLM, *httptest.Server) {
	f := controltest.New(t)
	proxy := &scriptedmodel.LiteLLM{Model: &scriptedmodel.Server{}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	gw := &gateway.Gateway{Log: f.Log, Keys: f.Svc.Keys}
	f.Svc.Scope = gw.Scope
	if _, err := f.Svc.CreateProvider(t.Context(), controltest.Operator, agent.Provider{ID: "lite", Kind: agent.KindLiteLLM, BaseURL: srv.URL + "/v1"}); err != nil {
		t.Fatal(err)
	}
	return f, proxy, srv
}

func TestALiteLLMAgentsModelsAreItsKeysScope(t *testing.T) {
	f, proxy, _ := liteFixture(t)
	ctx := t.Context()
	proxy.SetKey(virtualKey, "gpt-a", "gpt-b")

	// A model the key cannot access is refused at creation; nothing stays.
	_, err := f.Svc.CreateAgent(ctx, controltest.Operator, agent.Agent{Name: "coder", Model: "lite/gpt-z", UpstreamKey: virtualKey})
	if !agent.IsInvalid(err) || !strings.Contains(err.Error(), "may not access lite/gpt-z") {
		t.Fatalf("create on a model outside the key: %v", err)
	}
	if _, err := f.Log.Agent(ctx, "coder"); err == nil {
		t.Fatal("the refused agent was stored")
	}
	if k, _ := f.Svc.Keys.Get(agent.UpstreamKeyID("coder")); k != "" {
		t.Fatal("the refused agent's key was kept")
	}

	// Created with the key: its permitted set is the key's scope.
	v, err := f.Svc.CreateAgent(ctx, controltest.Operator, agent.Agent{Name: "coder", Model: "lite/gpt-a", UpstreamKey: virtualKey})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.Models, []string{"lite/gpt-a", "lite/gpt-b"}) || !v.HasUpstreamKey || v.UpstreamKey != "" {
		t.Fatalf("created: models %v, has key %v, key shown %q", v.Models, v.HasUpstreamKey, v.UpstreamKey)
	}
	st, err := os.Stat(filepath.Join(f.Home, "keys", agent.UpstreamKeyID("coder")+".key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the agent's key file: %v %v", st, err)
	}

	// Its models are the key's, not set by hand.
	models := []string{"lite/gpt-a"}
	if _, err := f.Svc.UpdateAgent(ctx, controltest.Operator, "coder", control.AgentPatch{Models: &models}); !agent.IsInvalid(err) {
		t.Fatalf("models set by hand on a LiteLLM agent: %v", err)
	}

	// The key loses gpt-a at the proxy: a sync follows, and the agent's
	// model gives way to what is left.
	proxy.SetKey(virtualKey, "gpt-b", "gpt-c")
	s, err := f.Svc.SyncModels(ctx, controltest.Operator, "coder")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Changed || s.Model != "lite/gpt-b" || !slices.Equal(s.Models, []string{"lite/gpt-b", "lite/gpt-c"}) ||
		!slices.Equal(s.Added, []string{"lite/gpt-c"}) || !slices.Equal(s.Removed, []string{"lite/gpt-a"}) {
		t.Fatalf("sync = %+v", s)
	}
	a, _ := f.Log.Agent(ctx, "coder")
	if a.Model != "lite/gpt-b" || !slices.Equal(a.Models, s.Models) {
		t.Fatalf("stored agent: %s %v", a.Model, a.Models)
	}
	gpt := "lite/gpt-a"
	if _, err := f.Svc.UpdateAgent(ctx, controltest.Operator, "coder", control.AgentPatch{Model: &gpt}); !agent.IsInvalid(err) {
		t.Fatalf("a model the key lost: %v", err)
	}
	if s, err := f.Svc.SyncModels(ctx, controltest.Operator, "coder"); err != nil || s.Changed {
		t.Fatalf("a second sync changed something: %+v %v", s, err)
	}

	// The audit has each sync, and never the key.
	syncs := f.Audit(t, "agent.models.sync")
	if len(syncs) < 2 {
		t.Fatalf("audit of syncs: %+v", syncs)
	}
	all, _ := f.Log.AuditSearch(ctx, eventlog.AuditQuery{})
	for _, e := range all {
		if strings.Contains(e.Detail+e.Target+e.Digest, virtualKey) {
			t.Fatalf("the key is in the audit: %+v", e)
		}
	}

	// A new key replaces the old one, and its scope with it.
	proxy.SetKey("sk-litellm-other-key-00000000", "gpt-d")
	other := "sk-litellm-other-key-00000000"
	v, err = f.Svc.UpdateAgent(ctx, controltest.Operator, "coder", control.AgentPatch{UpstreamKey: &other})
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != "lite/gpt-d" || !slices.Equal(v.Models, []string{"lite/gpt-d"}) {
		t.Fatalf("after a new key: %s %v", v.Model, v.Models)
	}

	// Deleting the agent leaves no key of it behind.
	if err := f.Svc.DeleteAgent(ctx, controltest.Operator, "coder"); err != nil {
		t.Fatal(err)
	}
	if k, _ := f.Svc.Keys.Get(agent.UpstreamKeyID("coder")); k != "" {
		t.Fatal("the deleted agent's key was kept")
	}
}

func TestSyncRefusesWhatItCannotDo(t *testing.T) {
	f, proxy, srv := liteFixture(t)
	ctx := t.Context()
	proxy.SetKey(virtualKey, "gpt-a")
	if _, err := f.Svc.CreateAgent(ctx, controltest.Operator, agent.Agent{Name: "coder", Model: "lite/gpt-a", UpstreamKey: virtualKey}); err != nil {
		t.Fatal(err)
	}
	// An agent of an OpenAI-compatible provider has no key scope to sync.
	if _, err := f.Svc.CreateProvider(ctx, controltest.Operator, agent.Provider{ID: "plain", BaseURL: srv.URL, Models: []agent.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.CreateAgent(ctx, controltest.Operator, agent.Agent{Name: "plain", Model: "plain/m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.SyncModels(ctx, controltest.Operator, "plain"); !agent.IsInvalid(err) {
		t.Fatalf("sync of a plain agent: %v", err)
	}
	// A revoked key: the proxy's refusal, never a change.
	proxy.SetKey(virtualKey)
	_, err := f.Svc.SyncModels(ctx, controltest.Operator, "coder")
	if !errors.Is(err, control.ErrUpstream) || strings.Contains(err.Error(), virtualKey) {
		t.Fatalf("sync with a revoked key: %v", err)
	}
	// The proxy is down: the same.
	srv.Close()
	if _, err := f.Svc.SyncModels(ctx, controltest.Operator, "coder"); !errors.Is(err, control.ErrUpstream) {
		t.Fatalf("sync with the proxy down: %v", err)
	}
	if a, _ := f.Log.Agent(ctx, "coder"); !slices.Equal(a.Models, []string{"lite/gpt-a"}) {
		t.Fatalf("a failed sync changed the agent: %v", a.Models)
	}
	for _, e := range f.Audit(t, "agent.models.sync") {
		if e.Outcome == "ok" && e.Phase == "outcome" && e.Target == "plain" {
			t.Fatalf("a refused sync is audited as done: %+v", e)
		}
	}
}

func TestAModelSwitchMadeInOpencodeIsWrittenBackOrRefused(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	if _, err := f.Svc.CreateProvider(ctx, controltest.Operator, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "big"}, {ID: "small"}, {ID: "other"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.CreateAgent(ctx, controltest.Operator, agent.Agent{Name: "a", Model: "p/big", Models: []string{"p/big", "p/small"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Svc.ModelSwitched(ctx, "a", "p/big", "p/small"); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.Log.Agent(ctx, "a"); a.Model != "p/small" {
		t.Fatalf("a permitted switch was not written back: %s", a.Model)
	}
	err := f.Svc.ModelSwitched(ctx, "a", "p/small", "p/other")
	if !agent.IsInvalid(err) {
		t.Fatalf("a switch outside the set: %v", err)
	}
	if a, _ := f.Log.Agent(ctx, "a"); a.Model != "p/small" {
		t.Fatalf("a refused switch changed the agent: %s", a.Model)
	}
	es := f.Audit(t, "agent.model.switch")
	var ok, refused bool
	for _, e := range es {
		ok = ok || (e.Phase == "outcome" && e.Outcome == "ok" && strings.HasPrefix(e.Actor, "daemon"))
		refused = refused || (e.Outcome == "refused" && strings.Contains(e.Detail, "p/other"))
	}
	if !ok || !refused {
		t.Fatalf("audit of switches: %+v", es)
	}
}
