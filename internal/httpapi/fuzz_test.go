package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/event"
)

// FuzzDecode: any body gets a clear answer from the request decoder, 200
// or 4xx, never a panic or a 5xx; a body with a key twice is never taken.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"a","model":"p/m"}`, `{"name":"a","NAME":"b"}`, `{"tools":{"x":true,"X":false}}`,
		`{"permission":{"bash":{"*":"ask"}}}`, `[]`, `{"a":`, `{"name":"a"} {}`, "\x00", `{"limits":{"memory_mb":1e309}}`} {
		f.Add(s)
	}
	s := &Server{MaxBody: 1 << 16}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/agents", strings.NewReader(body))
		var b agentBody
		ok := s.decode(rec, req, &b)
		if ok != (rec.Code == http.StatusOK) || (!ok && (rec.Code < 400 || rec.Code >= 500)) {
			t.Fatalf("decode ok=%v, status %d: %s", ok, rec.Code, rec.Body)
		}
		if ok && repeatedKey([]byte(body)) != nil {
			t.Fatalf("a body with a repeated key was taken: %s", body)
		}
	})
}

// FuzzCursor: any query of the event routes is refused cleanly or read
// into a cursor within bounds.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"after=5&kinds=delta,final&limit=10", "kinds=" + strings.Repeat("delta,", 40), "after=-1", "limit=0",
		"after=99999999999999999999", "kinds=,", "kinds=delta&kinds=final"} {
		f.Add(s, "")
	}
	f.Add("", "42")
	f.Fuzz(func(t *testing.T, query, lastID string) {
		req := httptest.NewRequest("GET", "/v1/agents/a/events/stream", nil)
		req.URL.RawQuery = query
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		after, _, kinds, limit, err := cursor(req, true)
		if err != nil {
			return
		}
		if after < 0 || limit < 1 || limit > 10000 || len(kinds) > len(event.Kinds) {
			t.Fatalf("after %d, limit %d, %d kinds", after, limit, len(kinds))
		}
		for i, k := range kinds {
			if !k.Known() || slices.Contains(kinds[:i], k) {
				t.Fatalf("kinds %v", kinds)
			}
		}
	})
}
