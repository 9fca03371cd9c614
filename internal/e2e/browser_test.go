package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium is Debian's browser (make test installs it).
const chromium = "/usr/bin/chromium"

// browser starts a headless Chromium of its own for t, and returns a tab.
// (Chromium's own sandbox needs unprivileged user namespaces for its uid;
// tests run as root, where it refuses to start with it.)
func browser(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s: %v: run `make test`, which installs Debian's chromium", chromium, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancel)
	tab, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// What the page says (its console, its exceptions, the browser's own
	// reports such as a policy's refusals) goes to the test's log.
	chromedp.Listen(tab, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var b strings.Builder
			for _, a := range e.Args {
				b.WriteString(" " + string(a.Value) + a.Description)
			}
			t.Logf("chromium console %s:%s", e.Type, b.String())
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			t.Logf("chromium exception: %s", msg)
		case *cdplog.EventEntryAdded:
			t.Logf("chromium %s: %s %s", e.Entry.Level, e.Entry.Text, e.Entry.URL)
		}
	})
	if _, err := chromedp.Call(tab, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	return tab
}
