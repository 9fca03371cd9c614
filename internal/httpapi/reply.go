package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// The reply stream taOS consumes (docs/TAOS.md): one turn's reply as
// newline-delimited JSON, one dict per line, in the shapes taOS's bridge
// records:
//
//	{"kind":"delta"|"reasoning"|"final","trace_id":T,"content":TEXT}
//	{"kind":"tool_call","trace_id":T,"tool":NAME,"call_id":ID,"input":{…}}
//	{"kind":"tool_result","trace_id":T,"tool":NAME,"call_id":ID,"output":TEXT}
//	{"kind":"error","trace_id":T,"error":MESSAGE}
//
// The stream ends after the turn's one terminal dict (final or error) and
// never without one: a turn that taosagent's restart interrupts ends with
// an error dict. A blank line is a keep-alive. A client that lost the
// connection asks again by trace id, skipping the dicts it already has.

// replyDict is one dict of the reply stream.
type replyDict struct {
	Kind    string          `json:"kind"`
	TraceID string          `json:"trace_id"`
	Content *string         `json:"content,omitempty"`
	Tool    string          `json:"tool,omitempty"`
	CallID  string          `json:"call_id,omitempty"`
	Input   json.RawMessage `json:"input,omitempty"`
	Output  *string         `json:"output,omitempty"`
	Error   *string         `json:"error,omitempty"`
}

// dictOf is the reply dict of event e of a turn, nil for an event taOS's
// bridge does not record (status, usage, approvals, …).
func dictOf(kind event.Kind, data json.RawMessage, trace string) *replyDict {
	d := &replyDict{Kind: string(kind), TraceID: trace}
	switch kind {
	case event.Delta, event.Reasoning:
		var v event.DeltaData
		json.Unmarshal(data, &v)
		d.Content = &v.Text
	case event.Final:
		var v event.FinalData
		json.Unmarshal(data, &v)
		d.Content = &v.Text
	case event.ToolCall:
		var v event.ToolCallData
		json.Unmarshal(data, &v)
		d.Tool, d.CallID, d.Input = v.Tool, v.CallID, v.Input
		if len(d.Input) == 0 {
			d.Input = json.RawMessage("{}")
		}
	case event.ToolResult:
		var v event.ToolResultData
		json.Unmarshal(data, &v)
		out := v.Output
		if v.Error != "" {
			out = "error: " + v.Error
		}
		d.Tool, d.CallID, d.Output = v.Tool, v.CallID, &out
	case event.Error:
		var v event.ErrorData
		json.Unmarshal(data, &v)
		d.Error = &v.Message
	default:
		return nil
	}
	return d
}

// postReply submits a message with its trace id and streams its reply.
// Sent again with the same trace id (and text), it submits nothing new:
// the reply of the first is streamed (from its start).
func (s *Server) postReply(w http.ResponseWriter, r *http.Request) {
	var b replyInput
	if !s.decode(w, r, &b) {
		return
	}
	if b.Trace == "" {
		writeError(w, http.StatusUnprocessableEntity, "invalid", "trace_id: is required")
		return
	}
	name := r.PathValue("name")
	if _, _, err := s.Control.Submit(r.Context(), actor(r), name, control.Message{Text: b.Text, Mode: b.Mode, Model: b.Model, TraceID: b.Trace}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.replyStream(w, r, name, b.Trace, 0)
}

// getReply streams the reply of the message of trace_id, skipping the first
// `after` dicts (those a client already has).
func (s *Server) getReply(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	trace := q.Get("trace_id")
	if trace == "" || len(trace) > 128 {
		writeError(w, http.StatusBadRequest, "bad_request", "trace_id: is required (at most 128 characters)")
		return
	}
	skip := 0
	if a := q.Get("after"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "after: want the number of dicts already received (0 or more)")
			return
		}
		skip = n
	}
	s.replyStream(w, r, r.PathValue("name"), trace, skip)
}

// replyStream writes the reply dicts of the turn of agent name's message
// of trace, past the first skip, until its terminal dict.
func (s *Server) replyStream(w http.ResponseWriter, r *http.Request, name, trace string, skip int) {
	ctx := r.Context()
	if _, err := s.Log.Agent(ctx, name); err != nil {
		s.fail(w, r, err)
		return
	}
	in, err := s.Log.InputOfTrace(ctx, name, trace)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := startStream(w, "application/x-ndjson")
	rc.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	emit := func(d *replyDict) (done bool) {
		if n++; n > skip {
			enc.Encode(d)
		}
		return d.Kind == string(event.Final) || d.Kind == string(event.Error)
	}
	err = s.Log.FollowTurn(ctx, in, s.KeepAlive, func(string) error {
		rc.SetWriteDeadline(time.Now().Add(s.WriteWait))
		w.Write([]byte("\n")) // keep-alive
		return rc.Flush()
	}, func(_ string, evs []eventlog.TurnEvent) bool {
		rc.SetWriteDeadline(time.Now().Add(s.WriteWait))
		for _, e := range evs {
			if d := dictOf(e.Kind, e.Data, trace); d != nil && emit(d) {
				rc.Flush()
				return true
			}
		}
		return rc.Flush() != nil // the client left
	})
	if errors.Is(err, eventlog.ErrNeverRan) {
		// A message that ended without ever running still gets its
		// terminal dict.
		msg := err.Error()
		emit(&replyDict{Kind: string(event.Error), TraceID: trace, Error: &msg})
		rc.Flush()
	}
}

// replyInput is the body of POST /v1/agents/NAME/reply.
type replyInput struct {
	Text  string `json:"text"`
	Trace string `json:"trace_id"`
	Mode  string `json:"mode"`
	Model string `json:"model"`
}
