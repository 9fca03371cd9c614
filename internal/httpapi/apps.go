package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/appkit"
)

// submitApp takes a .taosapp package as the body (application/zip or
// application/octet-stream, up to the package limit) and answers its
// record with the gate's pre-gate report: 201 when new, 200 when the same
// bytes were submitted before.
func (s *Server) submitApp(w http.ResponseWriter, r *http.Request) {
	max := appkit.DefaultLimits().MaxArchive
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the package is larger than %d bytes", max))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return
	}
	a, created, err := s.Apps.SubmitApp(r.Context(), actor(r), data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, a)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	as, err := s.Apps.Apps(r.Context(), r.URL.Query().Get("app_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": as})
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	a, err := s.Apps.App(r.Context(), r.PathValue("sha"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// decideApp records a person's decision on a pending package:
// {"decision":"approve"|"reject","message":…}.
func (s *Server) decideApp(w http.ResponseWriter, r *http.Request) {
	var b api.DecisionRequest
	if !s.decode(w, r, &b) {
		return
	}
	a, err := s.Apps.DecideApp(r.Context(), actor(r), r.PathValue("sha"), b.Decision, b.Message)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// previewApp opens a preview of a package for a person and answers its
// address: a capability, good for an hour, that needs no token (a browser
// loads it in a frame).
func (s *Server) previewApp(w http.ResponseWriter, r *http.Request) {
	tok, exp, err := s.Apps.PreviewApp(r.Context(), actor(r), r.PathValue("sha"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"url": "/apps/preview/" + tok + "/", "expires": exp.UTC()})
}

// previewFile serves a file of a previewed package from an opaque origin:
// its Content-Security-Policy makes it a sandbox with scripts and nothing
// else (no same origin: no cookie, no storage, no reading the daemon's
// answers, no reaching the parent frame), and the app's own policy holds
// as a second one. Only the package's files exist; nothing is sniffed.
// Proven in a real Chromium (e2e TestAPreviewedAppIsOpaqueInChromium).
func (s *Server) previewFile(w http.ResponseWriter, r *http.Request) {
	name, data, policy, err := s.Apps.PreviewFile(r.PathValue("token"), r.PathValue("path"))
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such preview, or no such file in it")
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "sandbox allow-scripts")
	if policy != "" {
		h.Add("Content-Security-Policy", policy)
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	// The page's origin is opaque ("null"), so its own files are
	// cross-origin to it: a module script is fetched with CORS, a style
	// sheet or an image is checked against this policy. They may be read
	// by anyone who holds the address (it is the capability); without
	// credentials, never the API's answers.
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("Access-Control-Allow-Origin", "*")
	w.Write(data)
}
