package panel

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestSignInIsRateLimited: after MaxFailures wrong tokens within a minute
// from one address, that address gets 429 with Retry-After, even with the
// right token; another address still signs in.
func TestSignInIsRateLimited(t *testing.T) {
	s := &Sessions{Token: "the-operator-token"}
	h := s.Handler()
	login := func(addr, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "http://panel.test/panel/login", strings.NewReader(`{"token":"`+token+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Origin", "http://panel.test")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range MaxFailures {
		if w := login("192.0.2.1:1000", "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	w := login("192.0.2.1:1001", "the-operator-token")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d %s, want 429", MaxFailures, w.Code, w.Body)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	if w := login("192.0.2.2:1000", "the-operator-token"); w.Code != http.StatusOK {
		t.Errorf("another address: %d %s", w.Code, w.Body)
	}
}

// The vendored libraries are the files their README names, byte for byte
// (its sums), served to a browser with a script's type.
func TestTheVendoredLibrariesAreThePinnedOnes(t *testing.T) {
	readme, err := static.ReadFile("static/vendor/README.md")
	if err != nil {
		t.Fatal(err)
	}
	h := (&Sessions{Token: "x"}).Handler()
	for _, name := range []string{"markdown-it.min.js", "purify.min.js"} {
		b, err := static.ReadFile("static/vendor/" + name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if !strings.Contains(string(readme), "`"+name+"`") || !strings.Contains(string(readme), hex.EncodeToString(sum[:])) {
			t.Errorf("%s: sha256 %x is not the one vendor/README.md names", name, sum)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://panel.test/panel/vendor/"+name, nil))
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), "javascript") {
			t.Errorf("GET /panel/vendor/%s: %d %q", name, w.Code, w.Header().Get("Content-Type"))
		}
	}
}
