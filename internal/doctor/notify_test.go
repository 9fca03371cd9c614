package doctor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/notify"
)

// Doctor names a channel whose deliveries were given up on, one still
// failing, Web Push with its keys gone, and a plain-HTTP panel on the
// network, where Push cannot work.
func TestDoctorSaysWhichNotificationsFail(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	log, err := eventlog.Open(h.DB())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []eventlog.Channel{{ID: "ch_ntfy", Kind: notify.Ntfy, URL: "http://n/t", Created: now}, {ID: "ch_push", Kind: notify.WebPush, URL: "https://push/x", Created: now}} {
		if err := log.CreateChannel(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	log.Enqueue(ctx, 1, []eventlog.Notification{{ID: "n1", Channel: "ch_ntfy", Source: "event:1", Kind: "error", Created: now},
		{ID: "n2", Channel: "ch_push", Source: "event:1", Kind: "error", Created: now}})
	log.NotificationFailed(ctx, "n1", "connection refused", now, true)
	for range 3 {
		log.NotificationFailed(ctx, "n2", "410 Gone", now, false)
	}
	log.Close()

	run := func(addr string) string {
		e := &Env{Home: h, Addr: addr}
		defer e.Close()
		var b strings.Builder
		for _, f := range checkNotifications(ctx, e) {
			b.WriteString(f.Severity.String() + ": " + f.Summary + " (" + f.Details + ")\n")
		}
		return b.String()
	}
	got := run("127.0.0.1:8484")
	for _, want := range []string{"error: ntfy channel ch_ntfy: 1 notification was given up on (the last error: connection refused",
		"warning: webpush channel ch_push: 1 notification is failing, still tried (the last error: 410 Gone)",
		"error: Web Push cannot work: the daemon's VAPID keys are gone"} {
		if !strings.Contains(got, want) {
			t.Errorf("doctor lacks %q:\n%s", want, got)
		}
	}
	if _, err := notify.LoadVAPID(h.Dir); err != nil {
		t.Fatal(err)
	}
	if got := run("127.0.0.1:8484"); strings.Contains(got, "VAPID") {
		t.Errorf("the keys are back:\n%s", got)
	}
	// No push channel yet, and a panel on the network over plain HTTP.
	log, _ = eventlog.Open(h.DB())
	log.DeleteChannel(ctx, "ch_push")
	log.Close()
	if got := run("192.168.1.5:8484"); !strings.Contains(got, "Web Push cannot work from other machines while the panel is served over plain HTTP") {
		t.Errorf("no word of plain HTTP:\n%s", got)
	}
}
