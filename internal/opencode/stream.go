package opencode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Event is one opencode event as it came off the stream. Properties is kept
// raw: opencode's event union changes between releases, and unknown types
// must pass through untouched.
type Event struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Properties json.RawMessage `json:"properties"`
	// Directory is the instance directory of a /global/event envelope;
	// empty for /event frames and server-level events.
	Directory string `json:"-"`
	// Raw is the frame's data exactly as received.
	Raw json.RawMessage `json:"-"`
}

// ErrNotEvent: a frame's data is not an opencode event.
var ErrNotEvent = errors.New("opencode: frame is not an event")

// DecodeEvent decodes the data of one frame of /event or /global/event.
// /global/event wraps events as {"directory","project","payload":{…}};
// its "sync" payloads (opencode's v2 durable model) come back with
// Type "sync" for the caller to skip.
func DecodeEvent(data []byte) (Event, error) {
	// One pass over the frame: it is decoded on the path of every event.
	type inner struct {
		ID    string          `json:"id"`
		Type  string          `json:"type"`
		Props json.RawMessage `json:"properties"`
	}
	var env struct {
		Directory string `json:"directory"`
		Payload   *inner `json:"payload"`
		inner
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrNotEvent, err)
	}
	ev := env.inner
	if env.Payload != nil {
		ev = *env.Payload
		if ev.Type == "" {
			return Event{}, fmt.Errorf("%w: payload has no type", ErrNotEvent)
		}
	} else if ev.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrNotEvent)
	}
	return Event{ID: ev.ID, Type: ev.Type, Properties: ev.Props, Directory: env.Directory, Raw: data}, nil
}

// Stream reads an instance's /global/event and keeps reading: it reconnects
// with backoff when the connection drops or goes silent. opencode's stream
// cannot be resumed, so every connect is reported to OnConnect for the
// caller to reconcile what it may have missed.
type Stream struct {
	Client *Client
	// Silence is how long the stream may stay quiet before it is taken for
	// dead (opencode sends a heartbeat every 10 s). Default 30 s.
	Silence time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (default 100 ms, 5 s).
	MinBackoff, MaxBackoff time.Duration
	MaxFrame               int // default DefaultMaxFrame
	Logger                 *slog.Logger
	// OnConnect is called after each successful connect, before any event
	// of that connection is delivered; n counts connects from 1.
	OnConnect func(n int)
}

// Run delivers every event to handle, in order, until ctx is done; it then
// returns ctx's error. handle runs on Run's goroutine: a slow handle slows
// the reader, never reorders it.
func (s *Stream) Run(ctx context.Context, handle func(Event)) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 100 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 5 * time.Second
	}
	backoff := minB
	connects := 0
	for {
		healthy, err := s.once(ctx, &connects, handle)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			backoff = minB
		}
		log.Warn("event stream lost; reconnecting", "err", err, "backoff", backoff)
		delay := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		backoff = min(backoff*2, maxB)
	}
}

// errSilent: no frame arrived within Silence.
var errSilent = errors.New("event stream silent")

// once runs one connection. healthy reports that it delivered events.
func (s *Stream) once(ctx context.Context, connects *int, handle func(Event)) (healthy bool, err error) {
	silence := s.Silence
	if silence <= 0 {
		silence = 30 * time.Second
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := s.Client.newRequest(ctx, "GET", "/global/event", nil, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	// The connect itself is bounded by the silence window too: a request
	// that reaches opencode before it is ready is never answered.
	watchdog := time.AfterFunc(silence, func() { cancel(errSilent) })
	defer watchdog.Stop()
	resp, err := s.Client.httpClient().Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil && errors.Is(c, errSilent) {
			return false, errSilent
		}
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, decodeAPIError("GET /global/event", resp.StatusCode, nil)
	}
	if ct := resp.Header.Get("Content-Type"); len(ct) < 17 || ct[:17] != "text/event-stream" {
		return false, &APIError{Op: "GET /global/event", Status: resp.StatusCode, Message: "answered with " + ct, kind: ErrNotAPI}
	}
	*connects++
	if s.OnConnect != nil {
		s.OnConnect(*connects)
	}
	rd := NewSSEReader(resp.Body, s.MaxFrame)
	for {
		watchdog.Reset(silence)
		f, err := rd.Next()
		if err != nil {
			if c := context.Cause(ctx); errors.Is(c, errSilent) {
				err = errSilent
			}
			return healthy, err
		}
		ev, err := DecodeEvent(f.Data)
		if err != nil || ev.Type == "sync" {
			continue
		}
		healthy = true
		handle(ev)
	}
}

// Subscription is a Stream run in the background; Close stops it and waits.
type Subscription struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start runs s in a new goroutine until Close or ctx is done.
func (s *Stream) Start(ctx context.Context, handle func(Event)) *Subscription {
	ctx, cancel := context.WithCancel(ctx)
	sub := &Subscription{cancel: cancel}
	sub.wg.Add(1)
	go func() {
		defer sub.wg.Done()
		s.Run(ctx, handle)
	}()
	return sub
}

// Close stops the subscription and waits for its goroutine to end.
func (sub *Subscription) Close() {
	sub.cancel()
	sub.wg.Wait()
}
