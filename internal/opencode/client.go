package opencode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/api"
)

// DefaultTimeout bounds every Client call but the event stream.
const DefaultTimeout = 15 * time.Second

// Client calls one `opencode serve` instance. The zero value is not usable;
// set BaseURL and Password. Safe for concurrent use.
type Client struct {
	BaseURL  string // "http://127.0.0.1:PORT"
	Username string // default "opencode"
	Password string // the instance's OPENCODE_SERVER_PASSWORD
	// Directory, when set, is sent as ?directory= on every call: opencode
	// routes sessions, permissions and events per directory.
	Directory string
	HTTP      *http.Client  // default: a client with no overall timeout
	Timeout   time.Duration // per call; default DefaultTimeout
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) url(path string, q url.Values) string {
	if c.Directory != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("directory", c.Directory)
	}
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, err
	}
	user := c.Username
	if user == "" {
		user = "opencode"
	}
	req.SetBasicAuth(user, c.Password)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// maxBody bounds what the client reads of one answer.
const maxBody = 64 << 20

// do sends a request and decodes a JSON answer into out (nil: expect none).
// op names the call in errors without ids, e.g. "POST /session/{id}/abort".
func (c *Client) do(ctx context.Context, op, method, path string, q url.Values, body, out any) error {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return fmt.Errorf("opencode %s: %w", op, err)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("opencode %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("opencode %s: read answer: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(op, resp.StatusCode, data)
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return &APIError{Op: op, Status: resp.StatusCode, Message: "answered with " + resp.Header.Get("Content-Type"), kind: ErrNotAPI}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &APIError{Op: op, Status: resp.StatusCode, Message: "undecodable JSON: " + err.Error(), kind: ErrNotAPI}
	}
	return nil
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// Health calls GET /global/health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, "GET /global/health", "GET", "/global/health", nil, nil, &h)
	return h, err
}

// CheckVersion fails with ErrWrongVersion unless the instance is healthy and
// runs the pinned Version.
func (c *Client) CheckVersion(ctx context.Context) error { return c.CheckVersionOf(ctx, Version) }

// CheckVersionOf fails with ErrWrongVersion unless the instance is healthy
// and runs version.
func (c *Client) CheckVersionOf(ctx context.Context, version string) error {
	h, err := c.Health(ctx)
	if err != nil {
		return err
	}
	if !h.Healthy || h.Version != version {
		return fmt.Errorf("%w: instance reports healthy=%v version %q, want %s", ErrWrongVersion, h.Healthy, h.Version, version)
	}
	return nil
}

// CreateSession creates a session with a title (opencode then skips its own
// title generation request).
func (c *Client) CreateSession(ctx context.Context, title string) (Session, error) {
	var s Session
	body := map[string]any{}
	if title != "" {
		body["title"] = title
	}
	err := c.do(ctx, "POST /session", "POST", "/session", nil, body, &s)
	return s, err
}

// GetSession returns a session; ErrNotFound if opencode does not know it.
func (c *Client) GetSession(ctx context.Context, id string) (Session, error) {
	var s Session
	err := c.do(ctx, "GET /session/{id}", "GET", "/session/"+url.PathEscape(id), nil, nil, &s)
	return s, err
}

// PromptAsync starts (or, while busy, queues) a prompt and returns at once;
// the outcome arrives on the event stream only.
func (c *Client) PromptAsync(ctx context.Context, sessionID string, p Prompt) error {
	return c.do(ctx, "POST /session/{id}/prompt_async", "POST", "/session/"+url.PathEscape(sessionID)+"/prompt_async", nil, p.body(), nil)
}

// Messages returns a session's whole history, oldest first.
func (c *Client) Messages(ctx context.Context, sessionID string) ([]Message, error) {
	var m []Message
	err := c.do(ctx, "GET /session/{id}/message", "GET", "/session/"+url.PathEscape(sessionID)+"/message", nil, nil, &m)
	return m, err
}

// Abort stops a session's running turn. It succeeds for an idle session too.
func (c *Client) Abort(ctx context.Context, sessionID string) error {
	return c.do(ctx, "POST /session/{id}/abort", "POST", "/session/"+url.PathEscape(sessionID)+"/abort", nil, nil, nil)
}

// SessionStatus returns the status of every session that is not idle.
func (c *Client) SessionStatus(ctx context.Context) (map[string]Status, error) {
	m := map[string]Status{}
	err := c.do(ctx, "GET /session/status", "GET", "/session/status", nil, nil, &m)
	return m, err
}

// Permissions lists pending permission requests.
func (c *Client) Permissions(ctx context.Context) ([]PermissionRequest, error) {
	var p []PermissionRequest
	err := c.do(ctx, "GET /permission", "GET", "/permission", nil, nil, &p)
	return p, err
}

// ReplyPermission answers a permission request with "once", "always" or
// "reject"; a reject with a message lets the turn go on with that feedback.
// ErrNotFound if the request is unknown or answered already.
func (c *Client) ReplyPermission(ctx context.Context, requestID, reply, message string) error {
	if err := api.CheckDecision(reply, message); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if requestID == "" {
		return fmt.Errorf("%w: empty permission request id", ErrBadRequest)
	}
	body := map[string]string{"reply": reply}
	if message != "" {
		body["message"] = message
	}
	return c.do(ctx, "POST /permission/{id}/reply", "POST", "/permission/"+url.PathEscape(requestID)+"/reply", nil, body, nil)
}

// Questions lists pending questions.
func (c *Client) Questions(ctx context.Context) ([]QuestionRequest, error) {
	var q []QuestionRequest
	err := c.do(ctx, "GET /question", "GET", "/question", nil, nil, &q)
	return q, err
}

// ReplyQuestion answers a question request: one list of chosen labels (or
// free text) per question.
func (c *Client) ReplyQuestion(ctx context.Context, requestID string, answers [][]string) error {
	if requestID == "" {
		return fmt.Errorf("%w: empty question request id", ErrBadRequest)
	}
	return c.do(ctx, "POST /question/{id}/reply", "POST", "/question/"+url.PathEscape(requestID)+"/reply", nil, map[string]any{"answers": answers}, nil)
}

// RejectQuestion declines a question request.
func (c *Client) RejectQuestion(ctx context.Context, requestID string) error {
	if requestID == "" {
		return fmt.Errorf("%w: empty question request id", ErrBadRequest)
	}
	return c.do(ctx, "POST /question/{id}/reject", "POST", "/question/"+url.PathEscape(requestID)+"/reject", nil, nil, nil)
}
