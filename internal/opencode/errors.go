package opencode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/taosagent/taosagent/internal/render"
)

// Sentinel conditions callers check with errors.Is.
var (
	// ErrNotFound: opencode reports the session, message or request unknown.
	ErrNotFound = errors.New("opencode: not found")
	// ErrUnauthorized: the instance rejected our credentials.
	ErrUnauthorized = errors.New("opencode: unauthorized")
	// ErrBadRequest: opencode rejected the request's payload.
	ErrBadRequest = errors.New("opencode: bad request")
	// ErrBusy: the session is busy and the operation needs it idle.
	ErrBusy = errors.New("opencode: session busy")
	// ErrServer: opencode failed internally (HTTP 5xx).
	ErrServer = errors.New("opencode: server error")
	// ErrNotAPI: the answer is not opencode's JSON API. Unknown routes answer
	// 200 with the web UI's HTML, so a wrong path looks like this.
	ErrNotAPI = errors.New("opencode: response is not the JSON API")
	// ErrWrongVersion: the binary or server is not the pinned Version.
	ErrWrongVersion = errors.New("opencode: wrong version")
	// ErrTampered: a binary or package whose bytes are not the pinned (or
	// installed) ones.
	ErrTampered = errors.New("opencode: integrity check failed")

	errUnsupportedPlatform = errors.New("opencode: no pinned binary for this platform (linux/amd64 and linux/arm64 only)")
)

// APIError is a failed call to opencode, decoded from any of the error body
// shapes opencode 1.18 uses. It wraps one of the sentinels above.
type APIError struct {
	Op      string // "POST /session/{id}/prompt_async"
	Status  int    // HTTP status
	Name    string // opencode's error name or _tag, e.g. "NotFoundError"
	Message string // opencode's message, first line only
	kind    error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "opencode %s: HTTP %d", e.Op, e.Status)
	if e.Name != "" {
		b.WriteString(" " + e.Name)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.kind }

// decodeAPIError builds an APIError from a non-2xx response body. It knows
// the shapes opencode 1.18 sends:
//
//	{"name":"NotFoundError","data":{"message":"…"}}
//	{"_tag":"PermissionNotFoundError","requestID":"…","message":"…"}
//	{"name":"BadRequest","data":{"message":"…","kind":"Payload"}}
//	{"name":"UnknownError","data":{"message":"…","ref":"err_…"}}
//
// and an empty body (401).
func decodeAPIError(op string, status int, body []byte) *APIError {
	e := &APIError{Op: op, Status: status}
	var shape struct {
		Name    string `json:"name"`
		Tag     string `json:"_tag"`
		Message string `json:"message"`
		Data    struct {
			Message string `json:"message"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &shape) == nil {
		e.Name = shape.Name
		if e.Name == "" {
			e.Name = shape.Tag
		}
		e.Message = shape.Data.Message
		if e.Message == "" {
			e.Message = shape.Message
		}
		// Not cut here: a secret straddling the cut would leak its
		// prefix past redaction. Whoever shows it uses Redacted.
		e.Message = firstLine(e.Message)
	}
	switch {
	case status == 401 || status == 403:
		e.kind = ErrUnauthorized
	case status == 404 || strings.HasSuffix(e.Name, "NotFoundError"):
		e.kind = ErrNotFound
	case status == 409 || e.Name == "SessionBusyError":
		e.kind = ErrBusy
	case status >= 500:
		e.kind = ErrServer
	default:
		e.kind = ErrBadRequest
	}
	return e
}

// CleanMessage reduces an opencode error message to something fit to show a
// person: the first line, without a JavaScript stack trace, at most 500
// bytes. opencode sometimes appends a full stack to a message.
func CleanMessage(s string) string {
	s = firstLine(s)
	const max = 500
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// firstLine is s's first line, without a JavaScript stack trace.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if i := strings.Index(s, "    at "); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// Redacted replaces every secret (of 4 bytes or more) in s by
// "[redacted]", then cleans it (CleanMessage): redaction comes first, so
// that a secret the cut would split is still found whole.
func Redacted(s string, secrets []string) string {
	return CleanMessage(render.Redacted(s, secrets))
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Unanswered reports whether err is a call that opencode never answered:
// the connection was refused or closed before any answer, as when its
// process is gone (a crash the supervisor has not noticed yet). Not a
// refusal, and not the caller's own deadline or cancellation.
func Unanswered(err error) bool {
	var ae *APIError
	return err != nil && !errors.As(err, &ae) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
