package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

// artifacts is where browser tests write their screenshots:
// $TAOSAGENT_ARTIFACTS, or .cache/artifacts in the repository.
func artifacts(t *testing.T) string {
	dir := os.Getenv("TAOSAGENT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shoot writes screenshots of the tab's page at a desktop's width and a
// phone's, as name-desktop.png and name-phone.png.
func shoot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	for _, size := range []struct {
		label string
		w, h  int64
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		if err := chromedp.Do(tab, chromedp.EmulateViewport(size.w, size.h)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+size.label+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chromedp.Do(tab, chromedp.EmulateViewport(1280, 900))
}

// until polls a JavaScript expression in the tab until it is truthy, and
// returns its value.
func until[T any](t testing.TB, tab context.Context, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		page, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		t.Fatalf("%s: %v (the page shows: %.600s)", what, err, page)
	}
	return v
}

// The panel in a real Chromium: sign in with the token; the agents;
// a chat turn streamed in with its reasoning; a tool call that waits for
// approval, approved in the inbox, run, shown as a card; model output with
// markup shown as text; a cross-site form post refused; sign-out. Each page
// is photographed at a desktop's and a phone's width.
func TestThePanelInChromium(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "worker", `{"bash":"ask"}`)
	d.agent(ctx, "free", "")
	shots := artifacts(t)

	// The page and its policy.
	resp, err := http.Get(d.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") ||
		strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("GET /: %d, policy %q", resp.StatusCode, csp)
	}

	tab := browser(t, ctx)
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the sign-in form", `!!document.querySelector("#signin")`)
	shoot(t, tab, shots, "signin")
	// A wrong token is refused, and says so.
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[string](t, tab, "a wrong token refused", `document.querySelector("#signin-error").textContent || null`)
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`document.querySelector("#token").value = ""`), chromedp.SendKeys(chromedp.CSS("#token"), d.c.Token+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the agents after sign-in", `!!document.querySelector('#agents tr[data-agent="host"]') && !!document.querySelector('#agents tr[data-agent="worker"]')`)
	// The cookie is the browser's only: no script reads it.
	if c, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.cookie`)); c != "" {
		t.Fatalf("a script reads the session cookie: %q", c)
	}
	shoot(t, tab, shots, "agents")

	// A turn streams in: reasoning apart, then the answer.
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/chat/free")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the chat", `!!document.querySelector("#text")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "hello there"+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	answer := until[string](t, tab, "the streamed answer", `(() => { const t = document.querySelector('#log .turn[data-ended="final"] .answer'); return t && t.textContent.trim() })()`)
	if answer != scriptedmodel.Answer {
		t.Fatalf("answer %q", answer)
	}
	if r, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("#log details.reasoning pre").textContent`)); !strings.Contains(r, "Thinking") {
		t.Fatalf("reasoning %q", r)
	}

	// Model output with markup is text: nothing of it runs or renders.
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"),
		`run: echo '<script>window.owned=1</script><img src=x onerror="window.owned=2">'`+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	out := until[string](t, tab, "the tool card", `(() => { const c = document.querySelector('#log .tool[data-done="true"] .output'); return c && c.textContent })()`)
	until[bool](t, tab, "the second answer", `document.querySelectorAll('#log .turn[data-ended="final"]').length === 2`)
	if !strings.Contains(out, "<img src=x onerror=") {
		t.Fatalf("the tool's output: %q", out)
	}
	if v, _ := chromedp.Run(tab, chromedp.Evaluate[string](`String(window.owned) + " " + document.querySelectorAll("#log img, #log script").length`)); v != "undefined 0" {
		t.Fatalf("model output ran as markup: %s", v)
	}

	// An answer's Markdown is rendered, safely: headings, lists, tables,
	// code with its language, links that show their target and open
	// apart; raw HTML, a javascript: link and an image are text or gone.
	hostile := "say: # Title\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```go\nfmt.Println(1)\n```\n\n" +
		"[click](javascript:window.owned=3) [site](https://example.com/x) <img src=x onerror=\"window.owned=4\"> <b>bold?</b> " +
		"![pic](http://127.0.0.1:9/leak.png) <a href=\"javascript:window.owned=5\">raw</a>"
	compose(tab, t, hostile)
	until[bool](t, tab, "the Markdown answer", `document.querySelectorAll('#log .turn[data-ended="final"]').length === 3`)
	const last = `[...document.querySelectorAll('#log .turn[data-ended="final"] .answer')].pop()`
	for what, expr := range map[string]string{
		"a heading":                    last + `.querySelector("h1")?.textContent === "Title"`,
		"a list":                       last + `.querySelectorAll("li").length === 2`,
		"a table":                      last + `.querySelectorAll("table td").length === 2`,
		"code with its language":       last + `.querySelector('pre[data-lang="go"] code')?.textContent.includes("fmt.Println(1)")`,
		"a link that shows its target": `(() => { const a = ` + last + `.querySelector('a[href="https://example.com/x"]'); return !!a && a.target === "_blank" && a.rel.includes("noopener") && a.nextElementSibling?.textContent.includes("(https://example.com/x)") })()`,
		"raw HTML as text":             last + `.textContent.includes("<b>bold?</b>") && ` + last + `.textContent.includes("<img src=x")`,
		"nothing active":               `document.querySelectorAll('#log img, #log script, #log b, #log a[href^="javascript"], #log iframe').length === 0 && window.owned === undefined`,
	} {
		if ok, _ := chromedp.Run(tab, chromedp.Evaluate[bool](expr)); !ok {
			html, _ := chromedp.Run(tab, chromedp.Evaluate[string](last+`.innerHTML`))
			t.Errorf("the Markdown answer lacks %s: %s", what, html)
		}
	}
	shoot(t, tab, shots, "chat")

	// A question in the chat: the tool waits for a person, the inbox lists
	// it, a person answers in the chat's card, and the turn goes on.
	compose(tab, t, askTwo)
	until[bool](t, tab, "the question's card", `!!document.querySelector('#log .question[data-state="pending"]')`)
	until[bool](t, tab, "the question tool waiting", `!!document.querySelector('#log .tool[data-tool="question"][data-status="waiting"]')`)
	until[string](t, tab, "the inbox's count", `document.querySelector("#pending").textContent || null`)
	shoot(t, tab, shots, "question")
	visit(t, tab, d.addr, "#/approvals", `!!document.querySelector('#questions .question[data-state="pending"]')`)
	if q, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('#questions .question[data-state="pending"]').textContent`)); !strings.Contains(q, "Which colour?") || !strings.Contains(q, "free asks") {
		t.Errorf("the inbox's question shows %q", q)
	}
	visit(t, tab, d.addr, "#/chat/free", `!!document.querySelector('#log .question[data-state="pending"]')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#log .question input[value="blue"]`)),
		chromedp.SendKeys(chromedp.CSS(`#log .question input.own[data-own$="-1"]`), "Grace"),
		chromedp.Click(chromedp.CSS(`#log .question button[data-answer="answer"]`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the answered question", `!!document.querySelector('#log .question[data-state="answered"]')`)
	until[bool](t, tab, "the turn after the answer", `document.querySelectorAll('#log .turn[data-ended="final"]').length === 4`)
	until[bool](t, tab, "the question tool done", `!!document.querySelector('#log .tool[data-tool="question"][data-status="done"]')`)
	if qs, _ := d.c.Questions(ctx, ""); len(qs) != 1 || qs[0].By != "operator (panel)" || qs[0].Answers[0][0] != "blue" || qs[0].Answers[1][0] != "Grace" {
		t.Fatalf("the panel's answer: %+v", qs)
	}

	// Stop: a running turn ends, aborted, and the agent shows it.
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "slow tool"+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the slow tool running", `document.querySelectorAll('#log .tool').length === 2`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#stop"))); err != nil {
		t.Fatal(err)
	}
	stopped := until[string](t, tab, "the stopped turn", `document.querySelector('#log .turn[data-ended="error"] .error')?.textContent || null`)
	if !strings.HasPrefix(stopped, "aborted") {
		t.Fatalf("the stopped turn says %q", stopped)
	}
	visit(t, tab, d.addr, "#/agents", `!!document.querySelector('#agents tr[data-agent="free"] .last-error')`)

	// A tool that asks: the inbox shows the exact call; approved, it runs.
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/chat/worker")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "worker's chat", `!!document.querySelector("#text")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "use a tool"+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the wait for approval in the chat", `!!document.querySelector("#log .ask")`)
	until[string](t, tab, "the pending count", `document.querySelector("#pending").textContent || null`)
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/approvals")); err != nil {
		t.Fatal(err)
	}
	ask := until[string](t, tab, "the approval in the inbox", `(() => { const c = document.querySelector('#approvals [data-state="pending"]'); return c && c.textContent })()`)
	if !strings.Contains(ask, "bash") || !strings.Contains(ask, "worker") || !strings.Contains(ask, "echo hi") {
		t.Fatalf("the approval shows %q", ask)
	}
	shoot(t, tab, shots, "approvals")
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#approvals [data-state="pending"] button[data-decision="once"]`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the approval's final state", `!!document.querySelector('#approvals [data-state="once"]')`)
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/chat/worker")); err != nil {
		t.Fatal(err)
	}
	out = until[string](t, tab, "the approved tool's card", `(() => { const c = document.querySelector('#log .tool[data-done="true"] .output'); return c && c.textContent })()`)
	if out != "hi\n" {
		t.Fatalf("the approved tool's output %q", out)
	}
	until[bool](t, tab, "the approved turn's end", `!!document.querySelector('#log .turn[data-ended="final"]')`)
	aps, _ := d.c.Approvals(ctx, "")
	if len(aps) != 1 || aps[0].By != "operator (panel)" {
		t.Fatalf("approvals: %+v", aps)
	}

	// What a Prometheus scraper sees, behind the same auth.
	if code, _ := get(t, d.addr+"/metrics", ""); code != 401 {
		t.Fatalf("metrics without the token: %d", code)
	}
	code, metrics := get(t, d.addr+"/metrics", d.c.Token)
	for _, want := range []string{
		`taosagent_turns_total{agent="free",outcome="final"} 4`,
		`taosagent_turns_total{agent="worker",outcome="final"} 1`,
		"taosagent_approvals_pending 0",
		`taosagent_instance_up{agent="worker"} 1`,
		`taosagent_instance_memory_bytes{agent="worker"} `,
		"# TYPE taosagent_turns_total counter",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}

	// The audit page.
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/audit")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the audit", `!!document.querySelector("#audit tbody tr")`)
	shoot(t, tab, shots, "audit")
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/apps")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the apps page", `document.querySelector("main h1")?.textContent === "Apps"`)

	// A page of another origin posts a form at the daemon: the browser
	// sends the cookie (same site), the daemon refuses it (no CSRF token).
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="POST" action="%s/v1/agents/free/messages" enctype="text/plain">`+
			`<input name='{"text":"forged message","x":"' value='"}'></form><script>document.forms[0].submit()</script>`, d.addr)
	}))
	defer evil.Close()
	before, _ := d.c.Events(ctx, "free", 0, 10000)
	resp2, err := chromedp.Run(tab, chromedp.NavigateResponse(evil.URL))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp2
	status := until[float64](t, tab, "the forged post's answer", `location.href.includes("/v1/agents/free/messages") && performance.getEntriesByType("navigation")[0]?.responseStatus`)
	if status != 403 {
		t.Fatalf("a cross-site form post answered %v", status)
	}
	after, _ := d.c.Events(ctx, "free", 0, 10000)
	if len(after) != len(before) {
		t.Fatalf("the forged post changed something: %d events, then %d", len(before), len(after))
	}

	// Sign out: the page says so, and the cookie no longer works.
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/#/agents")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the agents again", `!!document.querySelector('#agents')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#signout"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "signed out", `document.querySelector("#conn").dataset.state === "out" && !!document.querySelector("#signin")`)
	if code, _ := chromedp.Run(tab, chromedp.Evaluate[float64](`fetch("/v1/agents").then(r => r.status)`, chromedp.EvalAwaitPromise)); code != 401 {
		t.Fatalf("after sign-out the API answered %v", code)
	}
}

// compose puts text in the chat's composer, new lines and all, and sends it.
func compose(tab context.Context, t *testing.T, text string) {
	t.Helper()
	js, _ := json.Marshal(text)
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = `+string(js)+`; document.querySelector("#send").click()`)); err != nil {
		t.Fatal(err)
	}
}

// cutter forwards TCP connections to addr until told to cut every one it
// holds: a network that drops.
type cutter struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutter(t *testing.T, addr string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// The connection drops in the middle of a streamed answer: the page says
// it is reconnecting, resumes from the last event it saw, and ends with
// every event once: the whole answer, no word twice, no word lost.
func TestThePanelResumesAfterALostConnection(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	net := newCutter(t, strings.TrimPrefix(d.addr, "http://"))
	base := "http://" + net.ln.Addr().String()
	tab := browser(t, ctx)
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the sign-in form", `!!document.querySelector("#signin")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#token"), d.c.Token+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the agents", `!!document.querySelector('#agents tr[data-agent="host"]')`)
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/#/chat/host")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the chat", `!!document.querySelector("#text")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "write slow output"+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the answer under way", `(document.querySelector("#log .answer")?.textContent || "").includes("word3 ")`)
	net.cut()
	until[bool](t, tab, "the page saying it lost the connection", `document.querySelector("#conn").dataset.state === "down"`)
	answer := until[string](t, tab, "the answer's end", `(() => { const t = document.querySelector('#log .turn[data-ended="final"] .answer'); return t && t.textContent })()`)
	var want strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&want, "word%d ", i)
	}
	if strings.TrimSpace(answer) != strings.TrimSpace(want.String()) { // rendered as Markdown: a paragraph
		t.Fatalf("after the reconnect the answer is\n%q\nwant\n%q", answer, want.String())
	}
	if n, _ := chromedp.Run(tab, chromedp.Evaluate[float64](`document.querySelectorAll("#log .turn").length + document.querySelectorAll("#log .you").length`)); n != 2 {
		t.Fatalf("%v turn boxes and messages, want one of each", n)
	}
	if st, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("#conn").dataset.state`)); st != "live" {
		t.Fatalf("the page says %q after the reconnect", st)
	}
	evs, _ := d.c.Events(ctx, "host", 0, 10000)
	if last, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("#log").dataset.last`)); last != fmt.Sprint(evs[len(evs)-1].Seq) {
		t.Fatalf("the page's last event is %s, the log's %d", last, evs[len(evs)-1].Seq)
	}
}

// signIn opens the panel at base and signs in with the operator token.
func signIn(t testing.TB, tab context.Context, base, token string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the sign-in form", `!!document.querySelector("#signin")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#token"), token+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the agents after sign-in", `!!document.querySelector('#agents tbody tr')`)
}

// visit navigates the tab to the panel's page at fragment.
func visit(t *testing.T, tab context.Context, base, fragment, ready string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/"+fragment)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, fragment, ready)
}

// Managing agents from the panel: create one, change its permissions, add
// a provider whose key is never shown again, start a new conversation (the
// earlier one stays readable), browse the events by kind, see the usage.
func TestThePanelManagesAgents(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	tab := browser(t, ctx)
	shots := artifacts(t)
	signIn(t, tab, d.addr, d.c.Token)

	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#new-agent"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the agent form", `!!document.querySelector("#agent-form")`)
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS("#agent-name"), "scribe"),
		chromedp.SendKeys(chromedp.CSS("#agent-prompt"), "You write <b>short</b> notes."),
		chromedp.Click(chromedp.CSS("#agent-save"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the new agent's row", `!!document.querySelector('#agents tr[data-agent="scribe"]')`)
	a, err := d.c.Agent(ctx, "scribe")
	if err != nil || a.Prompt != "You write <b>short</b> notes." || a.Model != "demo/scripted-demo" {
		t.Fatalf("created: %+v %v", a, err)
	}
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#agents tr[data-agent="scribe"] button.edit`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the edit form", `document.querySelector("#agent-form h2")?.textContent === "Agent scribe"`)
	shoot(t, tab, shots, "agent-edit")
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#agent-permission"), `{"bash":"deny"}`), chromedp.Click(chromedp.CSS("#agent-save"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the saved edit", `!document.querySelector("#agent-form")`)
	if a, _ = d.c.Agent(ctx, "scribe"); !strings.Contains(string(a.Permission), `"bash":"deny"`) {
		t.Fatalf("the permission change: %s", a.Permission)
	}
	if audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "agent.update"}); err != nil || len(audit) == 0 || audit[len(audit)-1].Actor != "operator (panel)" {
		t.Fatalf("the change's audit: %+v %v", audit, err)
	}

	// A provider: its key goes in, and never comes back out.
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS("#provider-id"), "local"),
		chromedp.SendKeys(chromedp.CSS("#provider-url"), "https://llm.example.com/v1"),
		chromedp.SendKeys(chromedp.CSS(`#providers input[type="password"]`), "sk-local-secret-0123456789"),
		chromedp.SendKeys(chromedp.CSS("#provider-models"), "m1, m2"),
		chromedp.Click(chromedp.CSS("#providers .card button"))); err != nil {
		t.Fatal(err)
	}
	row := until[string](t, tab, "the provider's row", `document.querySelector('#providers tr[data-provider="local"]')?.textContent || null`)
	if !strings.Contains(row, "key set") || !strings.Contains(row, "m1, m2") {
		t.Fatalf("the provider's row: %q", row)
	}
	if html, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(html, "sk-local-secret") {
		t.Fatal("the page holds the provider's key")
	}

	// Two conversations: the second starts afresh and is the one shown;
	// both are listed; switching to the first shows it, and the next
	// message goes there, with its history.
	visit(t, tab, d.addr, "#/chat/scribe", `!!document.querySelector("#text")`)
	chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "hello"+kb.Enter))
	until[bool](t, tab, "the first answer", `document.querySelectorAll('#log .turn[data-ended="final"]').length === 1`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#new-conversation"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the note", `!!document.querySelector("#log .divider") && !document.querySelector("#log .turn")`)
	chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "hello again"+kb.Enter))
	until[bool](t, tab, "the second answer", `document.querySelectorAll('#log .turn[data-ended="final"]').length === 1 && document.querySelector('#log .turn .you').textContent === "hello again"`)
	visit(t, tab, d.addr, "#/agents", `!!document.querySelector("#agents")`)
	visit(t, tab, d.addr, "#/chat/scribe", `document.querySelectorAll('#conversation option').length === 2 && document.querySelectorAll('#log .turn[data-ended="final"]').length === 1`)
	if n, _ := chromedp.Run(tab, chromedp.Evaluate[float64](`document.querySelectorAll('#log .turn').length`)); n != 1 {
		t.Fatalf("%v turns shown, want the current conversation's one", n)
	}
	if shown, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('#conversation option:checked').textContent`)); !strings.HasPrefix(shown, "hello again · 1 turn") {
		t.Fatalf("the current conversation shows as %q", shown)
	}
	shoot(t, tab, shots, "conversations")
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector("#conversation"); s.selectedIndex = [...s.options].findIndex(o => o.textContent.startsWith("hello ·")); s.dispatchEvent(new Event("change")) })()`)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the first conversation shown", `document.querySelector('#conversation option:checked')?.textContent.startsWith("hello ·") && document.querySelector('#log .turn[data-ended="final"] .you')?.textContent === "hello"`)
	chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#text"), "recall"+kb.Enter))
	recalled := until[string](t, tab, "the resumed conversation's answer", `(() => { const t = document.querySelectorAll('#log .turn[data-ended="final"] .answer'); return t.length === 2 && t[1].textContent })()`)
	if !strings.Contains(recalled, "hello") || strings.Contains(recalled, "again") {
		t.Fatalf("the resumed conversation's turn answered %q: the model was not sent its history alone", recalled)
	}
	evs, _ := d.c.Events(ctx, "scribe", 0, 1000)
	sessions := map[string]bool{}
	for _, e := range toolEvents(evs, "final") {
		sessions[e.Session] = true
	}
	if len(sessions) != 2 {
		t.Fatalf("the three turns ran in %d sessions", len(sessions))
	}

	// Schedules: a bad one is refused with its reason and nothing made;
	// one added is listed with its next slot; run now sends its message
	// as a turn marked with it; remove removes it.
	chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#schedule-when"), "61 * * * *"), chromedp.SendKeys(chromedp.CSS("#schedule-message"), "good morning"),
		chromedp.Click(chromedp.CSS("#schedule-add")))
	until[bool](t, tab, "the refusal", `document.querySelector("#schedule-error").textContent.includes("61")`)
	if ss, _ := d.c.Schedules(ctx, "scribe"); len(ss) != 0 {
		t.Fatalf("a refused schedule was made: %+v", ss)
	}
	chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`document.querySelector("#schedule-when").value = ""`),
		chromedp.SendKeys(chromedp.CSS("#schedule-when"), "0 9 * * *"), chromedp.SendKeys(chromedp.CSS("#schedule-tz"), "Europe/Paris"),
		chromedp.Click(chromedp.CSS("#schedule-add")))
	until[bool](t, tab, "the schedule's row", `!!document.querySelector("#schedules tr[data-schedule] td.next")`)
	ss, err := d.c.Schedules(ctx, "scribe")
	if err != nil || len(ss) != 1 || ss[0].Cron != "0 9 * * *" || ss[0].TZ != "Europe/Paris" || ss[0].Message != "good morning" || ss[0].CreatedBy != "operator (panel)" {
		t.Fatalf("made: %+v %v", ss, err)
	}
	chromedp.Do(tab, chromedp.Click(chromedp.CSS("#schedules tr[data-schedule] button")))
	until[bool](t, tab, "the scheduled turn", `!!document.querySelector('#log .turn[data-ended="final"] .scheduled[data-schedule="`+ss[0].ID+`"]')`)
	shoot(t, tab, shots, "schedules")
	chromedp.Do(tab, chromedp.Click(chromedp.CSS("#schedules tr[data-schedule] button.danger")))
	until[bool](t, tab, "no schedule", `!document.querySelector("#schedules tr[data-schedule]")`)
	if ss, _ := d.c.Schedules(ctx, "scribe"); len(ss) != 0 {
		t.Fatalf("removed, still: %+v", ss)
	}

	// Events by kind, a page at a time.
	visit(t, tab, d.addr, "#/events/scribe/?kinds=final", `!!document.querySelector("#events tr")`)
	kinds, _ := chromedp.Run(tab, chromedp.Evaluate[string](`[...document.querySelectorAll("#events tr td:nth-child(3)")].map(td => td.textContent).join(",")`))
	if kinds != "final,final,final,final" { // three messages and the scheduled run
		t.Fatalf("final events only: %q", kinds)
	}
	shoot(t, tab, shots, "events")
	visit(t, tab, d.addr, "#/usage", `document.querySelector("main h1")?.textContent === "Usage"`)
	shoot(t, tab, shots, "usage")

	// An app at the gate: its report, a preview in a sandboxed frame, and
	// a person's approval.
	dir := filepath.Join(t.TempDir(), "notes")
	if out, errs, code := d.run("app", "new", "Notes", "--dir", dir); code != 0 {
		t.Fatalf("app new: %s %s", out, errs)
	}
	if out, errs, code := d.run("app", "submit", dir); code != 0 {
		t.Fatalf("app submit: %s %s", out, errs)
	}
	visit(t, tab, d.addr, "#/apps", `!!document.querySelector('#main [data-state="pending"] button')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#main [data-state="pending"] button`))); err != nil {
		t.Fatal(err)
	}
	frame := until[string](t, tab, "the preview frame", `(() => { const f = document.querySelector("iframe.preview"); return f && f.getAttribute("sandbox") + " " + f.getAttribute("src") })()`)
	if !strings.HasPrefix(frame, "allow-scripts /apps/preview/") {
		t.Fatalf("the preview frame: %q", frame)
	}
	shoot(t, tab, shots, "apps")
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#main [data-state="pending"] button.primary`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the approved app", `!!document.querySelector('#main [data-state="approved"]')`)
}

// The Library in the panel: the list, an item's files and a waiting
// version's diff as text, accepting it; an MCP server's secret set and
// never shown; an item given to an agent in its editor, pinned.
func TestThePanelShowsTheLibrary(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	dir, write := itemDir(t)
	write("item.json", `{"kind":"skill","name":"release-notes","description":"Writes release notes."}`)
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes\n---\nRead the log.\n")
	d.run("library", "add", dir)
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes\n---\nRead the log.\n<script>window.owned=1</script>\n")
	out, errOut, code := d.run("library", "add", dir)
	if code != 0 || !strings.Contains(out, "waits for you") {
		t.Fatalf("an update (%d): %s %s", code, out, errOut)
	}
	mdir, mwrite := itemDir(t)
	mwrite("item.json", `{"kind":"mcp","name":"memory","description":"A knowledge graph.","mcp":{"package":"`+memoryServer+`","env":["MEMORY_TOKEN"]}}`)
	if out, errOut, code := d.run("library", "add", mdir); code != 0 {
		t.Fatalf("library add mcp (%d): %s %s", code, out, errOut)
	}
	tab := browser(t, ctx)
	signIn(t, tab, d.addr, d.c.Token)

	visit(t, tab, d.addr, "#/library", `!!document.querySelector('#library tr[data-item="skill/release-notes"]')`)
	if row := until[string](t, tab, "the row", `document.querySelector('#library tr[data-item="skill/release-notes"]').textContent`); !strings.Contains(row, "1 waiting") {
		t.Fatalf("the list: %q", row)
	}
	visit(t, tab, d.addr, "#/library/skill%2Frelease-notes", `!!document.querySelector('#library-item pre.diff')`)
	diff := until[string](t, tab, "the diff", `document.querySelector('#library-item pre.diff').textContent`)
	if !strings.Contains(diff, "<script>window.owned=1</script>") {
		t.Fatalf("the diff: %q", diff)
	}
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#library-item button.accept"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "no version waiting", `!!document.querySelector('#library-item') && !document.querySelector('#library-item pre.diff') && !!document.querySelector('#library-item h2')`)
	if owned := until[bool](t, tab, "window.owned", `window.owned === undefined`); !owned {
		t.Fatal("the item's text ran as script")
	}
	if code, body := get(t, d.addr+"/v1/library/skill/release-notes", d.c.Token); code != 200 || strings.Contains(body, `"pending"`) {
		t.Fatalf("accepted in the panel, still waiting: %s", body)
	}

	// A secret: set in the panel, never shown again.
	const secret = "panel-secret-5f1c2e9a"
	visit(t, tab, d.addr, "#/library/mcp%2Fmemory", `!!document.querySelector('#secrets [data-secret="MEMORY_TOKEN"]')`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS(`#secrets [data-secret="MEMORY_TOKEN"] input`), secret),
		chromedp.Click(chromedp.CSS(`#secrets [data-secret="MEMORY_TOKEN"] button`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the secret set", `document.querySelector('#secrets [data-secret="MEMORY_TOKEN"]')?.textContent.includes("set") && !document.querySelector('#secrets [data-secret="MEMORY_TOKEN"]').textContent.includes("not set")`)
	if html, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(html, secret) {
		t.Fatal("the page holds the secret")
	}
	if b, err := os.ReadFile(filepath.Join(d.home, "keys", "mcpsecret.memory.MEMORY_TOKEN.key")); err != nil || string(b) != secret {
		t.Fatalf("the secret kept: %q %v", b, err)
	}

	// Given to an agent in its editor: pinned to the current version.
	d.agent(ctx, "notes", "")
	visit(t, tab, d.addr, "#/agents", `!!document.querySelector('#agents tr[data-agent="notes"] button.edit')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#agents tr[data-agent="notes"] button.edit`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the items in the editor", `!!document.querySelector('#agent-library input[value="skill/release-notes"]')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#agent-library input[value="skill/release-notes"]`)), chromedp.Click(chromedp.CSS("#agent-save"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the saved edit", `!document.querySelector("#agent-form")`)
	a, err := d.c.Agent(ctx, "notes")
	if err != nil || len(a.Library) != 1 || !strings.HasPrefix(a.Library[0], "skill/release-notes@") {
		t.Fatalf("given in the panel: %+v %v", a.Library, err)
	}

	// A workspace, its working directory and its egress, given in the
	// editor and shown in the list.
	project := t.TempDir()
	visit(t, tab, d.addr, "#/agents", `!!document.querySelector('#agents tr[data-agent="notes"] button.edit')`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#agents tr[data-agent="notes"] button.edit`)),
		chromedp.SendKeys(chromedp.CSS("#agent-workspaces"), "proj "+project+" rw"),
		chromedp.SendKeys(chromedp.CSS("#agent-workdir"), "proj"),
		chromedp.SetValue(chromedp.CSS("#agent-egress"), "hosts: registry.npmjs.org"),
		chromedp.Click(chromedp.CSS("#agent-save"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the saved edit", `!document.querySelector("#agent-form")`)
	row := until[string](t, tab, "the agent's reach", `document.querySelector('#agents tr[data-agent="notes"] .reach')?.textContent || ""`)
	if !strings.Contains(row, "/workspaces/proj = "+project+" (rw, workdir)") || !strings.Contains(row, "egress: hosts: registry.npmjs.org") {
		t.Fatalf("the list shows: %q", row)
	}
	if a, err = d.c.Agent(ctx, "notes"); err != nil || len(a.Workspaces) != 1 || a.Workspaces[0].Path != project || a.Workdir != "proj" ||
		a.Egress == nil || len(a.Egress.Hosts) != 1 || len(a.Library) != 1 {
		t.Fatalf("given in the panel: %+v %v", a, err)
	}
}
