package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"

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
	before, _ := s.Control.Apps(r.Context(), "")
	a, err := s.Control.SubmitApp(r.Context(), actor(r), data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	for _, b := range before {
		if b.SHA256 == a.SHA256 {
			status = http.StatusOK
		}
	}
	writeJSON(w, status, a)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	as, err := s.Control.Apps(r.Context(), r.URL.Query().Get("app_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": as})
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	a, err := s.Control.App(r.Context(), r.PathValue("sha"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// decideApp records a person's decision on a pending package:
// {"decision":"approve"|"reject","message":…}.
func (s *Server) decideApp(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Decision string `json:"decision"`
		Message  string `json:"message"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	a, err := s.Control.DecideApp(r.Context(), actor(r), r.PathValue("sha"), b.Decision, b.Message)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}
