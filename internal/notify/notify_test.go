package notify_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/notify"
)

// received is what a test server was sent.
type received struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
	got  chan struct{}
}

func (r *received) server(t *testing.T, status func(n int) int) *httptest.Server {
	r.got = make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.body = append(r.body, b)
		n := len(r.reqs)
		r.mu.Unlock()
		w.WriteHeader(status(n))
		r.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (r *received) wait(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for {
		r.mu.Lock()
		have := len(r.reqs)
		r.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-r.got:
		case <-ctx.Done():
			t.Fatalf("%d requests, want %d", have, n)
		}
	}
}

func ok(int) int { return http.StatusCreated }

// decrypt opens a Web Push message body (RFC 8188 aes128gcm, keys per
// RFC 8291) with the subscription's private key and auth secret, as a
// browser does.
func decrypt(t *testing.T, ua *ecdh.PrivateKey, auth, body []byte) []byte {
	t.Helper()
	if len(body) < 21 {
		t.Fatalf("a body of %d bytes", len(body))
	}
	salt, idlen := body[:16], int(body[20])
	rs := binary.BigEndian.Uint32(body[16:20])
	asPub, ct := body[21:21+idlen], body[21+idlen:]
	if rs < 18 || len(ct) > int(rs) {
		t.Fatalf("record size %d for %d bytes", rs, len(ct))
	}
	as, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		t.Fatalf("the sender's key: %v", err)
	}
	shared, err := ua.ECDH(as)
	if err != nil {
		t.Fatal(err)
	}
	info := append(append([]byte("WebPush: info\x00"), ua.PublicKey().Bytes()...), asPub...)
	ikm, _ := hkdf.Key(sha256.New, shared, auth, string(info), 32)
	prk, _ := hkdf.Extract(sha256.New, ikm, salt)
	cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	plain = []byte(strings.TrimRight(string(plain), "\x00"))
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		t.Fatal("no last-record delimiter")
	}
	return plain[:len(plain)-1]
}

// Every channel is told of an approval once, each in its own way: ntfy's
// headers with the panel's link as its actions; a webhook signed, tried
// again after a failure with the same Idempotency-Key; a Web Push that
// decrypts, with the subscription's keys, to the message. A channel for
// another agent is told nothing; a restarted notifier enqueues nothing
// twice.
func TestEachChannelIsToldOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	home := t.TempDir()
	l, err := eventlog.Open(filepath.Join(home, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	vapid, err := notify.LoadVAPID(home)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := notify.LoadVAPID(home); again != vapid {
		t.Fatal("the VAPID keys changed at the second start")
	}

	var ntfy, hook, push, other received
	ntfySrv := ntfy.server(t, ok)
	hookSrv := hook.server(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	pushSrv := push.server(t, ok)
	otherSrv := other.server(t, ok)
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	rand.Read(auth)

	now := time.Now().Truncate(time.Millisecond)
	add := func(id, kind, url string, agents []string, details bool, sec notify.Secrets) {
		t.Helper()
		if err := notify.SaveSecrets(home, id, sec); err != nil {
			t.Fatal(err)
		}
		if err := l.CreateChannel(ctx, eventlog.Channel{ID: id, Kind: kind, URL: url, Link: "https://box.example", Agents: agents, Details: details, Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	add("ch_ntfy", notify.Ntfy, ntfySrv.URL+"/taos", nil, false, notify.Secrets{Token: "tk_ntfy"})
	add("ch_hook", notify.Webhook, hookSrv.URL+"/in", []string{"a"}, true, notify.Secrets{Secret: "s3cret"})
	add("ch_push", notify.WebPush, pushSrv.URL+"/push/xyz", nil, false, notify.Secrets{
		P256dh: base64.RawURLEncoding.EncodeToString(ua.PublicKey().Bytes()), Auth: base64.RawURLEncoding.EncodeToString(auth)})
	add("ch_other", notify.Ntfy, otherSrv.URL+"/b", []string{"b"}, false, notify.Secrets{})

	run := func() (stop func()) {
		n := &notify.Notifier{Store: l, Home: home, VAPID: vapid, Backoff: 50 * time.Millisecond}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); n.Run(rctx) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	// Nothing from before the notifier's first start.
	ask := event.New("ses_1", event.PermissionAsked, time.Now(), event.PermissionAskedData{Approval: "per_1", Tool: "bash", Patterns: []string{"rm -rf /srv"}, Display: "bash rm -rf /srv"})
	ask.Agent, ask.Turn = "a", "turn_1"
	waitFor := func(cond func() bool) {
		for !cond() {
			if ctx.Err() != nil {
				t.Fatal("timed out")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(func() bool { _, ok, _ := l.NotifyCursor(ctx); return ok })
	if _, err := l.Append(ctx, ask); err != nil {
		t.Fatal(err)
	}
	ntfy.wait(t, ctx, 1)
	hook.wait(t, ctx, 2)
	push.wait(t, ctx, 1)

	// ntfy: the title, the link, no detail.
	r := ntfy.reqs[0]
	if r.Header.Get("Title") != "Agent a asks to use bash" || r.Header.Get("Authorization") != "Bearer tk_ntfy" ||
		r.Header.Get("Click") != "https://box.example/#/approvals/per_1" || r.Header.Get("X-Sequence-ID") == "" ||
		!strings.Contains(r.Header.Get("Actions"), "view, Approve, https://box.example/#/approvals/per_1") ||
		strings.Contains(string(ntfy.body[0]), "rm -rf") {
		t.Fatalf("ntfy: %v %q", r.Header, ntfy.body[0])
	}
	// The webhook: signed, the same id on both attempts, details on.
	k1, k2 := hook.reqs[0].Header.Get("Idempotency-Key"), hook.reqs[1].Header.Get("Idempotency-Key")
	var m notify.Message
	json.Unmarshal(hook.body[1], &m)
	sig := hook.reqs[1].Header.Get(notify.SignatureHeader)
	var unix int64
	for _, part := range strings.Split(sig, ",") {
		if v, ok := strings.CutPrefix(part, "t="); ok {
			json.Unmarshal([]byte(v), &unix)
		}
	}
	if k1 == "" || k1 != k2 || m.ID != k1 || m.Body != "bash rm -rf /srv" || m.Ref != "per_1" ||
		sig != notify.Sign([]byte("s3cret"), hook.body[1], time.Unix(unix, 0)) {
		t.Fatalf("webhook: keys %q %q, %+v, signature %q", k1, k2, m, sig)
	}
	// Web Push: it decrypts to the message; its topic is its id.
	pr := push.reqs[0]
	plain := decrypt(t, ua, auth, push.body[0])
	var pm notify.Message
	if err := json.Unmarshal(plain, &pm); err != nil || pm.Kind != notify.Approval || pm.Agent != "a" || pm.Ref != "per_1" || pm.Body != "" ||
		pm.URL != "https://box.example/#/approvals/per_1" {
		t.Fatalf("push payload: %s %v", plain, err)
	}
	if pr.Header.Get("Content-Encoding") != "aes128gcm" || !strings.HasPrefix(pr.Header.Get("Authorization"), "vapid t=") ||
		!strings.Contains(pr.Header.Get("Authorization"), "k="+vapid.Public) || pr.Header.Get("Topic") == "" || pr.Header.Get("TTL") == "" {
		t.Fatalf("push headers: %v", pr.Header)
	}

	// An error, for agent b: the ntfy channel (every agent) and b's.
	// (Stopped once the deliveries are recorded: one cut mid-send is sent
	// again at the next start, at least once.)
	allSent := func() bool {
		ns, _ := l.Notifications(ctx, "", 100)
		for _, n := range ns {
			if n.State != "sent" {
				return false
			}
		}
		return true
	}
	waitFor(allSent)
	stop()
	stop = run()
	defer stop()
	// A scheduled run's error, named as such, then a budget's warning.
	began := event.New("ses_2", event.TurnStarted, time.Now(), event.InputData{Input: 1, Schedule: "sch_9"})
	fail := event.New("ses_2", event.Error, time.Now(), event.ErrorData{Code: "provider", Message: "upstream 500"})
	began.Agent, began.Turn, fail.Agent, fail.Turn = "b", "turn_2", "b", "turn_2"
	if _, err := l.Append(ctx, began, fail); err != nil {
		t.Fatal(err)
	}
	other.wait(t, ctx, 1)
	ntfy.wait(t, ctx, 2)
	if got := ntfy.reqs[1].Header.Get("Title"); got != "A scheduled run of agent b failed (schedule sch_9)" {
		t.Fatalf("the error's title: %q", got)
	}
	warn := event.New("ses_2", event.Usage, time.Now(), event.UsageData{Source: "gateway", Warning: "budget: 80% of the daily tokens"})
	quiet := event.New("ses_2", event.Usage, time.Now(), event.UsageData{Source: "gateway", Input: 10})
	warn.Agent, quiet.Agent = "b", "b"
	if _, err := l.Append(ctx, quiet, warn); err != nil {
		t.Fatal(err)
	}
	other.wait(t, ctx, 2)
	ntfy.wait(t, ctx, 3)
	if r := ntfy.reqs[2]; r.Header.Get("Title") != "Agent b passed the soft share of its budget" || r.Header.Get("Click") != "https://box.example/#/usage" {
		t.Fatalf("the budget's: %v", r.Header)
	}
	push.wait(t, ctx, 2)
	waitFor(allSent)
	ns, _ := l.Notifications(ctx, "", 100)
	// 3 for a's approval (not b's channel), 3 for b's error and 3 for its
	// budget (not the webhook, a's only), none for plain usage; none twice
	// across the restart.
	push.wait(t, ctx, 3)
	waitFor(allSent)
	ns, _ = l.Notifications(ctx, "", 100)
	if len(ns) != 9 || len(ntfy.reqs) != 3 || len(push.reqs) != 3 || len(other.reqs) != 2 || len(hook.reqs) != 2 {
		t.Fatalf("%d notifications; ntfy %d, push %d, other %d, hook %d requests", len(ns), len(ntfy.reqs), len(push.reqs), len(other.reqs), len(hook.reqs))
	}
}

// A tool's name is an agent's word (an MCP server of its own names its
// tools): in a title, and so in ntfy's headers, it stays on one line,
// every character visible, bounded.
func TestATitleIsOneVisibleLine(t *testing.T) {
	e := event.New("ses_1", event.PermissionAsked, time.Now(), event.PermissionAskedData{Approval: "per_1", Tool: "evil\r\nX-Injected: 1\x1b[31m" + strings.Repeat("x", 200)})
	e.Agent = "a"
	body, _ := json.Marshal(e)
	n, ok := notify.Of(eventlog.Record{Seq: 1, Agent: "a", Kind: e.Kind, Body: body})
	if !ok || strings.ContainsAny(n.Title, "\r\n\x1b") || !strings.HasPrefix(n.Title, "Agent a asks to use evil⟦U+000D⟧ X-Injected: 1⟦U+001B⟧") || len(n.Title) > 100 {
		t.Fatalf("title %q", n.Title)
	}
}

// A receiver that hangs delays no other channel: each channel has a
// sender of its own.
func TestASlowReceiverDelaysNoOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	home := t.TempDir()
	l, err := eventlog.Open(filepath.Join(home, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	release := make(chan struct{})
	hung := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	var fast received
	fastSrv := fast.server(t, ok)
	now := time.Now().Add(-time.Second)
	for id, c := range map[string]eventlog.Channel{
		"ch_slow": {Kind: notify.Ntfy, URL: slow.URL + "/s", Agents: []string{"s"}},
		"ch_fast": {Kind: notify.Ntfy, URL: fastSrv.URL + "/f", Agents: []string{"f"}},
	} {
		c.ID, c.Created = id, now
		if err := l.CreateChannel(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	n := &notify.Notifier{Store: l, Home: home, Client: &http.Client{Timeout: time.Minute}}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(rctx) }()
	defer func() { stop(); <-done }()
	for {
		if _, ok, _ := l.NotifyCursor(ctx); ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fail := func(agent string) {
		e := event.New("ses_1", event.Error, time.Now(), event.ErrorData{Message: "boom"})
		e.Agent = agent
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	fail("s")
	select {
	case <-hung:
	case <-ctx.Done():
		t.Fatal("the slow receiver was never called")
	}
	fail("f")
	fast.wait(t, ctx, 1) // while the slow one still hangs
}
