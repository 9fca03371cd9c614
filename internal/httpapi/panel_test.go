package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/panel"
)

// The panel's session: signed in with the token once, a cookie (HttpOnly,
// SameSite=Strict) reads the API; a change needs the CSRF token too, and
// its own origin; sign-out ends it. The bearer token works as before.
func TestPanelSessionsAndCSRF(t *testing.T) {
	_, addr := guarded(t, &Server{Sessions: &panel.Sessions{Token: "tok"}})
	base := "http://" + addr
	do := func(method, path, body string, hdr map[string]string, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	jsonHdr := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		body string
		hdr  map[string]string
		want int
	}{
		{`{"token":"nope"}`, jsonHdr, 401},
		{`{"token":"tok"}`, map[string]string{"Content-Type": "text/plain"}, 403},                                // a form cannot send JSON
		{`{"token":"tok"}`, map[string]string{"Content-Type": "application/json", "Origin": "http://evil"}, 403}, // nor from another origin
		{`not json`, jsonHdr, 400},
	} {
		if r := do("POST", "/panel/login", c.body, c.hdr, nil); r.StatusCode != c.want || len(r.Cookies()) != 0 {
			t.Errorf("login %s %v: %d %v", c.body, c.hdr, r.StatusCode, r.Cookies())
		}
	}
	req, _ := http.NewRequest("POST", base+"/panel/login", strings.NewReader(`{"token":"tok"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ CSRF string }
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 || got.CSRF == "" {
		t.Fatalf("login: %d %v %+v", resp.StatusCode, resp.Cookies(), got)
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Name != panel.Cookie || strings.Contains(cookie.Value, "tok") {
		t.Fatalf("the cookie: %+v", cookie)
	}
	if r := do("GET", "/v1/approvals", "", nil, cookie); r.StatusCode != 200 {
		t.Fatalf("a read with the cookie: %d", r.StatusCode)
	}
	change := "/v1/approvals/per_none"
	body := `{"decision":"once"}`
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no CSRF token", jsonHdr, 403},
		{"a wrong CSRF token", map[string]string{"Content-Type": "application/json", panel.CSRFHeader: strings.Repeat("0", 64)}, 403},
		{"another origin", map[string]string{"Content-Type": "application/json", panel.CSRFHeader: got.CSRF, "Origin": "http://evil.example"}, 403},
		{"the CSRF token, this origin", map[string]string{"Content-Type": "application/json", panel.CSRFHeader: got.CSRF, "Origin": base}, 404},
		{"a wrong bearer beside the cookie", map[string]string{"Authorization": "Bearer nope", panel.CSRFHeader: got.CSRF}, 401},
	} {
		if r := do("POST", change, body, c.hdr, cookie); r.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, r.StatusCode, c.want)
		}
	}
	if r := do("GET", "/v1/approvals", "", map[string]string{"Authorization": "Bearer tok"}, nil); r.StatusCode != 200 {
		t.Fatalf("the bearer token: %d", r.StatusCode)
	}
	// The page carries its policy.
	if r := do("GET", "/", "", nil, nil); r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") != panel.Policy || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /: %d %v", r.StatusCode, r.Header)
	}
	// Sign-out needs the CSRF token, then the cookie is dead.
	if r := do("POST", "/panel/logout", "", nil, cookie); r.StatusCode != 403 {
		t.Fatalf("a forged sign-out: %d", r.StatusCode)
	}
	if r := do("POST", "/panel/logout", "", map[string]string{panel.CSRFHeader: got.CSRF}, cookie); r.StatusCode != 200 {
		t.Fatalf("sign-out: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/approvals", "", nil, cookie); r.StatusCode != 401 {
		t.Fatalf("a read after sign-out: %d", r.StatusCode)
	}
	if r := do("GET", "/panel/session", "", nil, cookie); r.StatusCode != 401 {
		t.Fatalf("the session after sign-out: %d", r.StatusCode)
	}
}
