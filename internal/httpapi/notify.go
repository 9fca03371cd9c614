package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/event"
)

// createChannel adds a channel for notifications: 201, with a webhook's
// signing key this once.
func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) {
	var req api.ChannelRequest
	if !s.decode(w, r, &req) {
		return
	}
	c, err := s.Control.CreateChannel(r.Context(), actor(r), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) {
	cs, err := s.Control.Channels(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": cs})
}

func (s *Server) deleteChannel(w http.ResponseWriter, r *http.Request) {
	if err := s.Control.DeleteChannel(r.Context(), actor(r), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// vapid is the daemon's VAPID public key, which a browser subscribes with.
func (s *Server) vapid(w http.ResponseWriter, r *http.Request) {
	key := ""
	if n := s.Control.Notifier; n != nil {
		key = n.VAPID.Public
	}
	writeJSON(w, http.StatusOK, map[string]string{"public_key": key})
}

// pendingStream streams what waits for a person: a "pending" frame with
// the numbers of pending approvals and questions at once, and again after
// each is asked or resolved (the panel's badge follows it).
func (s *Server) pendingStream(w http.ResponseWriter, r *http.Request) {
	sub, err := s.Log.Subscribe("", s.Log.Head(), false, event.PermissionAsked, event.PermissionResolved, event.QuestionAsked, event.QuestionResolved)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer sub.Close()
	ctx, cancel := s.streamContext(r)
	defer cancel()
	rc := startStream(w, "text/event-stream")
	send := func() error {
		as, err := s.Control.Approvals(ctx, "pending")
		if err != nil {
			return err
		}
		qs, err := s.Control.Questions(ctx, "pending")
		if err != nil {
			return err
		}
		b, _ := json.Marshal(api.Pending{Approvals: len(as), Questions: len(qs)})
		fmt.Fprintf(w, "event: pending\ndata: %s\n\n", b)
		return rc.Flush()
	}
	if send() != nil {
		return
	}
	for {
		recs, quiet, err := s.next(ctx, sub, rc)
		switch {
		case err != nil:
			return
		case quiet:
			fmt.Fprint(w, ": keep-alive\n\n")
			if rc.Flush() != nil {
				return
			}
		case len(recs) > 0:
			if send() != nil {
				return
			}
		}
	}
}
