// Package hostctl is what taosagent may do to the host it runs on: the
// managed services declared in one file of the home (their systemd units,
// health URLs, logs and config files), read and restarted through systemd.
// Nothing here runs a command that a caller composes: units, paths and
// formats come from the declaration, which only the operator writes.
package hostctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/containers"
)

// Service is one managed service.
type Service struct {
	Name      string       `json:"name"`
	Unit      string       `json:"unit"`                 // systemd unit, e.g. "taos.service"
	HealthURL string       `json:"health_url,omitempty"` // a loopback http(s) URL answering 2xx when healthy
	Logs      []string     `json:"logs,omitempty"`       // log files; none means the unit's journal
	Configs   []ConfigFile `json:"configs,omitempty"`
	Ports     []int        `json:"ports,omitempty"` // the TCP ports it listens on
}

// ConfigFile is a config file of a service, with its format for validation.
type ConfigFile struct {
	Path   string `json:"path"`
	Format string `json:"format"` // json, yaml, toml, ini or none
}

// Container is one managed container, reached through the container
// runtime's API (package containers): one container by its exact name, or
// those a label marks. Never "any container".
type Container struct {
	Name      string `json:"name"`                // what the tools and recipes call it
	Container string `json:"container,omitempty"` // the container's exact name
	Label     string `json:"label,omitempty"`     // or a label that marks it, key=value
	// Image, when set, is the image it must run: an image id (sha256:…)
	// or a repository digest (repo@sha256:…).
	Image     string `json:"image,omitempty"`
	HealthURL string `json:"health_url,omitempty"` // a loopback http(s) URL answering 2xx when healthy
	// Unit is the systemd unit that creates the container, when one does
	// (podman generate systemd, quadlet, compose): unwedge-container
	// restarts the unit rather than starting the container itself.
	Unit string `json:"unit,omitempty"`
	// RemoveLeftover lets unwedge-container remove a stopped container of
	// this declaration before the unit makes it again (a leftover of a
	// container run without --rm blocks its name). Only with Unit.
	RemoveLeftover bool `json:"remove_leftover,omitempty"`
	// StopSeconds is how long a stop waits before it kills; default 10.
	StopSeconds int   `json:"stop_seconds,omitempty"`
	Ports       []int `json:"ports,omitempty"` // the host's TCP ports it publishes
}

// Selector is what the runtime is asked for.
func (c Container) Selector() containers.Selector {
	return containers.Selector{Name: c.Container, Label: c.Label}
}

// StopGrace is how long a stop of c waits before it kills.
func (c Container) StopGrace() time.Duration {
	if c.StopSeconds <= 0 {
		return 10 * time.Second
	}
	return time.Duration(c.StopSeconds) * time.Second
}

// SPA is a declared single-page web app: where its source is, how it is
// built, and where the built files are served from.
type SPA struct {
	Name   string   `json:"name"`
	Source string   `json:"source"` // the source directory (absolute)
	Build  []string `json:"build"`  // the build command, run in a copy of the source
	Output string   `json:"output"` // where the build writes, relative to the source ("dist")
	// Serve is the directory the web server serves: rebuild-spa replaces
	// it whole, keeping the build it replaced as Serve+".previous".
	Serve   string `json:"serve"`
	Service string `json:"service,omitempty"` // the managed service that serves it
	URL     string `json:"url,omitempty"`     // a loopback URL of the served page
}

// Config is the managed-host file (HOME/host.json).
type Config struct {
	Services   []Service   `json:"services"`
	Containers []Container `json:"containers,omitempty"`
	SPAs       []SPA       `json:"spas,omitempty"`
	// ContainerSocket is the container runtime's API socket; default
	// Podman's (/run/podman/podman.sock) where it exists, else Docker's.
	ContainerSocket string `json:"container_socket,omitempty"`
}

// Runtime is the client of the declared container runtime.
func (c Config) Runtime() containers.Client {
	sock := c.ContainerSocket
	if sock == "" {
		sock = "/var/run/docker.sock"
		if _, err := os.Stat("/run/podman/podman.sock"); err == nil {
			sock = "/run/podman/podman.sock"
		}
	}
	return containers.Client{Socket: sock}
}

// Container returns the container declared as name.
func (c Config) Container(name string) (Container, bool) {
	for _, k := range c.Containers {
		if k.Name == name {
			return k, true
		}
	}
	return Container{}, false
}

var (
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	// The runtimes' own rule for a container's name.
	containerPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	labelPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}=[^\x00-\x1f\x7f]{0,256}$`)
	imagePattern     = regexp.MustCompile(`^([a-z0-9][a-z0-9._/:-]{0,254}@)?sha256:[0-9a-f]{64}$`)
	unitPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@._:\\-]{0,200}\.service$`)
	formats          = map[string]bool{"json": true, "yaml": true, "toml": true, "ini": true, "none": true}
)

// Self is taosagent's own service; it is always managed.
var Self = Service{Name: "taosagent", Unit: "taosagent.service"}

// Load reads the managed-host file at path. A missing file declares no
// service beyond taosagent itself; a bad one is an error that names the
// fault.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{Services: []Service{Self}}, nil
	}
	if err != nil {
		return Config{}, err
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse validates a managed-host document and adds taosagent itself.
func Parse(b []byte) (Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("not a managed-host document: %w", err)
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		where := fmt.Sprintf("services[%d]", i)
		if err := checkName(where, s.Name, seen); err != nil {
			return Config{}, err
		}
		switch {
		case !unitPattern.MatchString(s.Unit):
			return Config{}, fmt.Errorf("%s: unit %q is not a systemd service unit name", where, s.Unit)
		}
		seen[s.Name] = true
		if err := optionalURL(where, "health_url", s.HealthURL); err != nil {
			return Config{}, err
		}
		for _, l := range s.Logs {
			if !filepath.IsAbs(l) {
				return Config{}, fmt.Errorf("%s: log %q is not an absolute path", where, l)
			}
		}
		for _, f := range s.Configs {
			if !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path {
				return Config{}, fmt.Errorf("%s: config %q is not a clean absolute path", where, f.Path)
			}
			if !formats[f.Format] {
				return Config{}, fmt.Errorf("%s: config %s: format %q: want json, yaml, toml, ini or none", where, f.Path, f.Format)
			}
		}
	}
	if err := c.checkContainers(); err != nil {
		return Config{}, err
	}
	if err := c.checkPorts(); err != nil {
		return Config{}, err
	}
	if err := c.checkSPAs(seen); err != nil {
		return Config{}, err
	}
	if c.ContainerSocket != "" && (!filepath.IsAbs(c.ContainerSocket) || filepath.Clean(c.ContainerSocket) != c.ContainerSocket) {
		return Config{}, fmt.Errorf("container_socket %q is not a clean absolute path", c.ContainerSocket)
	}
	if !seen[Self.Name] {
		c.Services = append([]Service{Self}, c.Services...)
	}
	return c, nil
}

// SPA returns the web app declared as name.
func (c Config) SPA(name string) (SPA, bool) {
	for _, a := range c.SPAs {
		if a.Name == name {
			return a, true
		}
	}
	return SPA{}, false
}

// checkName checks the name of a declaration at where, among those seen.
func checkName(where, name string, seen map[string]bool) error {
	switch {
	case !namePattern.MatchString(name):
		return fmt.Errorf("%s: name %q: want lower-case letters, digits, - and _", where, name)
	case seen[name]:
		return fmt.Errorf("%s: the name %q appears twice", where, name)
	}
	return nil
}

func cleanAbs(p string) bool { return filepath.IsAbs(p) && filepath.Clean(p) == p }

// checkSPAs: services names the declared services.
func (c Config) checkSPAs(services map[string]bool) error {
	seen := map[string]bool{}
	for i, a := range c.SPAs {
		where := fmt.Sprintf("spas[%d]", i)
		if err := checkName(where, a.Name, seen); err != nil {
			return err
		}
		switch {
		case !cleanAbs(a.Source) || a.Source == "/":
			return fmt.Errorf("%s: source %q is not a clean absolute directory", where, a.Source)
		case !cleanAbs(a.Serve) || strings.Count(a.Serve, "/") < 2:
			return fmt.Errorf("%s: serve %q: want a clean absolute directory at least two levels down (it is replaced whole)", where, a.Serve)
		case a.Serve == a.Source || strings.HasPrefix(a.Serve, a.Source+"/") || strings.HasPrefix(a.Source, a.Serve+"/"):
			return fmt.Errorf("%s: serve %q and source %q overlap", where, a.Serve, a.Source)
		case a.Output == "" || filepath.IsAbs(a.Output) || filepath.Clean(a.Output) != a.Output || a.Output == "." || a.Output == ".." || strings.HasPrefix(a.Output, "../"):
			return fmt.Errorf("%s: output %q: want a directory inside the source, relative to it (dist)", where, a.Output)
		case len(a.Build) == 0 || a.Build[0] == "":
			return fmt.Errorf("%s: build: give the command, e.g. [\"npm\", \"run\", \"build\"]", where)
		case a.Service != "" && !services[a.Service]:
			return fmt.Errorf("%s: service %q is not a declared service", where, a.Service)
		}
		if err := optionalURL(where, "url", a.URL); err != nil {
			return err
		}
		seen[a.Name] = true
	}
	return nil
}

// PortOwner is who a declared port belongs to: a service or a container.
type PortOwner struct {
	Port      int
	Service   string // the service's name, or
	Container string // the container's
}

func (o PortOwner) String() string {
	if o.Service != "" {
		return "service " + o.Service
	}
	return "container " + o.Container
}

// Ports lists every declared port with its owner, in declaration order.
func (c Config) Ports() []PortOwner {
	var out []PortOwner
	for _, s := range c.Services {
		for _, p := range s.Ports {
			out = append(out, PortOwner{Port: p, Service: s.Name})
		}
	}
	for _, k := range c.Containers {
		for _, p := range k.Ports {
			out = append(out, PortOwner{Port: p, Container: k.Name})
		}
	}
	return out
}

// Port returns the owner of a declared port.
func (c Config) Port(port int) (PortOwner, bool) {
	for _, o := range c.Ports() {
		if o.Port == port {
			return o, true
		}
	}
	return PortOwner{}, false
}

// checkPorts: each port is in 1–65535 and has one owner.
func (c Config) checkPorts() error {
	seen := map[int]PortOwner{}
	for _, o := range c.Ports() {
		if o.Port < 1 || o.Port > 65535 {
			return fmt.Errorf("%s: port %d: want 1 to 65535", o, o.Port)
		}
		if was, ok := seen[o.Port]; ok {
			return fmt.Errorf("port %d is declared for %s and for %s: a port has one owner", o.Port, was, o)
		}
		seen[o.Port] = o
	}
	return nil
}

func (c Config) checkContainers() error {
	seen := map[string]bool{}
	for i, k := range c.Containers {
		where := fmt.Sprintf("containers[%d]", i)
		if err := checkName(where, k.Name, seen); err != nil {
			return err
		}
		switch {
		case (k.Container == "") == (k.Label == ""):
			return fmt.Errorf("%s: give exactly one of container (its name) or label (key=value)", where)
		case k.Container != "" && !containerPattern.MatchString(k.Container):
			return fmt.Errorf("%s: container %q is not a container name", where, k.Container)
		case k.Label != "" && !labelPattern.MatchString(k.Label):
			return fmt.Errorf("%s: label %q: want key=value", where, k.Label)
		case k.Image != "" && !imagePattern.MatchString(k.Image):
			return fmt.Errorf("%s: image %q: want an image id (sha256:…) or a digest (repo@sha256:…)", where, k.Image)
		case k.Unit != "" && !unitPattern.MatchString(k.Unit):
			return fmt.Errorf("%s: unit %q is not a systemd service unit name", where, k.Unit)
		case k.RemoveLeftover && k.Unit == "":
			return fmt.Errorf("%s: remove_leftover needs the unit that makes the container again", where)
		case k.StopSeconds < 0 || k.StopSeconds > 600:
			return fmt.Errorf("%s: stop_seconds %d: want 0 to 600", where, k.StopSeconds)
		}
		if err := optionalURL(where, "health_url", k.HealthURL); err != nil {
			return err
		}
		seen[k.Name] = true
	}
	return nil
}

// optionalURL checks the field of a declaration at where: empty, or a
// loopback URL.
func optionalURL(where, field, raw string) error {
	if raw == "" {
		return nil
	}
	if err := loopbackURL(raw); err != nil {
		return fmt.Errorf("%s: %s: %w", where, field, err)
	}
	return nil
}

// loopbackURL accepts an http(s) URL of a loopback address only: a health
// probe never leaves the machine.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); (ip == nil || !ip.IsLoopback()) && h != "localhost" {
		return fmt.Errorf("%q is not a loopback address", h)
	}
	return nil
}

// Service returns the service called name.
func (c Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// ConfigFile returns the declared config file at path, and its service.
func (c Config) ConfigFile(path string) (Service, ConfigFile, bool) {
	path = filepath.Clean(path)
	for _, s := range c.Services {
		for _, f := range s.Configs {
			if f.Path == path {
				return s, f, true
			}
		}
	}
	return Service{}, ConfigFile{}, false
}

// ErrTooLarge: a file is larger than a tool may handle.
var ErrTooLarge = errors.New("too large")

// ReadFile reads a file of at most max bytes.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, ErrTooLarge, max)
	}
	return b, nil
}

// Tail returns the last n lines of the file at path that contain pattern
// ("" for all), reading at most the last max bytes.
func Tail(path string, n int, pattern string, max int64) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if pattern == "" || strings.Contains(sc.Text(), pattern) {
			lines = append(lines, sc.Text())
			if len(lines) > n {
				lines = lines[1:]
			}
		}
	}
	return lines, sc.Err()
}

// Probe GETs url (a health URL, a provider's models), within timeout,
// following no redirect, with header's name and value pairs set; it
// returns the status code, 0 when nothing answered.
func Probe(ctx context.Context, url string, timeout time.Duration, header ...string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
