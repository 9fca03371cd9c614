// Package containers speaks the Docker Engine API over its Unix socket:
// the API that Docker serves and that Podman's service (`podman system
// service`) serves too. It does only what the managed host needs of a
// container: find the declared ones, inspect them, read their logs, and
// start, stop, kill, restart or remove them. It never creates a container
// and never runs a command in one.
package containers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the Engine API version asked for: Docker 20.10's, which
// Docker and Podman 4 both serve.
const APIVersion = "v1.41"

// ErrNotFound: no container (or image) of that name or id.
var ErrNotFound = errors.New("no such container")

// Client reaches one container runtime through its API socket.
type Client struct {
	Socket  string        // the runtime's API socket, e.g. /run/podman/podman.sock
	Timeout time.Duration // per call, besides a stop's own grace; default 30 s
}

func (c Client) http() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		},
		DisableKeepAlives: true,
	}}
}

// call makes one API call; a 404 is ErrNotFound, any other non-2xx an
// error carrying the runtime's message. The body is at most limit bytes.
func (c Client) call(ctx context.Context, method, path string, q url.Values, extra time.Duration, limit int64) ([]byte, int, error) {
	t := c.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t+extra)
	defer cancel()
	u := "http://engine/" + APIVersion + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, 0, fmt.Errorf("the container runtime does not answer on %s: %w", c.Socket, op.Err)
		}
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, resp.StatusCode, ErrNotFound
	case resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotModified:
		var m struct {
			Message string `json:"message"`
		}
		json.Unmarshal(b, &m)
		if m.Message == "" {
			m.Message = strings.TrimSpace(string(b))
		}
		return nil, resp.StatusCode, fmt.Errorf("the container runtime answered %d: %s", resp.StatusCode, bound(m.Message, 300))
	}
	return b, resp.StatusCode, nil
}

func bound(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Selector names the containers a declaration means: one by its exact
// name, or those with one label (key=value). Never "any container".
type Selector struct {
	Name  string
	Label string
}

func (s Selector) String() string {
	if s.Name != "" {
		return "name " + s.Name
	}
	return "label " + s.Label
}

// Summary is a container as the runtime's list shows it.
type Summary struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"` // "/web" in Docker's list, "web" in Podman's
	Labels map[string]string `json:"Labels"`
}

// Matches reports whether sel names the container.
func (sel Selector) Matches(s Summary) bool {
	if sel.Label != "" {
		k, v, _ := strings.Cut(sel.Label, "=")
		got, ok := s.Labels[k]
		return ok && got == v
	}
	for _, n := range s.Names {
		if strings.TrimPrefix(n, "/") == sel.Name {
			return true
		}
	}
	return false
}

// List lists every container, running or not, in the runtime's order.
func (c Client) List(ctx context.Context) ([]Summary, error) {
	b, _, err := c.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}}, 0, 16<<20)
	if err != nil {
		return nil, err
	}
	var list []Summary
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("the container runtime's list: %w", err)
	}
	return list, nil
}

// Find returns the ids of the containers sel names, running or not, in
// the runtime's order. A name matches exactly (the API's own name filter
// matches any part of a name, and an id's prefix would match too).
func (c Client) Find(ctx context.Context, sel Selector) ([]string, error) {
	list, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range list {
		if sel.Matches(s) {
			ids = append(ids, s.ID)
		}
	}
	return ids, nil
}

// Names lists every container's name, running or not.
func (c Client) Names(ctx context.Context) ([]string, error) {
	list, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range list {
		for _, n := range s.Names {
			names = append(names, strings.TrimPrefix(n, "/"))
		}
	}
	return names, nil
}

// Details is what Inspect reads of a container.
type Details struct {
	ID           string `json:"Id"`
	Name         string `json:"Name"`
	Image        string `json:"Image"` // the image's id, sha256:…
	RestartCount int    `json:"RestartCount"`
	State        struct {
		Status     string    `json:"Status"` // created, running, paused, restarting, exited, dead
		Running    bool      `json:"Running"`
		Restarting bool      `json:"Restarting"`
		ExitCode   int       `json:"ExitCode"`
		Error      string    `json:"Error"`
		StartedAt  time.Time `json:"StartedAt"`
		FinishedAt time.Time `json:"FinishedAt"`
		Health     *struct {
			Status        string `json:"Status"` // starting, healthy, unhealthy
			FailingStreak int    `json:"FailingStreak"`
		} `json:"Health"`
	} `json:"State"`
	Config struct {
		Image  string            `json:"Image"` // as it was asked for
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	HostConfig struct {
		AutoRemove    bool `json:"AutoRemove"`
		RestartPolicy struct {
			Name string `json:"Name"`
		} `json:"RestartPolicy"`
		PortBindings map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string `json:"HostPort"`
		} `json:"PortBindings"`
	} `json:"HostConfig"`
	// Raw is the runtime's whole answer: the container's settings as they
	// were, kept in a snapshot before a recipe changes anything.
	Raw json.RawMessage `json:"-"`
}

// Inspect reads one container by id.
func (c Client) Inspect(ctx context.Context, id string) (Details, error) {
	b, _, err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, 0, 4<<20)
	if err != nil {
		return Details{}, err
	}
	var d Details
	if err := json.Unmarshal(b, &d); err != nil {
		return Details{}, fmt.Errorf("the container runtime's inspect: %w", err)
	}
	d.Name = strings.TrimPrefix(d.Name, "/")
	d.Raw = b
	return d, nil
}

// Health is the container's health check's verdict, "" without one.
func (d Details) Health() string {
	if d.State.Health == nil {
		return ""
	}
	return d.State.Health.Status
}

// HostPorts lists the host ports the container publishes, sorted as the
// runtime gives them ("127.0.0.1:8080->80/tcp").
func (d Details) HostPorts() []string {
	var out []string
	for port, bs := range d.HostConfig.PortBindings {
		for _, b := range bs {
			out = append(out, net.JoinHostPort(b.HostIP, b.HostPort)+"->"+port)
		}
	}
	return out
}

// Image is what ImageInspect reads of an image.
type Image struct {
	ID          string   `json:"Id"`
	RepoDigests []string `json:"RepoDigests"`
}

// ImageInspect reads an image by id or reference.
func (c Client) ImageInspect(ctx context.Context, ref string) (Image, error) {
	b, _, err := c.call(ctx, http.MethodGet, "/images/"+url.PathEscape(ref)+"/json", nil, 0, 4<<20)
	if err != nil {
		return Image{}, err
	}
	var im Image
	err = json.Unmarshal(b, &im)
	return im, err
}

// Pinned reports whether im is pin: its id ("sha256:…") or one of its
// repository digests ("repo@sha256:…").
func (im Image) Pinned(pin string) bool {
	if pin == im.ID {
		return true
	}
	for _, d := range im.RepoDigests {
		if d == pin {
			return true
		}
	}
	return false
}

// Logs returns the last n lines of the container's output (its stdout
// and stderr interleaved as written), since a time (zero: no bound), each
// prefixed with the runtime's timestamp. At most 4 MiB is read.
func (c Client) Logs(ctx context.Context, id string, n int, since time.Time) ([]string, error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "timestamps": {"1"}, "tail": {strconv.Itoa(n)}}
	if !since.IsZero() {
		q.Set("since", strconv.FormatInt(since.Unix(), 10))
	}
	b, _, err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, 0, 4<<20)
	if err != nil {
		return nil, err
	}
	lines := splitLines(Demux(b))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// Demux joins the frames of the API's multiplexed log stream (an 8-byte
// header: the stream, three zero bytes, the frame's length big-endian; then
// the frame) into one text. A stream without that framing (a container with
// a terminal) is returned as it is.
func Demux(b []byte) []byte {
	var out bytes.Buffer
	rest := b
	for len(rest) >= 8 {
		if rest[0] > 2 || rest[1] != 0 || rest[2] != 0 || rest[3] != 0 {
			return b
		}
		n := int(binary.BigEndian.Uint32(rest[4:8]))
		if n > len(rest)-8 {
			n = len(rest) - 8 // a frame cut by the read's bound
		}
		out.Write(rest[8 : 8+n])
		rest = rest[8+n:]
	}
	if len(rest) > 0 {
		return b
	}
	return out.Bytes()
}

func splitLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// Start starts a container; one already running is left as it is.
func (c Client) Start(ctx context.Context, id string) error {
	_, _, err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/start", nil, 0, 64<<10)
	return err
}

// Stop stops a container, killing it after grace; one already stopped is
// left as it is.
func (c Client) Stop(ctx context.Context, id string, grace time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
	_, _, err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", q, grace, 64<<10)
	return err
}

// Restart stops (killing after grace) and starts a container.
func (c Client) Restart(ctx context.Context, id string, grace time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
	_, _, err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/restart", q, grace, 64<<10)
	return err
}

// Kill sends a running container SIGKILL.
func (c Client) Kill(ctx context.Context, id string) error {
	_, _, err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill", url.Values{"signal": {"KILL"}}, 0, 64<<10)
	return err
}

// Remove removes a stopped container (never a running one: no force).
func (c Client) Remove(ctx context.Context, id string) error {
	_, _, err := c.call(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), nil, 0, 64<<10)
	return err
}

// State is one container as the host tools and doctor show it.
type State struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	State    string    `json:"state"`            // created, running, restarting, exited, …
	Health   string    `json:"health,omitempty"` // starting, healthy, unhealthy; "" without a check
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started,omitzero"`
	ExitCode int       `json:"exit_code,omitempty"`
	Image    string    `json:"image"` // the image's id
	Ports    []string  `json:"ports,omitempty"`
	// Problems are what is wrong with it: none when it runs, is not
	// unhealthy, does not restart in a loop and runs its pinned image.
	Problems []string `json:"problems,omitempty"`
}

// LoopWindow and LoopRestarts define a restart loop: at least LoopRestarts
// restarts, the last start less than LoopWindow ago.
const (
	LoopWindow   = 10 * time.Minute
	LoopRestarts = 3
)

// Look inspects the container id and says what is wrong with it; pin, when
// set, is the image it must run (Image.Pinned).
func (c Client) Look(ctx context.Context, id, pin string, now time.Time) (State, Details, error) {
	d, err := c.Inspect(ctx, id)
	if err != nil {
		return State{}, d, err
	}
	st := State{ID: d.ID, Name: d.Name, State: d.State.Status, Health: d.Health(), Restarts: d.RestartCount,
		Started: d.State.StartedAt, Image: d.Image, Ports: d.HostPorts()}
	if d.State.Status != "running" {
		st.ExitCode = d.State.ExitCode
	}
	switch {
	case d.State.Restarting || d.RestartCount >= LoopRestarts && now.Sub(d.State.StartedAt) < LoopWindow:
		st.Problems = append(st.Problems, fmt.Sprintf("restarting in a loop (%d restarts, the last %s ago)", d.RestartCount, now.Sub(d.State.StartedAt).Round(time.Second)))
	case d.State.Status != "running":
		p := d.State.Status
		if d.State.Status == "exited" {
			p += fmt.Sprintf(" with code %d", d.State.ExitCode)
		}
		st.Problems = append(st.Problems, "not running: "+p)
	}
	if st.Health == "unhealthy" {
		st.Problems = append(st.Problems, fmt.Sprintf("unhealthy (%d failed checks in a row)", d.State.Health.FailingStreak))
	}
	if pin != "" {
		im, err := c.ImageInspect(ctx, d.Image)
		switch {
		case err != nil:
			st.Problems = append(st.Problems, "its image cannot be read: "+err.Error())
		case !im.Pinned(pin):
			st.Problems = append(st.Problems, "runs image "+d.Image+", not the pinned "+pin)
		}
	}
	return st, d, nil
}
