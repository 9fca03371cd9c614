// Package notify tells a person, on the channels they chose (ntfy, a
// webhook, Web Push), of what waits for them or went wrong: an approval or
// a question that waits, a turn that ended in error. Each notification is
// enqueued once per (event, channel), in the same transaction that moves
// the notifier's cursor over the log, and delivered at least once, with
// backoff, carrying a stable id so that a receiver drops repeats. What
// leaves the box is the minimum: the agent, the kind, a short title, and
// a link to the panel; what was asked, or the error, only when the person
// turned details on for the channel.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/SherClockHolmes/webpush-go"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/randid"
	"github.com/taosagent/taosagent/internal/render"
)

// The kinds of notification.
const (
	Approval = "approval" // an approval waits for a person
	Question = "question" // a question waits for a person
	Error    = "error"    // a turn (a task's, a schedule's run) ended in error
	Budget   = "budget"   // an agent passed the soft share of its budget
)

// Kinds is every kind.
var Kinds = []string{Approval, Question, Error, Budget}

// The kinds of channel.
const (
	Ntfy    = "ntfy"
	Webhook = "webhook"
	WebPush = "webpush"
)

// Note is what an event tells a person, before a channel's filters.
type Note struct {
	Kind   string
	Title  string
	Detail string // what was asked, or the error: only for channels with details
	Ref    string // the approval's or question's id
	Turn   string // the turn it happened in
	Time   time.Time
}

// oneLine is s (an agent's or a tool's words) fit for a title or a
// header: every character visible, on one line, at most max bytes.
func oneLine(s string, max int) string {
	return bound(strings.Join(strings.Fields(render.Visible(s)), " "), max)
}

// Of is what the event of record r tells a person, if anything.
func Of(r eventlog.Record) (Note, bool) {
	var e event.Event
	if r.Kind == eventlog.Reset || json.Unmarshal(r.Body, &e) != nil {
		return Note{}, false
	}
	switch e.Kind {
	case event.PermissionAsked:
		var d event.PermissionAskedData
		json.Unmarshal(e.Data, &d)
		detail := d.Display
		if detail == "" {
			detail = d.Tool + " " + strings.Join(d.Patterns, " ")
		}
		return Note{Approval, "Agent " + e.Agent + " asks to use " + oneLine(d.Tool, 64), detail, d.Approval, e.Turn, e.Time}, true
	case event.QuestionAsked:
		var d event.QuestionAskedData
		json.Unmarshal(e.Data, &d)
		return Note{Question, "Agent " + e.Agent + " asks you a question", string(d.Questions), d.Question, e.Turn, e.Time}, true
	case event.Error:
		var d event.ErrorData
		json.Unmarshal(e.Data, &d)
		return Note{Error, "A turn of agent " + e.Agent + " ended in error", d.Message, "", e.Turn, e.Time}, true
	case event.Usage:
		var d event.UsageData
		if json.Unmarshal(e.Data, &d) != nil || d.Warning == "" {
			return Note{}, false
		}
		return Note{Budget, "Agent " + e.Agent + " passed the soft share of its budget", d.Warning, "", e.Turn, e.Time}, true
	}
	return Note{}, false
}

// wants reports whether channel c takes a note of kind from agent.
func wants(c eventlog.Channel, agent, kind string) bool {
	return (len(c.Agents) == 0 || slices.Contains(c.Agents, agent)) && (len(c.Kinds) == 0 || slices.Contains(c.Kinds, kind))
}

// Secrets is what a channel keeps in the home (0600), never in the
// database: an ntfy token, a webhook's signing key, a push
// subscription's keys.
type Secrets struct {
	Token  string `json:"token,omitempty"`
	Secret string `json:"secret,omitempty"`
	P256dh string `json:"p256dh,omitempty"`
	Auth   string `json:"auth,omitempty"`
}

// SecretsPath is where channel id keeps its secrets under home.
func SecretsPath(dir, id string) string { return filepath.Join(home.Home{Dir: dir}.Notify(), id) }

// SaveSecrets writes channel id's secrets (0600).
func SaveSecrets(home, id string, s Secrets) error {
	if err := os.MkdirAll(filepath.Dir(SecretsPath(home, id)), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(s)
	return atomicfile.Write(SecretsPath(home, id), b, 0o600)
}

// VAPID is the daemon's key pair for Web Push (RFC 8292), made at first
// start and kept in the home (0600).
type VAPID struct {
	Public  string `json:"public"`
	Private string `json:"private"`
}

// LoadVAPID reads the home's VAPID keys, making them first if need be.
func LoadVAPID(dir string) (VAPID, error) {
	p := home.Home{Dir: dir}.VAPID()
	var v VAPID
	b, err := os.ReadFile(p)
	if err == nil {
		if err := json.Unmarshal(b, &v); err != nil || v.Public == "" || v.Private == "" {
			return VAPID{}, fmt.Errorf("%s: not a VAPID key pair", p)
		}
		return v, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return VAPID{}, err
	}
	if v.Private, v.Public, err = webpush.GenerateVAPIDKeys(); err != nil {
		return VAPID{}, err
	}
	b, _ = json.Marshal(v)
	return v, atomicfile.Write(p, b, 0o600)
}

// Message is what one notification carries to its channel: the webhook's
// body, the push's payload (ntfy's is the title, the body and headers).
type Message struct {
	ID    string    `json:"id"` // stable across attempts
	Kind  string    `json:"kind"`
	Agent string    `json:"agent"`
	Title string    `json:"title"`
	Body  string    `json:"body,omitempty"` // only with details
	URL   string    `json:"url,omitempty"`  // the panel's page for it
	Ref   string    `json:"ref,omitempty"`  // the approval's or question's id
	Time  time.Time `json:"time"`
}

// MaxDetail bounds what a notification says of what was asked.
const MaxDetail = 512

// Notifier reads the log and delivers notifications. Set its fields, then
// Run it.
type Notifier struct {
	Store  eventlog.Store
	Home   string
	VAPID  VAPID
	Client *http.Client // default: a client with a 15 s timeout
	Logger *slog.Logger
	// Redact hides known secrets in what leaves the box.
	Redact func(string) string
	// Backoff is the wait after a first failure, doubled after each
	// (at most an hour); default 5 s. After MaxAttempts it gives up.
	Backoff     time.Duration
	MaxAttempts int

	wake chan struct{}
}

// Wake makes the notifier look at its outbox now.
func (n *Notifier) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) init() {
	if n.Client == nil {
		n.Client = &http.Client{Timeout: 15 * time.Second}
	}
	if n.Logger == nil {
		n.Logger = slog.New(slog.DiscardHandler)
	}
	if n.Redact == nil {
		n.Redact = func(s string) string { return s }
	}
	if n.Backoff <= 0 {
		n.Backoff = 5 * time.Second
	}
	if n.MaxAttempts <= 0 {
		n.MaxAttempts = 12
	}
	if n.wake == nil {
		n.wake = make(chan struct{}, 1)
	}
}

// Run enqueues and delivers until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	n.init()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.deliverLoop(ctx)
	}()
	n.enqueueLoop(ctx)
	<-done
}

// enqueueLoop follows the log from the stored cursor (the head, the first
// time) and enqueues each note for each channel that wants it.
func (n *Notifier) enqueueLoop(ctx context.Context) {
	cursor, ok, err := n.Store.NotifyCursor(ctx)
	if err != nil {
		n.Logger.Warn("notify: cursor", "err", err)
		return
	}
	if !ok {
		cursor = n.Store.Head()
		if err := n.Store.Enqueue(ctx, cursor, nil); err != nil {
			n.Logger.Warn("notify: cursor", "err", err)
			return
		}
	}
	sub, err := n.Store.Subscribe("", cursor, false, event.PermissionAsked, event.QuestionAsked, event.Error, event.Usage)
	if err != nil {
		return
	}
	defer sub.Close()
	for {
		recs, err := sub.Next(ctx, 256)
		if err != nil {
			return
		}
		chans, err := n.Store.Channels(ctx)
		for err == nil {
			if err = n.enqueue(ctx, chans, recs); err == nil {
				break
			}
			// The store refused: try again, never skip what a person
			// should have been told.
			n.Logger.Warn("notify: enqueue", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			err = nil
		}
		n.Wake()
	}
}

func (n *Notifier) enqueue(ctx context.Context, chans []eventlog.Channel, recs []eventlog.Record) error {
	var ns []eventlog.Notification
	var last int64
	for _, r := range recs {
		last = max(last, r.Seq)
		note, ok := Of(r)
		if !ok {
			continue
		}
		if note.Kind == Error {
			note.Title = n.failedTitle(ctx, r.Agent, note)
		}
		for _, c := range chans {
			// A channel is told of what came after it was added, even when
			// the notifier reads a backlog.
			if !wants(c, r.Agent, note.Kind) || note.Time.Before(c.Created) {
				continue
			}
			body := ""
			if c.Details {
				body = bound(n.Redact(note.Detail), MaxDetail)
			}
			ns = append(ns, eventlog.Notification{ID: randid.ID("note"), Channel: c.ID, Source: "event:" + strconv.FormatInt(r.Seq, 10),
				Kind: note.Kind, Agent: r.Agent, Title: note.Title, Body: body, Ref: note.Ref, Created: time.Now().Truncate(time.Millisecond)})
		}
	}
	return n.Store.Enqueue(ctx, last, ns)
}

// failedTitle names what a failed turn was: a schedule's run, a task, or
// a turn (its turn.started event says).
func (n *Notifier) failedTitle(ctx context.Context, agent string, note Note) string {
	if note.Turn == "" {
		return note.Title
	}
	evs, err := n.Store.TurnEvents(ctx, agent, note.Turn)
	if err != nil {
		return note.Title
	}
	for _, e := range evs {
		var d event.InputData
		if e.Kind != event.TurnStarted || json.Unmarshal(e.Data, &d) != nil {
			continue
		}
		switch {
		case d.Schedule != "":
			return "A scheduled run of agent " + agent + " failed (schedule " + oneLine(d.Schedule, 40) + ")"
		case d.Task != "" && d.From != "":
			return "Task " + oneLine(d.Task, 40) + " of agent " + agent + " (from " + oneLine(d.From, 40) + ") ended in error"
		}
	}
	return note.Title
}

func bound(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// deliverLoop delivers what is due, each channel's in order on a
// goroutine of its own (at most MaxSenders at once), so that a slow or
// dead receiver delays no other channel; then it waits for the next due
// notification, a wake, or a channel's sender to finish.
func (n *Notifier) deliverLoop(ctx context.Context) {
	var senders sync.WaitGroup
	defer senders.Wait()
	busy := map[string]bool{} // channels with a sender at work
	var mu sync.Mutex
	for {
		// The channels at work before the read: their notes read now may
		// be in flight (still pending), so they wait for the next round,
		// which the sender's end wakes. Only this loop starts senders.
		mu.Lock()
		atWork := maps.Clone(busy)
		mu.Unlock()
		due, err := n.Store.DueNotifications(ctx, time.Now(), 256)
		if err != nil && ctx.Err() == nil {
			n.Logger.Warn("notify: outbox", "err", err)
		}
		var chans map[string]eventlog.Channel
		if len(due) > 0 {
			chans = n.channels(ctx)
		}
		byChannel := map[string][]eventlog.Notification{}
		var order []string
		for _, note := range due {
			if _, ok := byChannel[note.Channel]; !ok {
				order = append(order, note.Channel)
			}
			byChannel[note.Channel] = append(byChannel[note.Channel], note)
		}
		mu.Lock()
		for _, id := range order {
			c, ok := chans[id]
			if !ok || atWork[id] || len(busy) >= MaxSenders {
				continue // removed meanwhile (its outbox with it), at work, or later
			}
			busy[id] = true
			notes := byChannel[id]
			senders.Go(func() {
				n.deliverTo(ctx, c, notes)
				mu.Lock()
				delete(busy, id)
				mu.Unlock()
				n.Wake()
			})
		}
		mu.Unlock()
		wait := time.Minute
		if next, ok := n.nextDue(ctx); ok {
			wait = min(wait, max(time.Until(next), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// MaxSenders bounds the channels delivered to at once.
const MaxSenders = 8

// channels are the channels by id.
func (n *Notifier) channels(ctx context.Context) map[string]eventlog.Channel {
	cs, err := n.Store.Channels(ctx)
	if err != nil {
		return nil
	}
	byID := make(map[string]eventlog.Channel, len(cs))
	for _, c := range cs {
		byID[c.ID] = c
	}
	return byID
}

// nextDue is when the first pending notification not yet due is (those
// due now wait for their channel's sender, whose end wakes the loop).
func (n *Notifier) nextDue(ctx context.Context) (time.Time, bool) {
	now := time.Now()
	due, err := n.Store.DueNotifications(ctx, now.Add(time.Hour), 1024)
	if err != nil {
		return time.Time{}, false
	}
	for _, d := range due {
		if d.NextAt.After(now) {
			return d.NextAt, true
		}
	}
	return time.Time{}, false
}

// deliverTo delivers notes to channel c, in order, until one fails: that
// one waits for its backoff, and the rest are tried at the next round.
func (n *Notifier) deliverTo(ctx context.Context, c eventlog.Channel, notes []eventlog.Notification) {
	for _, note := range notes {
		err := n.Send(ctx, c, note)
		// What was sent is recorded even as the daemon stops: it would be
		// sent again otherwise (a receiver drops a repeat by its id, but
		// needs not see one).
		rec := context.WithoutCancel(ctx)
		if err == nil {
			n.Store.NotificationSent(rec, note.ID, time.Now())
			continue
		}
		if ctx.Err() != nil {
			return // stopped mid-send: tried again at the next start
		}
		final := note.Attempts+1 >= n.MaxAttempts
		wait := min(n.Backoff<<min(note.Attempts, 20), time.Hour)
		why := bound(n.Redact(err.Error()), 300)
		n.Logger.Warn("notify: delivery failed", "channel", c.ID, "kind", c.Kind, "attempt", note.Attempts+1, "final", final, "err", why)
		n.Store.NotificationFailed(rec, note.ID, why, time.Now().Add(wait), final)
		return
	}
}

// Send delivers note on channel c, once.
func (n *Notifier) Send(ctx context.Context, c eventlog.Channel, note eventlog.Notification) error {
	n.init()
	var sec Secrets
	if b, err := os.ReadFile(SecretsPath(n.Home, c.ID)); err == nil {
		json.Unmarshal(b, &sec)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	m := Message{ID: note.ID, Kind: note.Kind, Agent: note.Agent, Title: note.Title, Body: note.Body, Ref: note.Ref, Time: note.Created}
	if c.Link != "" {
		m.URL = strings.TrimRight(c.Link, "/") + "/" + pageOf(note)
	}
	switch c.Kind {
	case Ntfy:
		return n.ntfy(ctx, c, sec, m)
	case Webhook:
		return n.webhook(ctx, c, sec, m)
	case WebPush:
		return n.webPush(ctx, c, sec, m)
	}
	return fmt.Errorf("channel %s: unknown kind %q", c.ID, c.Kind)
}

// pageOf is the panel's page (its fragment) for note.
func pageOf(note eventlog.Notification) string {
	switch note.Kind {
	case Approval, Question:
		return "#/approvals/" + note.Ref
	case Budget:
		return "#/usage"
	}
	return "#/chat/" + note.Agent
}

// do sends req and reads a 2xx answer as success.
func (n *Notifier) do(req *http.Request) error {
	resp, err := n.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s: %s", req.URL.Host, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// ntfy publishes m to the channel's topic URL (ntfy's HTTP publishing:
// the body is the message, headers its title, priority, tags, click and
// actions; X-Sequence-ID, the stable id, makes a repeat update the same
// notification on servers that know it).
func (n *Notifier) ntfy(ctx context.Context, c eventlog.Channel, sec Secrets, m Message) error {
	body := m.Body
	if body == "" {
		body = m.Title
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.URL, strings.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("Title", m.Title)
	h.Set("Tags", "taosagent,"+m.Kind)
	h.Set("X-Sequence-ID", m.ID)
	if m.Kind != Error {
		h.Set("Priority", "high")
	}
	if m.URL != "" {
		h.Set("Click", m.URL)
		if m.Kind == Approval {
			// Each opens the panel's approval: the person's session
			// decides there, never the notification.
			h.Set("Actions", "view, Approve, "+m.URL+"; view, Reject, "+m.URL)
		}
	}
	if sec.Token != "" {
		h.Set("Authorization", "Bearer "+sec.Token)
	}
	return n.do(req)
}

// SignatureHeader carries an outgoing webhook's signature, as incoming
// ones do: t=UNIX,v1=HEX, HEX the HMAC-SHA256 of "UNIX." and the body.
const SignatureHeader = "X-Taosagent-Signature"

// Sign is the signature header's value for body at t with secret.
func Sign(secret []byte, body []byte, t time.Time) string {
	mac := hmac.New(sha256.New, secret)
	fmt.Fprintf(mac, "%d.", t.Unix())
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", t.Unix(), hex.EncodeToString(mac.Sum(nil)))
}

// webhook posts m as JSON, signed, with its stable id as the
// Idempotency-Key.
func (n *Notifier) webhook(ctx context.Context, c eventlog.Channel, sec Secrets, m Message) error {
	body, _ := json.Marshal(m)
	req, err := http.NewRequestWithContext(ctx, "POST", c.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", m.ID)
	req.Header.Set(SignatureHeader, Sign([]byte(sec.Secret), body, time.Now()))
	return n.do(req)
}

// webPush sends m as the payload of a Web Push (RFC 8030, encrypted per
// RFC 8291 for the subscription's keys, VAPID per RFC 8292), its Topic
// the stable id, so that a push service replaces a repeat still queued.
func (n *Notifier) webPush(ctx context.Context, c eventlog.Channel, sec Secrets, m Message) error {
	payload, _ := json.Marshal(m)
	sub := "taosagent@localhost"
	if strings.HasPrefix(c.Link, "https:") {
		sub = c.Link
	}
	resp, err := webpush.SendNotificationWithContext(ctx, payload, &webpush.Subscription{Endpoint: c.URL, Keys: webpush.Keys{P256dh: sec.P256dh, Auth: sec.Auth}},
		&webpush.Options{HTTPClient: n.Client, Subscriber: sub, VAPIDPublicKey: n.VAPID.Public, VAPIDPrivateKey: n.VAPID.Private,
			TTL: 24 * 3600, Topic: topicOf(m.ID), Urgency: webpush.UrgencyHigh})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("the push service answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// topicOf is a Topic header for id: at most 32 characters of the URL-safe
// base64 alphabet (RFC 8030 §5.4).
func topicOf(id string) string {
	var b strings.Builder
	for _, r := range id {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) > 32 {
		s = s[len(s)-32:]
	}
	return s
}
