package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/catalog"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/httpapi"
	"github.com/taosagent/taosagent/internal/panel"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// The chat view under load, in a real Chromium: a turn of 2,000 text
// deltas committed at 200 a second (10 s) into the log of a daemon served
// in process, followed by the panel over SSE. Every delta must be drawn;
// the figure is the lag from an event's commit to its text in the DOM
// (a MutationObserver's clock, the same machine's), which bounds the lag
// from its arrival over SSE.
//
//	go test -run '^$' -bench PanelChatUnderLoad -benchtime 1x ./internal/e2e
func BenchmarkPanelChatUnderLoad(b *testing.B) {
	const n, rate = 2000, 200
	dir := b.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	sup, _ := supervisor.New("/bin/false", filepath.Join(dir, "run"))
	defer sup.Close()
	keys := agent.Keys{Dir: filepath.Join(dir, "keys")}
	mgr := runner.New(runner.Config{Home: dir, Store: log, Instances: runner.Supervised(sup), Keys: keys})
	defer mgr.Close()
	ctx := context.Background()
	log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}}})
	if _, err := log.CreateAgent(ctx, agent.Agent{Name: "load", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		b.Fatal(err)
	}
	ctl := &control.Service{Log: log, Runner: mgr, Catalog: &catalog.Catalog{Home: dir, Log: log, Keys: keys, Forget: mgr.Forget}, Home: dir, Keys: keys}
	api := &httpapi.Server{Log: log, Runner: mgr, Control: ctl, Token: "tok", Sessions: &panel.Sessions{Token: "tok"}}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tab := browser(b, bctx)
	signIn(b, tab, srv.URL, "tok")
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/#/chat/load")); err != nil {
		b.Fatal(err)
	}
	until[bool](b, tab, "the chat", `!!document.querySelector("#log")`)
	// Each delta's text is "tI "; the answer is drawn again (as Markdown)
	// once a frame, and the observer notes when each delta first shows.
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`window.drawn = {};
		new MutationObserver(() => {
			const now = performance.timeOrigin + performance.now();
			for (const a of document.querySelectorAll("#log .answer"))
				for (const x of (a.textContent || "").matchAll(/t(\d+)/g))
					if (!(x[1] in window.drawn)) window.drawn[x[1]] = now;
		}).observe(document.querySelector("#log"), {childList: true, subtree: true, characterData: true});`)); err != nil {
		b.Fatal(err)
	}
	start := event.New("ses_load", event.TurnStarted, time.Now(), event.InputData{Input: 1, Text: "load"})
	start.Agent, start.Turn = "load", "turn_load"
	if _, err := log.Append(ctx, start); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	committed := make([]float64, n)
	tick := time.NewTicker(time.Second / rate)
	for i := range n {
		<-tick.C
		e := event.New("ses_load", event.Delta, time.Now(), event.DeltaData{Text: fmt.Sprintf("t%d ", i)})
		e.Agent, e.Turn = "load", "turn_load"
		if _, err := log.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
		committed[i] = float64(time.Now().UnixMicro()) / 1000
	}
	tick.Stop()
	until[bool](b, tab, "every delta drawn", fmt.Sprintf(`Object.keys(window.drawn).length >= %d`, n))
	b.StopTimer()
	drawn, err := chromedp.Run(tab, chromedp.Evaluate[map[string]float64](`window.drawn`))
	if err != nil {
		b.Fatal(err)
	}
	lags := make([]float64, 0, n)
	for i := range n {
		at, ok := drawn[fmt.Sprint(i)]
		if !ok {
			b.Fatalf("delta %d was never drawn", i)
		}
		lags = append(lags, max(at-committed[i], 0))
	}
	slices.Sort(lags)
	p := func(q float64) float64 { return lags[int(q*float64(len(lags)-1))] }
	b.ReportMetric(float64(len(lags)), "events-drawn")
	b.ReportMetric(p(0.5), "p50-lag-ms")
	b.ReportMetric(p(0.95), "p95-lag-ms")
	b.ReportMetric(lags[len(lags)-1], "max-lag-ms")
}
