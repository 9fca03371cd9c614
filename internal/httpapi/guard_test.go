package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// guarded serves the API as the daemon does, on a listener of its own.
func guarded(t *testing.T, s *Server) (*eventlog.Log, string) {
	t.Helper()
	l, err := eventlog.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Log, s.Token = l, "tok"
	s.Control = &control.Service{Log: l, Secrets: []string{s.Token}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPServer(s.Handler(), slog.New(slog.DiscardHandler))
	srv.IdleTimeout = 200 * time.Millisecond
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return l, ln.Addr().String()
}

func status(t *testing.T, addr, host, auth string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/approvals", nil)
	req.Host = host
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHostHeaderAndBearer(t *testing.T) {
	_, addr := guarded(t, &Server{Hosts: []string{"taos.home"}})
	port := addr[strings.LastIndex(addr, ":"):]
	for _, c := range []struct {
		host, auth string
		want       int
	}{
		{addr, "Bearer tok", 200},
		{"localhost" + port, "Bearer tok", 200},
		{"LOCALHOST" + port, "Bearer tok", 200},
		{"[::1]" + port, "Bearer tok", 200},
		{"taos.home" + port, "Bearer tok", 200},
		{addr, "bearer tok", 200}, // the scheme is case-insensitive
		{addr, "BEARER tok", 200},
		{addr, "Basic tok", 401},
		{addr, "Bearer wrong", 401},
		{addr, "", 401},
		// DNS rebinding: a page's own name, resolved to 127.0.0.1.
		{"attacker.example" + port, "Bearer tok", 421},
		{"attacker.example", "", 421},
		{"localhost.attacker.example" + port, "Bearer tok", 421},
	} {
		if got := status(t, addr, c.host, c.auth); got != c.want {
			t.Errorf("Host %q, Authorization %q: %d, want %d", c.host, c.auth, got, c.want)
		}
	}
}

// An idle keep-alive connection is closed by the server.
func TestIdleConnectionIsClosed(t *testing.T) {
	_, addr := guarded(t, &Server{})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF from the server closing it", err)
	}
}

// A stream client that stops reading is dropped, and its subscription
// freed, once a write has waited WriteWait.
func TestStalledStreamIsDropped(t *testing.T) {
	l, addr := guarded(t, &Server{WriteWait: 300 * time.Millisecond, KeepAlive: 50 * time.Millisecond})
	if _, err := l.CreateAgent(context.Background(), agent.Agent{Name: "a", Model: "p/m"}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /v1/agents/a/events/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer tok\r\n\r\n", addr)
	// Never read; fill the pipe until the server gives up.
	big := strings.Repeat("x", 8<<10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for n, changed := l.Subscribers(); n == 0; n, changed = l.Subscribers() {
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("the stream never subscribed")
		}
	}
	for n, _ := l.Subscribers(); n > 0; n, _ = l.Subscribers() {
		if ctx.Err() != nil {
			t.Fatal("a client that stopped reading still holds its subscription")
		}
		e := event.New("s", event.Delta, time.Now(), event.DeltaData{Text: big})
		e.Agent = "a"
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRepeatedKeys(t *testing.T) {
	for _, c := range []struct {
		body string
		bad  bool
	}{
		{`{"api_key":"A","API_KEY":"B"}`, true},
		{`{"a":1,"a":2}`, true},
		{`{"a":{"b":1,"B":2}}`, true},
		{`{"a":[{"b":1},{"b":2}],"c":{"b":3}}`, false},
		{`{"a":{"a":{"a":1}}}`, false},
		{`{"a":"b","b":"a"}`, false},
		{`{"a":[1,{"x":1,"y":[{"x":2}]}],"x":0}`, false},
		{`{"a":[1,{"x":1,"X":[]}]}`, true},
		{`[{"k":1},{"k":1}]`, false},
	} {
		if err := repeatedKey([]byte(c.body)); (err != nil) != c.bad {
			t.Errorf("%s: err = %v, want refused %v", c.body, err, c.bad)
		}
	}
}

func TestStrictInput(t *testing.T) {
	l, addr := guarded(t, &Server{})
	if _, err := l.CreateAgent(context.Background(), agent.Agent{Name: "a", Model: "p/m"}); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, string) { return call(t, addr, method, path, body) }
	if code, body := do("POST", "/v1/providers", `{"id":"p","base_url":"https://x.example/v1","api_key":"A","API_KEY":"B","models":["m"]}`); code != 400 || !strings.Contains(body, "twice") {
		t.Errorf("case-variant keys: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/agents/a/events?kinds="+strings.TrimSuffix(strings.Repeat("delta,", 3000), ","), ""); code != 400 {
		t.Errorf("3000 kinds: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/agents/a/events?kinds=delta,delta,final", ""); code != 200 {
		t.Errorf("repeated kinds: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/approvals/x", `{"decision":"`+strings.Repeat("y", 5000)+`"}`); code != 422 || !strings.Contains(body, "decision") {
		t.Errorf("bad decision: %d %s", code, body)
	}
	if es, err := l.AuditEntries(context.Background(), 0, 100); err != nil || len(es) != 0 {
		t.Errorf("audit entries after refused input: %+v (%v), want none", es, err)
	}
}

// Every kind of event can be asked for by name: the egress decisions too.
func TestEveryKindCanBeFiltered(t *testing.T) {
	l, addr := guarded(t, &Server{})
	ctx := context.Background()
	l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}})
	if _, err := l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m"}); err != nil {
		t.Fatal(err)
	}
	e := event.New("", event.Egress, time.Now(), event.EgressData{Host: "example.com", Port: 443, Allowed: false})
	e.Agent = "a"
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	for _, k := range event.Kinds {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/agents/a/events?kinds="+string(k), nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("kinds=%s: %d %s", k, resp.StatusCode, body)
		}
		if k == event.Egress && !strings.Contains(string(body), "example.com") {
			t.Errorf("kinds=egress: %s", body)
		}
	}
}

// call makes a request with the token "tok", and a JSON body unless body
// is "", and returns the answer's status and body.
func call(t *testing.T, addr, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
