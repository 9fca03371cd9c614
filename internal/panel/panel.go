// Package panel is taosagent's web panel: static pages embedded in the
// binary (no build step, no library), served by the daemon at "/", that
// drive the daemon's own HTTP API from the browser.
//
// A person signs in once with the operator token and gets a session: an
// HttpOnly, SameSite=Strict cookie, and a CSRF token that the page sends
// as X-CSRF-Token with every change it asks for. The API accepts either
// the bearer token (unchanged) or a session with its CSRF token (see
// Sessions.Check). Every page carries a strict Content-Security-Policy:
// scripts from the panel's own files only, no inline script, so nothing
// an agent writes can run in it (the pages render model output as text).
package panel

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/randid"
)

//go:embed static
var static embed.FS

// Cookie is the name of the session cookie.
const Cookie = "taosagent_session"

// CSRFHeader carries a session's CSRF token on every change.
const CSRFHeader = "X-CSRF-Token"

// Policy is the Content-Security-Policy of every panel page: its own
// scripts and styles only, no inline script, frames only from this origin
// (an app's preview, itself an opaque sandbox), never framed itself.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; manifest-src 'self'; worker-src 'self'"

// Sessions are the panel's sign-ins, kept in memory: a daemon restart
// signs everyone out. The zero value with Token set is ready.
type Sessions struct {
	// Token is the operator token: the one secret that signs in.
	Token string
	// TTL is how long a session lasts from its last use (default 12 h).
	TTL time.Duration
	// Secure marks the cookie Secure (the daemon serves TLS).
	Secure bool

	mu    sync.Mutex
	m     map[string]*session    // sha256 of the cookie's value → session
	fails map[string][]time.Time // client address → its failed sign-ins of the last minute
}

// Sign-in failures allowed per client per window; past them a client is
// refused (429, Retry-After) until the oldest ages out of the window.
const (
	MaxFailures   = 5
	FailureWindow = time.Minute
)

// client is the address a sign-in comes from (its host, without port).
func client(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// throttledLocked reports how long the client must wait before it may try
// again, 0 if it may now; the caller holds s.mu.
func (s *Sessions) throttledLocked(c string, now time.Time) time.Duration {
	for k, ts := range s.fails {
		for len(ts) > 0 && now.Sub(ts[0]) >= FailureWindow {
			ts = ts[1:]
		}
		if len(ts) == 0 {
			delete(s.fails, k)
		} else {
			s.fails[k] = ts
		}
	}
	if ts := s.fails[c]; len(ts) >= MaxFailures {
		return FailureWindow - now.Sub(ts[len(ts)-MaxFailures])
	}
	return 0
}

type session struct {
	csrf    string
	expires time.Time
}

func (s *Sessions) ttl() time.Duration {
	if s.TTL <= 0 {
		return 12 * time.Hour
	}
	return s.TTL
}

func hash(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// lookup returns r's session, if its cookie names a live one (and extends
// it).
func (s *Sessions) lookup(r *http.Request) *session {
	c, err := r.Cookie(Cookie)
	if err != nil || len(c.Value) != 64 {
		return nil
	}
	h := hash(c.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[h]
	if ss == nil {
		return nil
	}
	if time.Now().After(ss.expires) {
		delete(s.m, h)
		return nil
	}
	ss.expires = time.Now().Add(s.ttl())
	return ss
}

// Verdict is what Check found.
type Verdict int

// The verdicts of Check.
const (
	NoSession Verdict = iota // no live session: the request is not signed in
	Allowed                  // a session, and (for a change) its CSRF token and origin
	Forged                   // a session, but a change without its CSRF token, or from another origin
)

// Check reports whether r is signed in through the panel. A request that
// may change something (any method but GET, HEAD and OPTIONS) must also
// carry the session's CSRF token in X-CSRF-Token, and, when it says where
// it comes from (Origin), come from this origin: a form on another site
// sends neither, so it is Forged even though the browser sent the cookie.
func (s *Sessions) Check(r *http.Request) Verdict {
	ss := s.lookup(r)
	if ss == nil {
		return NoSession
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return Allowed
	}
	got := r.Header.Get(CSRFHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 || !sameOrigin(r) {
		return Forged
	}
	return Allowed
}

// sameOrigin reports whether r's Origin, if it has one, is r's own host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// Handler serves the panel: its pages and files, and sign-in, sign-out
// and the session's CSRF token under /panel/.
func (s *Sessions) Handler() http.Handler {
	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		headers(w)
		http.ServeFileFS(w, r, files, "index.html")
	})
	fileServer := http.StripPrefix("/panel/", http.FileServerFS(files))
	serve := func(w http.ResponseWriter, r *http.Request) {
		headers(w)
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /panel/{file}", serve)
	mux.HandleFunc("GET /panel/sw.js", func(w http.ResponseWriter, r *http.Request) {
		// The service worker serves the panel's page, at /: its scope.
		w.Header().Set("Service-Worker-Allowed", "/")
		serve(w, r)
	})
	mux.HandleFunc("GET /panel/vendor/{file}", serve) // the pinned libraries (static/vendor)
	mux.HandleFunc("POST /panel/login", s.login)
	mux.HandleFunc("POST /panel/logout", s.logout)
	mux.HandleFunc("GET /panel/session", s.current)
	return mux
}

func headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", Policy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func reply(w http.ResponseWriter, status int, v any) {
	headers(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// refuse answers an error with the panel's headers (api.WriteError).
func refuse(w http.ResponseWriter, status int, code, msg string) {
	headers(w)
	w.Header().Set("Cache-Control", "no-store")
	api.WriteError(w, status, code, msg)
}

// login signs in with the operator token, sent as JSON {"token": …} from
// this origin: it sets the session cookie and answers the CSRF token.
func (s *Sessions) login(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || !sameOrigin(r) {
		refuse(w, http.StatusForbidden, "forbidden", "sign in from the panel's own page")
		return
	}
	var b struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&b); err != nil {
		refuse(w, http.StatusBadRequest, "bad_request", "want {\"token\": …}")
		return
	}
	c, now := client(r), time.Now()
	s.mu.Lock()
	if wait := s.throttledLocked(c, now); wait > 0 {
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		refuse(w, http.StatusTooManyRequests, "too_many_requests", fmt.Sprintf("%d failed sign-ins from this address within %v: try again later", MaxFailures, FailureWindow))
		return
	}
	if s.Token == "" || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(b.Token)), []byte(s.Token)) != 1 {
		if s.fails == nil {
			s.fails = map[string][]time.Time{}
		}
		if len(s.fails) < 100000 {
			s.fails[c] = append(s.fails[c], now)
		}
		s.mu.Unlock()
		refuse(w, http.StatusUnauthorized, "unauthorized", "that is not the operator token (the token file in the taosagent home)")
		return
	}
	delete(s.fails, c)
	id, csrf := randid.Secret(), randid.Secret()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[hash(id)] = &session{csrf: csrf, expires: now.Add(s.ttl())}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: id, Path: "/", HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteStrictMode})
	reply(w, http.StatusOK, map[string]string{"csrf": csrf})
}

// logout ends the session (with its CSRF token: a forged sign-out is
// refused too).
func (s *Sessions) logout(w http.ResponseWriter, r *http.Request) {
	if s.Check(r) != Allowed {
		refuse(w, http.StatusForbidden, "forbidden", "not signed in, or not from the panel's own page")
		return
	}
	c, _ := r.Cookie(Cookie)
	s.mu.Lock()
	delete(s.m, hash(c.Value))
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteStrictMode})
	reply(w, http.StatusOK, map[string]bool{"signed_out": true})
}

// current answers the session's CSRF token, or 401: how a page finds out
// whether it is signed in.
func (s *Sessions) current(w http.ResponseWriter, r *http.Request) {
	ss := s.lookup(r)
	if ss == nil {
		refuse(w, http.StatusUnauthorized, "unauthorized", "signed out")
		return
	}
	reply(w, http.StatusOK, map[string]string{"csrf": ss.csrf})
}
