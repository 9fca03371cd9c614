package control

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/notify"
	"github.com/taosagent/taosagent/internal/randid"
)

// channelView is c as the API shows it, with how its newest deliveries
// fared.
func channelView(c eventlog.Channel, ns []eventlog.Notification) api.Channel {
	v := api.Channel{ID: c.ID, Kind: c.Kind, URL: c.URL, Link: c.Link, Agents: c.Agents, Kinds: c.Kinds, Details: c.Details,
		CreatedBy: c.CreatedBy, Created: c.Created}
	if c.Kind == notify.WebPush {
		// A push endpoint is a capability: show whose service it is.
		if u, err := url.Parse(c.URL); err == nil {
			v.URL = u.Scheme + "://" + u.Host + "/…"
		}
	}
	for _, n := range ns {
		switch n.State {
		case "pending":
			v.Pending++
		case "failed":
			v.Failed++
		case "sent":
			if v.LastSent == nil {
				t := n.Sent
				v.LastSent = &t
			}
		}
		if v.LastError == "" && n.LastError != "" {
			v.LastError = n.LastError
		}
	}
	return v
}

// checkURL refuses a URL the daemon should not post to: not http(s), or
// with credentials in it.
func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return Invalidf("%s: give it", field)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return Invalidf("%s: %q is not an http(s) URL", field, raw)
	case u.User != nil:
		return Invalidf("%s: no credentials in the URL (ntfy: give token)", field)
	}
	return nil
}

// CreateChannel adds a person's channel for notifications. Only a person
// does: an agent never chooses where anything leaves the box. A webhook's
// signing key is made here and shown once.
func (s *Service) CreateChannel(ctx context.Context, a Actor, r api.ChannelRequest) (api.Channel, error) {
	c := Call{Actor: a, Tool: "notify.create", Target: r.Kind, Args: map[string]string{"kind": r.Kind, "url": Bound(r.URL, 256),
		"agents": strings.Join(r.Agents, ","), "kinds": strings.Join(r.Kinds, ",")}}
	ch := eventlog.Channel{ID: "ch_" + randid.Hex(10), Kind: r.Kind, URL: r.URL, Link: strings.TrimRight(r.Link, "/"), Agents: r.Agents, Kinds: r.Kinds,
		Details: r.Details, CreatedBy: a.String(), Created: time.Now().UTC().Truncate(time.Millisecond)}
	var sec notify.Secrets
	err := func() error {
		if !a.Person() {
			return fmt.Errorf("%w: a person chooses where notifications go", ErrForbidden)
		}
		switch r.Kind {
		case notify.Ntfy:
			sec.Token = r.Token
		case notify.Webhook:
			if r.Token != "" {
				return Invalidf("token: a webhook's key is made by taosagent (kept in its home, shown once)")
			}
			sec.Secret = randid.Hex(32)
		case notify.WebPush:
			p := r.Subscription
			if p == nil || r.URL != "" || r.Token != "" {
				return Invalidf("subscription: a Web Push channel is the browser's subscription (endpoint and keys), nothing else")
			}
			if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p.Keys.P256dh, "=")); err != nil || len(k) != 65 {
				return Invalidf("subscription.keys.p256dh: not a P-256 public key")
			}
			if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p.Keys.Auth, "=")); err != nil || len(k) != 16 {
				return Invalidf("subscription.keys.auth: not a 16-byte secret")
			}
			ch.URL, sec.P256dh, sec.Auth = p.Endpoint, p.Keys.P256dh, p.Keys.Auth
		default:
			return Invalidf("kind: %q: want ntfy, webhook or webpush", r.Kind)
		}
		if r.Subscription != nil && r.Kind != notify.WebPush {
			return Invalidf("subscription: only for webpush")
		}
		if err := checkURL("url", ch.URL); err != nil {
			return err
		}
		if ch.Link != "" {
			if err := checkURL("link", ch.Link); err != nil {
				return err
			}
		}
		for _, k := range r.Kinds {
			if !slices.Contains(notify.Kinds, k) {
				return Invalidf("kinds: %q: want any of %s", k, strings.Join(notify.Kinds, ", "))
			}
		}
		for _, n := range r.Agents {
			if _, err := s.Log.Agent(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return api.Channel{}, s.Refuse(ctx, c, err)
	}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := notify.SaveSecrets(s.Home, ch.ID, sec); err != nil {
			return "", err
		}
		return ch.ID, s.Log.CreateChannel(ctx, ch)
	})
	if err == nil && s.Notifier != nil {
		s.Notifier.Wake()
	}
	if err != nil {
		os.Remove(notify.SecretsPath(s.Home, ch.ID))
		return api.Channel{}, err
	}
	v := channelView(ch, nil)
	v.Secret = sec.Secret
	return v, nil
}

// Channels lists the channels, each with how its newest deliveries fared.
func (s *Service) Channels(ctx context.Context) ([]api.Channel, error) {
	cs, err := s.Log.Channels(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Channel, 0, len(cs))
	for _, c := range cs {
		ns, err := s.Log.Notifications(ctx, c.ID, 100)
		if err != nil {
			return nil, err
		}
		out = append(out, channelView(c, ns))
	}
	return out, nil
}

// DeleteChannel removes channel id, its outbox and its secrets.
func (s *Service) DeleteChannel(ctx context.Context, a Actor, id string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "notify.delete", Target: id, Args: map[string]string{"channel": id}},
		func(ctx context.Context) (string, error) {
			if err := s.Log.DeleteChannel(ctx, id); err != nil {
				return "", err
			}
			os.Remove(notify.SecretsPath(s.Home, id))
			return "", nil
		})
}
