package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/taosagent/taosagent/internal/notify"
)

// checkNotifications reports the channels whose deliveries fail (given up
// on, or still tried after failures) and when Web Push cannot work: its
// keys gone, or a panel a browser reaches over plain HTTP on another
// machine (service workers need a secure context).
func checkNotifications(ctx context.Context, e *Env) []Finding {
	const id = "notifications"
	db, err := e.Store(ctx)
	if err != nil {
		return ok(id, "not checked: the store cannot be read (see database, or cluster)")
	}
	chans, err := db.Channels(ctx)
	if err != nil {
		return ok(id, "not checked: the channels cannot be read (see database)")
	}
	var out []Finding
	push := false
	for _, c := range chans {
		push = push || c.Kind == notify.WebPush
		ns, err := db.Notifications(ctx, c.ID, 100)
		if err != nil {
			continue
		}
		failed, failing, last := 0, 0, ""
		for _, n := range ns {
			switch {
			case n.State == "failed":
				failed++
			case n.State == "pending" && n.Attempts >= 3:
				failing++
			default:
				continue
			}
			if last == "" {
				last = n.LastError
			}
		}
		what := c.Kind + " channel " + c.ID
		switch {
		case failed > 0:
			out = append(out, Finding{ID: id, Severity: Error, Summary: fmt.Sprintf("%s: %s given up on", what, plural(failed, "notification was", "notifications were")),
				Details: "the last error: " + last + "; fix the receiver, or remove the channel (DELETE /v1/notify/channels/" + c.ID + ") and add it again"})
		case failing > 0:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("%s: %s failing, still tried", what, plural(failing, "notification is", "notifications are")),
				Details: "the last error: " + last})
		}
	}
	var v notify.VAPID
	b, err := os.ReadFile(e.Home.VAPID())
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if push && (err != nil || v.Public == "" || v.Private == "") {
		out = append(out, Finding{ID: id, Severity: Error, Summary: "Web Push cannot work: the daemon's VAPID keys are gone or damaged",
			Details: e.Home.VAPID() + ": the daemon makes new ones at its start; each browser then subscribes again (the panel's Inbox, Notify this browser)"})
	}
	if host, _, err := net.SplitHostPort(e.Addr); err == nil && !loopback(host) && !push {
		out = append(out, Finding{ID: id, Severity: Warning, Summary: "Web Push cannot work from other machines while the panel is served over plain HTTP at " + e.Addr,
			Details: "a browser runs service workers only in a secure context: reach the panel over HTTPS (serve --public-listen with --tls-cert, or a proxy that terminates TLS); ntfy and webhooks work without"})
	}
	if len(out) == 0 {
		return ok(id, fmt.Sprintf("%s, no delivery failing", plural(len(chans), "channel", "channels")))
	}
	return out
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
