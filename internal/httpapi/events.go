package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// cursor reads after (and Last-Event-ID for streams), kinds and limit.
func cursor(r *http.Request, stream bool) (after int64, explicit bool, kinds []event.Kind, limit int, err error) {
	q := r.URL.Query()
	v := q.Get("after")
	if stream && r.Header.Get("Last-Event-ID") != "" {
		v = r.Header.Get("Last-Event-ID")
	}
	if v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return 0, false, nil, 0, errors.New("after: must be a seq (a non-negative integer)")
		}
		explicit = true
	}
	if ks := q.Get("kinds"); ks != "" {
		list := strings.Split(ks, ",")
		if len(list) > len(event.Kinds) {
			return 0, false, nil, 0, fmt.Errorf("kinds: at most %d kinds", len(event.Kinds))
		}
		for _, k := range list {
			if !event.Kind(k).Known() {
				return 0, false, nil, 0, fmt.Errorf("kinds: unknown kind %q", k)
			}
			if !slices.Contains(kinds, event.Kind(k)) {
				kinds = append(kinds, event.Kind(k))
			}
		}
	}
	limit = control.APIReadDefault
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > control.APIReadMax {
			return 0, false, nil, 0, fmt.Errorf("limit: must be 1 to %d", control.APIReadMax)
		}
	}
	return after, explicit, kinds, limit, nil
}

// eventsRequest reads the agent and cursor of the two event routes; on bad
// input it answers and reports false.
func (s *Server) eventsRequest(w http.ResponseWriter, r *http.Request, stream bool) (name string, after int64, explicit bool, kinds []event.Kind, limit int, ok bool) {
	name = r.PathValue("name")
	after, explicit, kinds, limit, err := cursor(r, stream)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if _, err := s.Log.Agent(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	if v := r.URL.Query().Get("turns"); v != "" && !explicit {
		// Only the latest turns: begin at the n-th latest one's start.
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "bad_request", "turns: must be 1 to 10000")
			return
		}
		seq, err := s.Log.RecentTurnsStart(r.Context(), name, n)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		after = max(seq-1, 0)
	}
	return name, after, explicit, kinds, limit, true
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	name, after, _, kinds, limit, ok := s.eventsRequest(w, r, false)
	if !ok {
		return
	}
	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	last, n := after, 0
	err := s.Log.Scan(r.Context(), eventlog.Query{Agent: name, After: after, Kinds: kinds, Limit: limit}, func(rec eventlog.Record) error {
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(rec.Body)
		last, n = rec.Seq, n+1
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fmt.Fprintf(&buf, `],"last_seq":%d,"head":%d,"oldest_kept":%d}`+"\n", last, s.Log.Head(), s.Log.Floor()+1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	name, after, explicit, kinds, _, ok := s.eventsRequest(w, r, true)
	if !ok {
		return
	}
	sub, err := s.Log.Subscribe(name, after, explicit, kinds...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer sub.Close()
	ctx, cancel := s.streamContext(r)
	defer cancel()
	rc := startStream(w, "text/event-stream")
	bw := newFrameWriter(w)
	bw.comment("taosagent events of " + name)
	if err := bw.flush(rc); err != nil {
		return
	}
	for {
		recs, quiet, err := s.next(ctx, sub, rc)
		switch {
		case err != nil:
			return // the client left, or the daemon is stopping
		case quiet:
			bw.comment("keep-alive")
		default:
			for _, rec := range recs {
				bw.frame(rec)
			}
		}
		if err := bw.flush(rc); err != nil {
			return
		}
	}
}

// streamContext is the context of a stream r asked for: it ends when the
// client leaves or the daemon ends its streams (EndStreams).
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	go func() {
		select {
		case <-s.ending():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// startStream starts a streamed response of content type ct, which no
// cache keeps and no proxy buffers.
func startStream(w http.ResponseWriter, ct string) *http.ResponseController {
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w)
}

// next waits up to KeepAlive for sub's next records; quiet says none came
// and a keep-alive is due. An error ends the stream: the client left, or
// the daemon is stopping. Every write after it is bounded by WriteWait
// (frames may reach the connection before the flush).
func (s *Server) next(ctx context.Context, sub eventlog.Subscription, rc *http.ResponseController) (recs []eventlog.Record, quiet bool, err error) {
	kctx, cancel := context.WithTimeout(ctx, s.KeepAlive)
	recs, err = sub.Next(kctx, 512)
	cancel()
	rc.SetWriteDeadline(time.Now().Add(s.WriteWait))
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, true, nil
	}
	return recs, false, err
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if err := api.CheckApprovalState(state); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	as, err := s.Control.Approvals(r.Context(), state)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": as})
}

func (s *Server) replyApproval(w http.ResponseWriter, r *http.Request) {
	var b api.DecisionRequest
	if !s.decode(w, r, &b) {
		return
	}
	// The decision and the message are checked by the control service
	// (api.CheckDecision): 422 when wrong.
	ap, err := s.Control.Decide(r.Context(), actor(r), r.PathValue("id"), b.Decision, b.Message)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ap)
}

func (s *Server) listQuestions(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if err := api.CheckQuestionState(state); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	qs, err := s.Control.Questions(r.Context(), state)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"questions": qs})
}

func (s *Server) answerQuestion(w http.ResponseWriter, r *http.Request) {
	var b api.AnswerRequest
	if !s.decode(w, r, &b) {
		return
	}
	// The answers are checked against what was asked by the runner
	// (api.CheckAnswer): 422 when they do not fit.
	q, err := s.Control.Answer(r.Context(), actor(r), r.PathValue("id"), b)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, q)
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err1 := intParam(q.Get("after"), 0)
	limit, err2 := intParam(q.Get("limit"), 0)
	before, err3 := intParam(q.Get("before"), 0)
	if err1 != nil || err2 != nil || err3 != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "after, before and limit must be non-negative integers")
		return
	}
	newest := false
	switch q.Get("newest") {
	case "", "false":
	case "true":
		newest = true
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "newest: true or false")
		return
	}
	// The rest of the query's rules are the control service's, as for a
	// read through MCP (control.Audit).
	es, err := s.Control.Audit(r.Context(), actor(r), control.AuditRequest{After: after, Before: before, Newest: newest, Limit: int(limit),
		Actor: q.Get("actor"), Tool: q.Get("tool"), Outcome: q.Get("outcome"), Since: q.Get("since")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es})
}

// intParam parses a non-negative integer parameter; "" gives def.
func intParam(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}
