package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The panel as a phone installs it, and a person told of what waits: in
// Chromium its manifest parses with no error and its service worker
// registers; an ntfy topic added in the panel (a local ntfy-compatible
// server) is told of an approval, the link it carries opens that
// approval in the panel, and the badge and the inbox follow the live
// stream, with nothing polled.
func TestThePanelTellsAPersonWhatWaits(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 3*time.Minute)
	d := start(t, "")
	d.agent(ctx, "w", `{"bash":"ask"}`)

	var mu sync.Mutex
	var got []*http.Request
	arrived := make(chan struct{}, 8)
	ntfy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		w.Write([]byte(`{"id":"x","event":"message"}`))
		arrived <- struct{}{}
	}))
	t.Cleanup(ntfy.Close)

	tab := browser(t, ctx)
	signIn(t, tab, d.addr, d.c.Token)
	m, err := chromedp.Call(tab, page.GetAppManifest, page.GetAppManifestParams{})
	if err != nil || len(m.Errors) > 0 || !strings.HasSuffix(m.URL, "/panel/manifest.json") || !strings.Contains(m.Data, `"display": "standalone"`) {
		t.Fatalf("the manifest: %+v %v (errors %v)", m, err, m.Errors)
	}
	// As Chromium parsed it (an older one gives only the errors).
	if p := m.Manifest; p != nil && (p.Name != "taosagent" || p.StartURL != d.addr+"/" || len(p.Icons) != 1) {
		t.Fatalf("the manifest as parsed: %+v", p)
	}
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`navigator.serviceWorker.ready.then((r) => { window.__sw = r.active && r.active.scriptURL; }), true`)); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the service worker", `window.__sw === location.origin + "/panel/sw.js"`)

	visit(t, tab, d.addr, "#/approvals", `!!document.querySelector("#ntfy-add")`)
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#ntfy-url"), ntfy.URL+"/taos"), chromedp.Click(chromedp.CSS("#ntfy-add"))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the ntfy channel", `!!document.querySelector("#notify tr[data-channel]")`)
	if p, _ := chromedp.Run(tab, chromedp.Evaluate[bool](`!!document.querySelector("#push-subscribe")`)); !p {
		t.Error("no Web Push button on a loopback panel (a secure context)")
	}

	// An approval waits: the badge and the inbox show it, live.
	acc := d.send(ctx, "w", "run: echo hi", "")
	until[bool](t, tab, "the live badge", `document.querySelector("#pending").textContent === "1"`)
	until[bool](t, tab, "the approval in the inbox", `!!document.querySelector('[data-approval][data-state="pending"]')`)
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("ntfy was told nothing")
	}
	mu.Lock()
	r := got[0]
	mu.Unlock()
	click := r.Header.Get("Click")
	if r.URL.Path != "/taos" || r.Header.Get("Title") != "Agent w asks to use bash" || !strings.HasPrefix(click, d.addr+"/#/approvals/per") ||
		!strings.Contains(r.Header.Get("Actions"), "view, Approve, "+click) {
		t.Fatalf("the ntfy message: %s %v", r.URL, r.Header)
	}

	// Its link opens that approval, where the person decides.
	if err := chromedp.Do(tab, chromedp.Navigate(click)); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(click, d.addr+"/#/approvals/")
	until[bool](t, tab, "the approval, focused", `document.querySelector('.card.focus')?.dataset.approval === "`+id+`"`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`.card.focus button[data-decision="reject"]`))); err != nil {
		t.Fatal(err)
	}
	until[bool](t, tab, "the badge cleared", `document.querySelector("#pending").textContent === ""`)
	if f := last(d.turnOf(ctx, "w", acc.Seq, acc.Input)); f.Kind != "final" && f.Kind != "error" {
		t.Fatalf("the turn: %s", f.Kind)
	}
	// The same from the CLI: the list, a webhook's key shown once, a kind
	// that is none refused and nothing added.
	if out, _, code := d.run("notify", "list"); code != 0 || !strings.Contains(out, "ntfy  "+ntfy.URL+"/taos  0 waiting, 0 failed") {
		t.Fatalf("notify list (exit %d):\n%s", code, out)
	}
	if out, _, code := d.run("notify", "add", "webhook", "http://127.0.0.1:9/hook", "--kinds", "error"); code != 0 || !strings.Contains(out, "signing key (shown this once): ") {
		t.Fatalf("notify add webhook (exit %d):\n%s", code, out)
	}
	if _, errOut, code := d.run("notify", "add", "pigeon", "http://127.0.0.1:9/coo"); code == 0 || !strings.Contains(errOut, "want ntfy, webhook or webpush") {
		t.Fatalf("notify add pigeon (exit %d): %s", code, errOut)
	}
	var channels struct {
		Channels []struct {
			Kind     string `json:"kind"`
			LastSent string `json:"last_sent"`
			Link     string `json:"link"`
		} `json:"channels"`
	}
	d.c.Do(ctx, "GET", "/v1/notify/channels", nil, &channels)
	if len(channels.Channels) != 2 || channels.Channels[0].LastSent == "" || channels.Channels[0].Link != d.addr {
		t.Fatalf("the channels: %+v", channels)
	}
}
