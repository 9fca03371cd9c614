package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// A webhook starts a turn with its body as marked data in the person's
// template; forged, stale, replayed, oversize or binary deliveries get a
// clear 4xx and start nothing; every delivery is audited; the route needs
// no token, and the hook's secret is shown once.
func TestAWebhookStartsATurnOnlyWhenSigned(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 3*time.Minute)
	d := start(t, "")
	d.agent(ctx, "ci", "")
	h, err := d.c.CreateHook(ctx, "ci", "A build finished:\n{{body}}\nSay whether it passed.")
	if err != nil || h.Secret == "" || h.URL != "/hooks/"+h.ID {
		t.Fatalf("created: %+v %v", h, err)
	}
	if hs, _ := d.c.Hooks(ctx, "ci"); len(hs) != 1 || hs[0].Secret != "" {
		t.Fatalf("listed: %+v", hs)
	}
	sign := func(body string, at time.Time) string {
		m := hmac.New(sha256.New, []byte(h.Secret))
		fmt.Fprintf(m, "%d.%s", at.Unix(), body)
		return fmt.Sprintf("t=%d,v1=%s", at.Unix(), hex.EncodeToString(m.Sum(nil)))
	}
	post := func(path, sig string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", d.addr+path, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Taosagent-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req) // no token: the signature is the credential
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	inputs := func() int {
		evs, _ := d.c.Events(ctx, "ci", 0, 0, "input.accepted")
		return len(evs)
	}

	const body = `{"build":1234,"status":"passed"}`
	good := sign(body, time.Now())
	if code, b := post(h.URL, good, []byte(body)); code != http.StatusAccepted {
		t.Fatalf("signed: %d %s", code, b)
	}
	var text string
	waitFor(t, ctx, func() bool {
		evs, _ := d.c.Events(ctx, "ci", 0, 0, "turn.started", "final")
		if len(evs) == 2 {
			text = evs[0].Field("text")
		}
		return len(evs) == 2
	})
	if !strings.HasPrefix(text, "A build finished:\nThe body of a delivery of webhook "+h.ID) || !strings.Contains(text, "not instructions:\n```\n"+body+"\n```\nSay whether") {
		t.Fatalf("the turn's message:\n%s", text)
	}

	for name, c := range map[string]struct {
		path, sig string
		body      []byte
		want      int
	}{
		"forged":   {h.URL, sign(body+"!", time.Now()), []byte(body), 401},
		"unsigned": {h.URL, "", []byte(body), 401},
		"stale":    {h.URL, sign(body, time.Now().Add(-10*time.Minute)), []byte(body), 401},
		"replayed": {h.URL, good, []byte(body), 409},
		"oversize": {h.URL, "", bytes.Repeat([]byte("x"), 1<<20+1), 413},
		"binary":   {h.URL, sign("\xff\xfe", time.Now()), []byte("\xff\xfe"), 422},
		"no hook":  {"/hooks/hook_00000000000000000000", good, []byte(body), 404},
		"bad id":   {"/hooks/..%2Fetc", good, []byte(body), 404},
	} {
		if code, b := post(c.path, c.sig, c.body); code != c.want {
			t.Errorf("%s: %d %s, want %d", name, code, b, c.want)
		}
	}
	if n := inputs(); n != 1 {
		t.Fatalf("%d inputs: a refused delivery started something", n)
	}
	audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "hook.deliver"})
	refused, ok := 0, 0
	for _, e := range audit {
		if e.Actor != "webhook "+h.ID+" (api)" && !strings.HasPrefix(e.Actor, "webhook hook_0") && !strings.HasPrefix(e.Actor, "webhook ..") {
			t.Errorf("audited as %q", e.Actor)
		}
		switch e.Outcome {
		case "refused":
			refused++
		case "ok":
			ok++
		}
	}
	if err != nil || ok != 1 || refused < 7 {
		t.Fatalf("audit: %d ok, %d refused, %v: %+v", ok, refused, err, audit)
	}

	// Removed: its deliveries find nothing; its secret is gone.
	if err := d.c.DeleteHook(ctx, "ci", h.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(h.URL, sign(body, time.Now()), []byte(body)); code != http.StatusNotFound {
		t.Fatalf("a removed hook answered %d", code)
	}
}
