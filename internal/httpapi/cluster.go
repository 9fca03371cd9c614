package httpapi

import (
	"net/http"

	"github.com/taosagent/taosagent/internal/api"
)

// clusterStatus shows the daemons sharing the database and who runs which
// agent.
func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	c, err := s.Control.ClusterStatus(r.Context(), actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// drain drains a daemon (its agents move between their turns), or ends
// its drain.
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	var req api.DrainRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := s.Control.Drain(r.Context(), actor(r), req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clusterStatus(w, r)
}

// pin sets where an agent may run.
func (s *Server) pin(w http.ResponseWriter, r *http.Request) {
	var req api.PinRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := s.Control.Pin(r.Context(), actor(r), r.PathValue("name"), req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clusterStatus(w, r)
}

// move moves an agent to another daemon of its cluster.
func (s *Server) move(w http.ResponseWriter, r *http.Request) {
	var req api.MoveRequest
	if !s.decode(w, r, &req) {
		return
	}
	m, err := s.Control.Move(r.Context(), actor(r), r.PathValue("name"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, m)
}
