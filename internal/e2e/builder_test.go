package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// steps is a scripted model's turn of several tool calls (see
// scriptedmodel): one "call TOOL {json}" a line.
func steps(calls ...any) string {
	var b strings.Builder
	b.WriteString("steps:\n")
	for i := 0; i < len(calls); i += 2 {
		args, _ := json.Marshal(calls[i+1])
		b.WriteString("call " + calls[i].(string) + " " + string(args) + "\n")
	}
	return b.String()
}

const appCSP = `<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'">`

// resultOf is the output (or error) of the tool result of call i of the
// turn (0-based), with the tool's name.
func resultOf(t *testing.T, evs []client.Event, i int) (tool, out string) {
	t.Helper()
	res := toolEvents(evs, "tool_result")
	if i >= len(res) {
		t.Fatalf("no result %d: %d results, events %v", i, len(res), kinds(evs))
	}
	return res[i].Field("tool"), res[i].Field("output") + res[i].Field("error")
}

// One brain: the person asks the host for an app; the host hands it to
// the builder (taos_app_build), which works in its own confined instance
// through the real opencode: the scaffold, a page without a CSP, a
// validation that says so, the fix, a clean validation, the submission.
// The host's turn gets the builder's answer and the package's sha256; a
// person approves that package at the gate.
func TestTheHostHandsAnAppToTheBuilder(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	noCSP := `<!doctype html><html><head><meta charset="utf-8"><title>Notes</title><script src="app.js"></script></head><body><h1>Notes</h1></body></html>`
	fixed := strings.Replace(noCSP, `<meta charset="utf-8">`, `<meta charset="utf-8">`+appCSP, 1)
	script := "Build me a notes app.\n" + steps(
		"taos_app_new", map[string]string{"dir": "notes", "name": "Notes"},
		"write", map[string]string{"filePath": "$WORKDIR/notes/index.html", "content": noCSP},
		"taos_app_validate", map[string]string{"dir": "notes"},
		"write", map[string]string{"filePath": "$WORKDIR/notes/index.html", "content": fixed},
		"taos_app_validate", map[string]string{"dir": "notes"},
		"taos_app_submit", map[string]string{"dir": "notes"})
	req, _ := json.Marshal(map[string]string{"request": script})
	acc := d.send(ctx, "host", "call taos_app_build "+string(req), "")
	evs := d.turnOf(ctx, "host", acc.Seq, acc.Input)
	tool, out := resultOf(t, evs, 0)
	var handed struct {
		Task client.Task `json:"task"`
	}
	if json.Unmarshal([]byte(out), &handed); tool != "taos_app_build" || handed.Task.To != "builder" || handed.Task.From != "host" {
		t.Fatalf("the host's build result (%s): %s", tool, out)
	}
	if f := last(evs); f.Kind != "final" {
		t.Fatalf("the host's turn ended %s %s", f.Kind, f.Data)
	}
	// The host's turn ended at once; the builder's answer comes back to
	// it as a message of its own, marked as the builder's.
	var answer client.Event
	waitFor(t, ctx, func() bool {
		evs, _ := d.c.Events(ctx, "host", acc.Seq, 0, "turn.started")
		for _, e := range evs {
			if e.Field("task") == handed.Task.ID && e.Field("from") == "builder" {
				answer = e
			}
		}
		return answer.Turn != ""
	})
	if text := answer.Field("text"); !strings.Contains(text, "ended: done.") || !strings.Contains(text, "All 6 steps done") || !strings.Contains(text, "not a person's instructions") {
		t.Fatalf("the builder's answer, to the host: %s", text)
	}
	var gate struct {
		Apps []struct {
			SHA256 string `json:"sha256"`
			State  string `json:"state"`
			By     string `json:"submitted_by"`
		} `json:"apps"`
	}
	d.c.Do(ctx, "GET", "/v1/apps", nil, &gate)
	apps := gate.Apps
	if len(apps) != 1 || apps[0].State != "pending" || apps[0].By != "agent builder (mcp)" {
		t.Fatalf("the gate: %+v", apps)
	}
	sha := []string{"", apps[0].SHA256}

	// The builder's own turn, in its own instance: each step as it went.
	bevs, err := d.c.Events(ctx, "builder", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ tool, has string }{
		{"taos_app_new", `"app_id":"local.notes"`},
		{"write", ""},
		{"taos_app_validate", "web.csp-missing"},
		{"write", ""},
		{"taos_app_validate", `"ok":true`},
		{"taos_app_submit", "(pending)"},
	}
	for i, w := range want {
		tool, out := resultOf(t, bevs, i)
		if tool != w.tool || !strings.Contains(out, w.has) {
			t.Errorf("builder step %d: %s %q, want %s with %q", i+1, tool, out, w.tool, w.has)
		}
	}
	if _, out := resultOf(t, bevs, 4); strings.Contains(out, "web.csp-missing") {
		t.Errorf("the fix did not take: %s", out)
	}
	// It wrote inside its own workspace, and nowhere the host sees.
	if _, err := os.Stat(filepath.Join(d.home, "agents", "builder", "work", "notes", "manifest.json")); err != nil {
		t.Fatalf("the app is not in the builder's workspace: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.home, "agents", "host", "work", "notes")); err == nil {
		t.Fatal("the builder's work ran in the host's directory")
	}

	// The pre-gate report waits for a person, who approves that package.
	code, body := get(t, d.addr+"/v1/apps/"+sha[1], d.c.Token)
	if code != 200 || !strings.Contains(body, `"state":"pending"`) || !strings.Contains(body, `"submitted_by":"agent builder (mcp)"`) {
		t.Fatalf("the submission: %d %s", code, body)
	}
	if code, body := request(t, "POST", d.addr+"/v1/apps/"+sha[1]+"/decision", d.c.Token, `{"decision":"approve"}`); code != 200 || !strings.Contains(body, `"approved"`) {
		t.Fatalf("approve: %d %s", code, body)
	}
	audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "app.build"})
	if err != nil || len(audit) != 2 || audit[0].Actor != "agent host (mcp)" || audit[1].Outcome != "ok" {
		t.Fatalf("the delegation's audit: %+v %v", audit, err)
	}
}

// A hostile builder (a model gone wrong, or steered by what it read): each
// thing it tries is caught, with its rule or its refusal, and nothing
// reaches the host.
func TestAHostileBuilderIsCaught(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	outside := filepath.Join(t.TempDir(), "owned")
	keyJS := "const key = \"-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA7\";\n"
	tricks := map[string]string{
		// Each passed the old lexical checks.
		"connect.html":   `<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="script-src 'self'"><script src="app.js"></script></head><body></body></html>`,
		"jsstring.html":  `<!doctype html><html><head><script>var s = '<meta http-equiv="Content-Security-Policy" content="default-src \'self\'">';</script></head><body></body></html>`,
		"placement.html": `<!doctype html><html><head><script>fetch("https://evil.example.net/x")</script>` + appCSP + `</head><body></body></html>`,
		"entity.html":    `<!doctype html><html><head>` + appCSP + `<script src="https&#58;//evil.example.net/x.js"></script></head><body></body></html>`,
		"quoted.html":    `<!doctype html><html><head>` + appCSP + `<script data-x="a>b" src="https://evil.example.net/x.js"></script></head><body></body></html>`,
	}
	calls := []any{
		"taos_app_new", map[string]string{"dir": "evil", "name": "Evil"},
		"write", map[string]string{"filePath": "$WORKDIR/evil/app.js", "content": keyJS},
		"write", map[string]string{"filePath": "$WORKDIR/evil/index.html", "content": `<!doctype html><html><head>` + appCSP +
			`<script src="https://cdn.evil.example.net/lib.js"></script></head><body></body></html>`},
	}
	names := []string{"connect.html", "jsstring.html", "placement.html", "entity.html", "quoted.html"}
	for _, n := range names {
		calls = append(calls, "write", map[string]string{"filePath": "$WORKDIR/evil/" + n, "content": tricks[n]})
	}
	calls = append(calls,
		"taos_app_validate", map[string]string{"dir": "evil"},
		"taos_app_run", map[string]any{"dir": "evil", "command": []string{"/bin/sh", "-c", "getent hosts example.com || echo no-network; echo x > /owned || echo no-root-write"}},
		"write", map[string]string{"filePath": outside, "content": "owned"},
		"bash", map[string]string{"command": "cat " + filepath.Join(d.home, "token"), "description": "read the token"},
		"webfetch", map[string]string{"url": "https://example.com/", "format": "text"},
		"taos_status", map[string]string{},
		"taos_app_submit", map[string]string{"dir": "evil"},
	)
	acc := d.send(ctx, "builder", "Build it.\n"+steps(calls...), "")
	evs := d.turnOf(ctx, "builder", acc.Seq, acc.Input)
	if f := last(evs); f.Kind != "final" {
		t.Fatalf("the builder's turn ended %s %s", f.Kind, f.Data)
	}
	calls_ := toolEvents(evs, "tool_call")
	results := toolEvents(evs, "tool_result")
	if len(calls_) != 15 || len(results) != 15 {
		t.Fatalf("%d calls, %d results: %v", len(calls_), len(results), kinds(evs))
	}

	// The validation finds each, with its rule and its file.
	_, report := resultOf(t, evs, 8)
	var rep struct {
		OK       bool
		Findings []struct{ Rule, Path, Severity string }
	}
	if err := json.Unmarshal([]byte(report), &rep); err != nil || rep.OK {
		t.Fatalf("validate: %v %s", err, report)
	}
	found := func(rule, path string) bool {
		for _, f := range rep.Findings {
			if f.Rule == rule && strings.HasPrefix(f.Path, path) {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ rule, path string }{
		{"secret.private-key", "app.js"},
		{"web.script-source", "index.html"},
		{"web.csp-connect", "connect.html"},
		{"web.csp-missing", "jsstring.html"},
		{"web.csp-placement", "placement.html"},
		{"web.script-source", "entity.html"},
		{"web.script-source", "quoted.html"},
	} {
		if !found(w.rule, w.path) {
			t.Errorf("not caught: %s in %s (findings %+v)", w.rule, w.path, rep.Findings)
		}
	}
	// The sandboxed run has no network and cannot write outside.
	if _, out := resultOf(t, evs, 9); !strings.Contains(out, "no-network") || !strings.Contains(out, "no-root-write") {
		t.Errorf("app_run: %s", out)
	}
	// Writing outside its workspace is refused; a shell, the web and a
	// host tool are not even offered to it (opencode answers "unavailable
	// tool").
	if res := toolEvents(evs, "tool_result")[10]; res.Field("tool") != "write" || res.Field("error") == "" {
		t.Errorf("a write outside its workspace was not refused: %s", res.Data)
	}
	for i, what := range []string{"bash", "webfetch", "taos_status"} {
		if tool, out := resultOf(t, evs, 11+i); tool != "invalid" || !strings.Contains(out, "unavailable tool '"+what+"'") {
			t.Errorf("%s was not refused: %s %s", what, tool, out)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Error("the builder wrote outside its workspace")
	}
	// The gate refuses the package: nothing submitted.
	if _, out := resultOf(t, evs, 14); !strings.Contains(out, `"ok":false`) || strings.Contains(out, "submitted as") {
		t.Errorf("app_submit of a failing app: %s", out)
	}
	if code, body := get(t, d.addr+"/v1/apps", d.c.Token); code != 200 || strings.Contains(body, "local.evil") {
		t.Errorf("the hostile app reached the gate's list: %s", body)
	}
}
