package appgate_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
)

// The App Builder is built in, with its permissions and tools locked: no
// one widens them, nor deletes it; a start puts back what was changed
// behind the API's back.
func TestTheBuilderIsBuiltInAndLocked(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	created, err := f.Svc.Catalog.EnsureBuiltins(ctx, true)
	if err != nil || !strings.Contains(strings.Join(created, ","), "agent builder") {
		t.Fatalf("builtins: %v %v", created, err)
	}
	b, err := f.Log.Agent(ctx, agent.Builder)
	if err != nil || !b.Builtin || b.Prompt != agent.BuilderPrompt || !b.Tools[agent.TaosTools] {
		t.Fatalf("builder: %+v %v", b, err)
	}
	var perm map[string]string
	json.Unmarshal(b.Permission, &perm)
	for _, k := range []string{"bash", "webfetch", "external_directory", "task"} {
		if perm[k] != "deny" {
			t.Errorf("the builder's %s is %q", k, perm[k])
		}
	}
	shell := json.RawMessage(`{"bash":"allow"}`)
	for _, p := range []control.AgentPatch{{Permission: &shell}, {Tools: &map[string]bool{"taos": true, "bash": true}}, {Tools: &map[string]bool{}}} {
		if _, err := f.Svc.UpdateAgent(ctx, controltest.Operator, agent.Builder, p); !agent.IsInvalid(err) {
			t.Errorf("widened the builder: %v", err)
		}
	}
	prompt := "Make tiny apps."
	if v, err := f.Svc.UpdateAgent(ctx, controltest.Operator, agent.Builder, control.AgentPatch{Prompt: &prompt}); err != nil || v.Prompt != prompt {
		t.Fatalf("a person changes its persona: %+v %v", v, err)
	}
	if err := f.Svc.DeleteAgent(ctx, controltest.Operator, agent.Builder); !agent.IsInvalid(err) {
		t.Fatalf("deleted the builder: %v", err)
	}
	// Changed behind the API's back: the next start locks it again.
	b, _ = f.Log.Agent(ctx, agent.Builder)
	b.Permission, b.Tools = shell, map[string]bool{"taos": true, "bash": true}
	if _, err := f.Log.UpdateAgent(ctx, b); err != nil {
		t.Fatal(err)
	}
	f.Svc.Catalog.EnsureBuiltins(ctx, true)
	if b, _ = f.Log.Agent(ctx, agent.Builder); string(b.Permission) != string(agent.BuilderPermission) || b.Tools["bash"] || b.Prompt != prompt {
		t.Fatalf("not locked again: %s %v %q", b.Permission, b.Tools, b.Prompt)
	}
}

// A build request is refused, and audited, when it cannot be one: the
// builder delegating to itself, an empty request, one too large, one not
// from an agent.
func TestBuildRequestsThatCannotBe(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	f.Svc.Catalog.EnsureBuiltins(ctx, true)
	builder := control.Actor{Kind: control.Agent, Name: agent.Builder, Channel: control.MCP}
	host := control.Actor{Kind: control.Agent, Name: agent.Host, Channel: control.MCP}
	if _, err := f.Apps.BuildApp(ctx, builder, "an app"); !errors.Is(err, control.ErrForbidden) {
		t.Errorf("the builder delegated to itself: %v", err)
	}
	if _, err := f.Apps.BuildApp(ctx, host, "  "); !agent.IsInvalid(err) {
		t.Errorf("an empty request: %v", err)
	}
	if _, err := f.Apps.BuildApp(ctx, host, strings.Repeat("x", appgate.MaxBuildRequest+1)); !errors.Is(err, control.ErrTooLarge) {
		t.Errorf("a request too large: %v", err)
	}
	// A person sends the builder a message; app_build is an agent's.
	if _, err := f.Apps.BuildApp(ctx, controltest.Operator, "an app"); !agent.IsInvalid(err) {
		t.Errorf("a person's build: %v", err)
	}
	es := f.Audit(t, "app.build")
	if len(es) != 4 || es[0].Outcome != "refused" {
		t.Fatalf("refusals audited: %+v", es)
	}
}
