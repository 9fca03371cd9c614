package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// probeJS is an app's script that tries what a hostile app would: the
// daemon's cookie and storage, its API, the page that embeds it, and the
// top window. It reports to its parent, and shows that it ran.
const probeJS = `const results = {};
function probe(name, fn) {
  try { results[name] = "allowed: " + String(fn()); } catch (e) { results[name] = "blocked: " + e.name; }
}
probe("origin", () => self.origin);
probe("cookie", () => document.cookie);
probe("storage", () => localStorage.getItem("secret"));
probe("parent", () => parent.document.title);
if (window !== top) probe("top", () => { top.location.href = "/v1/agents"; return "navigated"; });
document.getElementById("status").textContent = "probed";
fetch("/v1/agents", {credentials: "include"})
  .then(r => r.text()).then(t => "allowed: " + t.slice(0, 80), e => "blocked: " + e.name)
  .then(v => { results.api = v; parent.postMessage(JSON.stringify(results), "*"); });
`

// parentPage stands for the panel: a page of the daemon's origin, with its
// storage, that embeds the preview as the panel will.
const parentPage = `<!doctype html><html><head><title>daemon page</title></head><body>
<iframe sandbox="allow-scripts" src="PREVIEW"></iframe><pre id="log"></pre>
<script>
localStorage.setItem("secret", "parent-storage-secret");
addEventListener("message", e => { document.getElementById("log").textContent = e.data; });
</script></body></html>`

// A previewed app runs in a real Chromium, from an opaque origin: its
// script runs, and it can read neither the daemon's cookie nor its
// storage, nor call the daemon's API, nor touch or navigate the page that
// embeds it. Opened directly, it is just as opaque.
func TestAPreviewedAppIsOpaqueInChromium(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 2*time.Minute)
	dir := filepath.Join(t.TempDir(), "probe")
	if out, errs, code := d.run("app", "new", "Probe", "--dir", dir); code != 0 {
		t.Fatalf("app new: %s %s", out, errs)
	}
	writeFile(t, filepath.Join(dir, "app.js"), probeJS)
	out, errs, code := d.run("app", "submit", dir)
	if code != 0 || !strings.Contains(out, ": pending") {
		t.Fatalf("app submit (exit %d): %s %s", code, out, errs)
	}
	sha := regexp.MustCompile(`[0-9a-f]{64}`).FindString(out)
	code, body := request(t, "POST", d.addr+"/v1/apps/"+sha+"/preview", d.c.Token, "")
	var pv struct{ URL string }
	if json.Unmarshal([]byte(body), &pv); code != 200 || pv.URL == "" {
		t.Fatalf("preview: %d %s", code, body)
	}

	tab := browser(t, ctx)
	// Opened on its own: it runs, and is still opaque.
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+pv.URL)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(tab, chromedp.Poll[string](`document.getElementById("status").textContent === "probed" ?
		self.origin + " " + (() => { try { return document.cookie } catch (e) { return "cookie " + e.name } })() : null`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || got != "null cookie SecurityError" {
		t.Fatalf("opened directly: %q %v", got, err)
	}
	// The daemon's origin holds a cookie a script of its own could read.
	if _, err := chromedp.Call(tab, network.SetCookie, network.SetCookieParams{Name: "taosagent_session", Value: "cookie-secret",
		URL: d.addr, SameSite: network.CookieSameSiteStrict}); err != nil {
		t.Fatal(err)
	}
	// The embedding page, served at the daemon's origin by the browser's
	// request interception (the panel's own page is its issue).
	if _, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: d.addr + "/__parent"}}}); err != nil {
		t.Fatal(err)
	}
	paused := chromedp.Events(tab, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			chromedp.Call(tab, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: 200,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html"}},
				Body:            []byte(strings.Replace(parentPage, "PREVIEW", pv.URL, 1))})
		}
	}()
	if err := chromedp.Do(tab, chromedp.Navigate(d.addr+"/__parent")); err != nil {
		t.Fatal(err)
	}
	if own, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.cookie + " " + localStorage.getItem("secret")`)); err != nil ||
		own != "taosagent_session=cookie-secret parent-storage-secret" {
		t.Fatalf("the daemon's own page sees %q %v", own, err)
	}
	log, err := chromedp.Run(tab, chromedp.Poll[string](`document.getElementById("log").textContent || null`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("the app never reported: %v", err)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(log), &res); err != nil {
		t.Fatalf("report %q: %v", log, err)
	}
	t.Logf("what the app could do: %v", res)
	if res["origin"] != "allowed: null" {
		t.Errorf("the app's origin is %q, want the opaque null", res["origin"])
	}
	for _, k := range []string{"cookie", "storage", "parent", "api"} {
		if !strings.HasPrefix(res[k], "blocked") {
			t.Errorf("%s: %s", k, res[k])
		}
	}
	if loc, err := chromedp.Run(tab, chromedp.Location()); err != nil || loc != d.addr+"/__parent" {
		t.Errorf("the app navigated the page that embeds it: %s %v", loc, err)
	}
	if title, _ := chromedp.Run(tab, chromedp.Title()); title != "daemon page" {
		t.Errorf("the embedding page changed: %q", title)
	}

}
