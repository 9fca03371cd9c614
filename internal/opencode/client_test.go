package opencode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// answer serves one canned response per path.
func answer(t *testing.T, routes map[string]func(w http.ResponseWriter, r *http.Request)) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "opencode" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="Secure Area"`)
			w.WriteHeader(401)
			return
		}
		h, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			// opencode answers unknown routes with its web UI.
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			fmt.Fprint(w, "<!doctype html><html></html>")
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Client{BaseURL: srv.URL, Password: "pw", Timeout: 2 * time.Second}
}

func jsonAnswer(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func TestClientErrorShapes(t *testing.T) {
	c := answer(t, map[string]func(http.ResponseWriter, *http.Request){
		"GET /session/ses_nope":          jsonAnswer(404, `{"name":"NotFoundError","data":{"message":"Session not found: ses_nope"}}`),
		"POST /permission/per_x/reply":   jsonAnswer(404, `{"_tag":"PermissionNotFoundError","requestID":"per_x","message":"Permission request not found"}`),
		"POST /permission/per_bad/reply": jsonAnswer(400, `{"name":"BadRequest","data":{"message":"Expected \"once\" | \"always\" | \"reject\", got \"maybe\"","kind":"Payload"}}`),
		"GET /session/status":            jsonAnswer(500, `{"name":"UnknownError","data":{"message":"Unexpected server error.\n    at foo (x.js:1:1)","ref":"err_1"}}`),
	})
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func() error
		kind     error
		wantName string
		wantMsg  string
	}{
		{"name/data 404", func() error { _, err := c.GetSession(ctx, "ses_nope"); return err }, ErrNotFound, "NotFoundError", "Session not found: ses_nope"},
		{"_tag 404", func() error { return c.ReplyPermission(ctx, "per_x", "once", "") }, ErrNotFound, "PermissionNotFoundError", "Permission request not found"},
		{"BadRequest 400", func() error { return c.ReplyPermission(ctx, "per_bad", "once", "") }, ErrBadRequest, "BadRequest", `Expected "once" | "always" | "reject", got "maybe"`},
		{"UnknownError 500 without stack", func() error { _, err := c.SessionStatus(ctx); return err }, ErrServer, "UnknownError", "Unexpected server error."},
		{"HTML answer to an unknown route", func() error { _, err := c.Questions(ctx); return err }, ErrNotAPI, "", "answered with text/html;charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err %T is not *APIError", err)
			}
			if ae.Name != tt.wantName || ae.Message != tt.wantMsg {
				t.Errorf("got name %q message %q, want %q %q", ae.Name, ae.Message, tt.wantName, tt.wantMsg)
			}
		})
	}
}

func TestClientUnauthorized(t *testing.T) {
	c := answer(t, nil)
	c.Password = "wrong"
	if _, err := c.Health(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
}

func TestClientRejectsBadReplyLocally(t *testing.T) {
	var hits atomic.Int32
	c := answer(t, map[string]func(http.ResponseWriter, *http.Request){
		"POST /permission/per_1/reply": func(w http.ResponseWriter, r *http.Request) { hits.Add(1) },
	})
	if err := c.ReplyPermission(context.Background(), "per_1", "maybe", ""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v, want ErrBadRequest", err)
	}
	if err := c.ReplyPermission(context.Background(), "", "once", ""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty id: err = %v, want ErrBadRequest", err)
	}
	if hits.Load() != 0 {
		t.Errorf("bad replies reached opencode %d times", hits.Load())
	}
}

func TestClientPromptAndDirectory(t *testing.T) {
	var gotBody, gotDir string
	c := answer(t, map[string]func(http.ResponseWriter, *http.Request){
		"POST /session/ses_1/prompt_async": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			gotBody = string(b)
			gotDir = r.URL.Query().Get("directory")
			w.WriteHeader(204)
		},
	})
	c.Directory = "/work/a b"
	err := c.PromptAsync(context.Background(), "ses_1", Prompt{Text: "hi", ProviderID: "p", ModelID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if gotDir != "/work/a b" {
		t.Errorf("directory = %q", gotDir)
	}
	if !strings.Contains(gotBody, `"modelID":"m"`) || !strings.Contains(gotBody, `"text":"hi"`) {
		t.Errorf("body = %s", gotBody)
	}
}

func TestClientTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	c := answer(t, map[string]func(http.ResponseWriter, *http.Request){
		"GET /global/health": func(w http.ResponseWriter, r *http.Request) {
			select { // like a request sent before opencode is ready
			case <-block:
			case <-r.Context().Done():
			}
		},
	})
	c.Timeout = 100 * time.Millisecond
	if _, err := c.Health(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}

func TestCheckVersion(t *testing.T) {
	c := answer(t, map[string]func(http.ResponseWriter, *http.Request){
		"GET /global/health": jsonAnswer(200, `{"healthy":true,"version":"1.0.0"}`),
	})
	if err := c.CheckVersion(context.Background()); !errors.Is(err, ErrWrongVersion) {
		t.Fatalf("err = %v, want ErrWrongVersion", err)
	}
}

func TestStreamReconnectsAfterSilence(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := conns.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: {\"payload\":{\"id\":\"evt_%d\",\"type\":\"server.connected\",\"properties\":{}}}\n\n", n)
		fmt.Fprintf(w, ": not an event\n\ndata: {\"directory\":\"/w\",\"payload\":{\"type\":\"sync\",\"syncEvent\":{}}}\n\n")
		fmt.Fprintf(w, "data: {\"directory\":\"/w\",\"payload\":{\"id\":\"evt_x%d\",\"type\":\"brand.new.type\",\"properties\":{}}}\n\n", n)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then silence, without closing
	}))
	defer srv.Close()
	var connects atomic.Int32
	got := make(chan Event, 16)
	s := &Stream{
		Client:     &Client{BaseURL: srv.URL, Password: "pw"},
		Silence:    150 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		OnConnect: func(n int) { connects.Store(int32(n)) },
	}
	sub := s.Start(context.Background(), func(ev Event) { got <- ev })
	var types []string
	for len(types) < 4 {
		select {
		case ev := <-got:
			types = append(types, ev.Type)
		case <-time.After(5 * time.Second):
			t.Fatalf("stream did not reconnect; got %v", types)
		}
	}
	sub.Close()
	want := "server.connected brand.new.type server.connected brand.new.type"
	if strings.Join(types, " ") != want {
		t.Errorf("events %v, want %s (sync skipped, unknown type kept)", types, want)
	}
	if connects.Load() < 2 {
		t.Errorf("OnConnect saw %d connects, want ≥ 2", connects.Load())
	}
}

// A key that the 500-byte cut would split is still redacted whole: no
// prefix of it survives.
func TestRedactedBeforeTheCut(t *testing.T) {
	key := "sk-live-0123456789abcdefghij"
	for _, pad := range []int{480, 490, 495, 499, 500} {
		msg := strings.Repeat("x", pad) + key + " and more"
		got := Redacted(msg, []string{key, "other-key"})
		if strings.Contains(got, key[:6]) {
			t.Errorf("pad %d: a prefix of the key survived: …%s", pad, got[max(0, len(got)-40):])
		}
		if len(got) > 504 {
			t.Errorf("pad %d: %d bytes, want the 500-byte cut", pad, len(got))
		}
	}
	if got := Redacted("bad key sk-live-0123456789abcdefghij\n    at foo()", []string{key}); got != "bad key [redacted]" {
		t.Errorf("got %q", got)
	}
}
