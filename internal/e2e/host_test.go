package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/testenv"
)

// hostDaemon starts a daemon whose managed host declares one service,
// "app" (app.service, with a JSON config file), reached through the
// systemd stand-in.
func hostDaemon(t *testing.T) (*daemon, *testenv.FakeSystemd, string) {
	t.Helper()
	home := t.TempDir()
	conf := filepath.Join(home, "app.json")
	os.WriteFile(conf, []byte(`{"workers": 2}`), 0o640)
	os.WriteFile(filepath.Join(home, "host.json"), []byte(`{"services":[{"name":"app","unit":"app.service",
		"configs":[{"path":"`+conf+`","format":"json"}]}]}`), 0o600)
	f := testenv.NewFakeSystemd(t)
	f.Unit(t, "app.service", false, "2026-11-30T08:00:00+0000 box app[7]: listening")
	d := startIn(t, home, []string{"FAKE_SYSTEMD_DIR=" + f.Dir}, "--systemctl", f.Systemd.Systemctl, "--journalctl", f.Systemd.Journalctl)
	return d, f, conf
}

func toolEvents(evs []client.Event, kind string) []client.Event {
	var out []client.Event
	for _, e := range evs {
		if string(e.Kind) == kind {
			out = append(out, e)
		}
	}
	return out
}

// The host agent acts on the host through taosagent's MCP tools, driven
// by the real opencode: a read tool answers at once (the first tool turn a
// newcomer sees); a destructive one
// waits for a person, runs once approved (audited with the approver), and
// changes nothing when rejected.
func TestHostAgentActsThroughTaosTools(t *testing.T) {
	t.Parallel()
	d, sysd, conf := hostDaemon(t)
	ctx := ctxT(t, 4*time.Minute)

	// What the README suggests a newcomer type: the demo model uses a tool
	// the host assistant has (it has no bash).
	acc := d.send(ctx, "host", "Please use a tool.", "")
	evs := d.turnOf(ctx, "host", acc.Seq, acc.Input)
	order(t, evs, "tool_call", "tool_result", "final")
	res := toolEvents(evs, "tool_result")
	if len(res) != 1 || res[0].Field("tool") != "taos_status" || !strings.Contains(res[0].Field("output"), "app.service") {
		t.Fatalf("status through MCP: %v", res)
	}

	// diagnose runs doctor's own checks inside the daemon.
	acc = d.send(ctx, "host", `call taos_diagnose {"checks":["database","services","daemon"]}`, "")
	evs = d.turnOf(ctx, "host", acc.Seq, acc.Input)
	res = toolEvents(evs, "tool_result")
	if len(res) != 1 || !strings.Contains(res[0].Field("output"), `"worst":"ok"`) || !strings.Contains(res[0].Field("output"), "the daemon runs") {
		t.Fatalf("diagnose through MCP: %v", res)
	}

	// Destructive: waits for a person, then runs.
	acc = d.send(ctx, "host", `call taos_service_restart {"service":"app"}`, "")
	ap := d.onePending(t, ctx)
	if ap.Source != "taosagent" || ap.Agent != "host" || !strings.Contains(string(ap.Ask), `"service_restart"`) {
		t.Fatalf("approval %+v %s", ap, ap.Ask)
	}
	if slices.ContainsFunc(sysd.Calls(), func(c string) bool { return strings.HasPrefix(c, "systemctl restart") }) {
		t.Fatal("the service restarted before anyone approved")
	}
	// The agent's own MCP token cannot answer it: it is not a token of the API.
	if code, _ := request(t, "POST", d.addr+"/v1/approvals/"+ap.ID, agentToken(t, d.home, "host"), `{"decision":"once"}`); code != http.StatusUnauthorized {
		t.Fatalf("the agent's token answered an approval: %d", code)
	}
	if _, err := d.c.Approve(ctx, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	evs = d.turnOf(ctx, "host", acc.Seq, acc.Input)
	order(t, evs, "permission.asked", "permission.resolved", "tool_result", "final")
	res = toolEvents(evs, "tool_result")
	if len(res) != 1 || !strings.Contains(res[0].Field("output"), `"active_state":"active"`) {
		t.Fatalf("restart result: %v", res)
	}
	if n := len(slices.DeleteFunc(sysd.Calls(), func(c string) bool { return !strings.HasPrefix(c, "systemctl restart app.service") })); n != 1 {
		t.Fatalf("%d restarts: %q", n, sysd.Calls())
	}
	audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "service_restart"})
	if err != nil || len(audit) != 2 || audit[1].Outcome != "ok" || audit[1].Approver != "operator (api)" ||
		audit[1].Actor != "agent host (mcp)" || audit[1].Approval != ap.ID || audit[1].Session == "" {
		t.Fatalf("audit of the restart: %+v %v", audit, err)
	}

	// Rejected: an error result for the model, and nothing changed.
	before, _ := os.ReadFile(conf)
	acc = d.send(ctx, "host", `call taos_config_write {"path":"`+conf+`","content":"{\"workers\": 64}"}`, "")
	ap = d.onePending(t, ctx)
	if _, err := d.c.Approve(ctx, ap.ID, "reject", "64 workers would exhaust memory"); err != nil {
		t.Fatal(err)
	}
	evs = d.turnOf(ctx, "host", acc.Seq, acc.Input)
	res = toolEvents(evs, "tool_result")
	if len(res) != 1 || !strings.Contains(res[0].Field("error")+res[0].Field("output"), "64 workers would exhaust memory") {
		t.Fatalf("rejected call's result: %v", res)
	}
	if after, _ := os.ReadFile(conf); string(after) != string(before) {
		t.Fatalf("config changed after a rejection: %s", after)
	}
}

// agentToken reads the MCP token taosagent wrote into agent's opencode
// config (it is in the agent's reach, by design).
func agentToken(t *testing.T, home, agent string) string {
	t.Helper()
	b, err := os.ReadFile(agentConfig(home, agent))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		MCP map[string]struct {
			Headers map[string]string `json:"headers"`
		} `json:"mcp"`
	}
	json.Unmarshal(b, &cfg)
	tok := strings.TrimPrefix(cfg.MCP["taos"].Headers["Authorization"], "Bearer ")
	if tok == "" {
		t.Fatalf("no taos MCP server in %s", b)
	}
	return tok
}
