// Package discover finds a taOS install on the box and proposes its
// managed-host declaration: taOS's and LiteLLM's systemd units (their
// health URLs, ports, config and environment files, read off the unit
// files themselves), taOS's containers (through the container runtime's
// API), its web app, and the LiteLLM proxy as a model provider. Where
// taOS keeps what is the Layout, data (taos-layout.json, built in), not
// code. It proposes; it never writes. What it cannot tell from the box it
// asks (Finder.Ask), or, with no one to ask, leaves out and names
// (Proposal.Unsure).
package discover

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/taosagent/taosagent/internal/containers"
	"github.com/taosagent/taosagent/internal/hostctl"
)

var badName = regexp.MustCompile(`[^a-z0-9_-]+`)

//go:embed taos-layout.json
var taosLayout []byte

// Layout is where an install keeps what taosagent manages.
type Layout struct {
	UnitDirs       []string     `json:"unit_dirs"`
	Units          []UnitLayout `json:"units"`
	ContainerMatch string       `json:"container_match"` // a container whose name matches is the install's

	containers *regexp.Regexp
}

// UnitLayout is one kind of the install's services.
type UnitLayout struct {
	Kind        string   `json:"kind"`
	Match       string   `json:"match"` // the unit's name
	HealthPath  string   `json:"health_path"`
	DefaultPort int      `json:"default_port,omitempty"`
	Configs     []string `json:"configs,omitempty"`      // its config files, where they are found
	WebAppDirs  []string `json:"web_app_dirs,omitempty"` // where under its working directory a web app may be
	Provider    *struct {
		ID     string `json:"id"`
		Path   string `json:"path"`    // of its OpenAI-compatible API
		KeyEnv string `json:"key_env"` // the variable of its environment files that holds its key
	} `json:"provider,omitempty"`

	match *regexp.Regexp
}

// TaOS is the layout of a taOS install (taos-layout.json).
func TaOS() Layout {
	l, err := ParseLayout(taosLayout)
	if err != nil {
		panic(err) // the built-in file is tested
	}
	return l
}

// ParseLayout reads a layout.
func ParseLayout(b []byte) (Layout, error) {
	var l Layout
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("a layout: %w", err)
	}
	for i := range l.Units {
		re, err := regexp.Compile(l.Units[i].Match)
		if err != nil {
			return l, fmt.Errorf("a layout: units[%d].match: %w", i, err)
		}
		l.Units[i].match = re
	}
	re, err := regexp.Compile(l.ContainerMatch)
	if err != nil || l.ContainerMatch == "" {
		return l, fmt.Errorf("a layout: container_match %q: want a regular expression", l.ContainerMatch)
	}
	l.containers = re
	return l, nil
}

// Finder looks at the box.
type Finder struct {
	Layout Layout // default TaOS()
	// Root is where the box's files are read: "" for /, a directory for a
	// copy of a box (a test's synthetic install). What is declared names
	// the box's own paths.
	Root string
	// Sockets are the container runtime sockets to try, in order; default
	// Podman's and Docker's.
	Sockets []string
	// Ask asks a person a question and returns the answer; nil when no one
	// can be asked (no terminal): the question is then left in Unsure.
	Ask func(question string) string
	// Client reaches LiteLLM for its models; default a 5 s one.
	Client *http.Client
}

// Provider is the box's LiteLLM proposed as a model provider.
type Provider struct {
	ID      string   `json:"id"`
	BaseURL string   `json:"base_url"`
	KeyFrom string   `json:"key_from,omitempty"` // where the key was read (never the key)
	Key     string   `json:"-"`
	Models  []string `json:"models"`
	Problem string   `json:"problem,omitempty"` // why its models are not known
}

// Proposal is a proposed declaration.
type Proposal struct {
	Host hostctl.Config
	// Found names what is new against the current declaration, one line
	// each; empty when nothing changed.
	Found []string
	// Unsure names what could not be told and was not asked.
	Unsure   []string
	Provider *Provider
}

// Find proposes the declaration: current with what the box has that it
// lacks. Nothing already declared is changed.
func (f *Finder) Find(ctx context.Context, current hostctl.Config) (Proposal, error) {
	if f.Layout.Units == nil {
		f.Layout = TaOS()
	}
	p := Proposal{Host: current}
	seen := map[string]bool{}
	for _, dir := range f.Layout.UnitDirs {
		ents, _ := os.ReadDir(f.path(dir))
		for _, e := range ents {
			unit := e.Name()
			var ul *UnitLayout
			for i := range f.Layout.Units {
				if f.Layout.Units[i].match.MatchString(unit) {
					ul = &f.Layout.Units[i]
					break
				}
			}
			if ul == nil || seen[unit] {
				continue
			}
			seen[unit] = true // the first directory's file is the one systemd reads
			st, err := readUnit(f.path(filepath.Join(dir, unit)))
			if err != nil {
				p.Unsure = append(p.Unsure, unit+": "+err.Error())
				continue
			}
			st.Unit = unit
			if ul.Provider != nil && p.Provider == nil {
				p.Provider = f.provider(ctx, st, *ul)
			}
			if slices.ContainsFunc(p.Host.Services, func(s hostctl.Service) bool { return s.Unit == unit }) {
				continue
			}
			svc := f.service(st, *ul, &p)
			p.Host.Services = append(p.Host.Services, svc)
			p.Found = append(p.Found, describe(svc))
			f.webApp(st, *ul, svc, &p)
		}
	}
	f.containers(ctx, &p)
	return p, nil
}

// path is where the box's path is read.
func (f *Finder) path(p string) string {
	if f.Root == "" {
		return p
	}
	return filepath.Join(f.Root, p)
}

// readUnit reads what discover needs of a unit file: ExecStart (its
// first), WorkingDirectory and EnvironmentFile.
func readUnit(path string) (hostctl.UnitStatus, error) {
	b, err := hostctl.ReadFile(path, 1<<20)
	if err != nil {
		return hostctl.UnitStatus{}, err
	}
	var st hostctl.UnitStatus
	text := strings.ReplaceAll(string(b), "\\\n", " ") // continued lines
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "ExecStart":
			if st.ExecArgv == "" {
				st.ExecArgv = strings.Join(strings.Fields(strings.TrimLeft(v, "@-:+!")), " ")
				st.ExecPath, _, _ = strings.Cut(st.ExecArgv, " ")
			}
		case "WorkingDirectory":
			st.WorkingDirectory = strings.TrimPrefix(v, "-")
		case "EnvironmentFile":
			st.EnvironmentFiles = append(st.EnvironmentFiles, v)
		}
	}
	return st, nil
}

// service makes a managed service of a unit, from what the unit says.
func (f *Finder) service(st hostctl.UnitStatus, ul UnitLayout, p *Proposal) hostctl.Service {
	svc := hostctl.Service{Name: p.freeName(strings.TrimSuffix(st.Unit, ".service")), Unit: st.Unit}
	port := unitPort(st, ul)
	if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 65536 && !p.portTaken(n) {
		svc.Ports = []int{n}
		svc.HealthURL = "http://127.0.0.1:" + port + ul.HealthPath
	} else {
		q := "What is the health URL of " + st.Unit + " (a loopback http URL; empty for none)?"
		switch a := f.ask(q); {
		case a == nil:
			p.Unsure = append(p.Unsure, st.Unit+": its port is not on its command line; "+q)
		case *a != "":
			svc.HealthURL = *a
		}
	}
	args := strings.Fields(st.ExecArgv)
	add := func(path, format string) {
		path = filepath.Clean(path)
		if !filepath.IsAbs(path) || slices.ContainsFunc(svc.Configs, func(c hostctl.ConfigFile) bool { return c.Path == path }) {
			return
		}
		if format == "" {
			format = f.format(path, p)
		}
		svc.Configs = append(svc.Configs, hostctl.ConfigFile{Path: path, Format: format})
	}
	for _, c := range []string{flag(args, "--config"), flag(args, "-c")} {
		if c != "" {
			add(c, "")
		}
	}
	for _, e := range st.EnvironmentFiles {
		add(strings.TrimPrefix(e, "-"), "ini") // "-": systemd's "may be missing"
	}
	for _, c := range ul.Configs {
		if _, err := os.Stat(f.path(c)); err == nil {
			add(c, "")
		}
	}
	return svc
}

// unitPort is the port on the unit's command line, else its kind's own.
func unitPort(st hostctl.UnitStatus, ul UnitLayout) string {
	port := flag(strings.Fields(st.ExecArgv), "--port")
	if port == "" && ul.DefaultPort > 0 {
		port = strconv.Itoa(ul.DefaultPort)
	}
	return port
}

// format is a config file's format by its name; asked when unknown.
func (f *Finder) format(path string, p *Proposal) string {
	switch filepath.Ext(path) {
	case ".yaml", ".yml":
		return "yaml"
	case ".json":
		return "json"
	case ".toml":
		return "toml"
	case ".ini", ".env", ".conf", ".cfg":
		return "ini"
	}
	q := "What format is " + path + " (json, yaml, toml, ini or none)?"
	if a := f.ask(q); a != nil && slices.Contains([]string{"json", "yaml", "toml", "ini", "none"}, *a) {
		return *a
	}
	if f.Ask == nil {
		p.Unsure = append(p.Unsure, path+": its format is not told by its name (declared as none: it is not validated before a write)")
	}
	return "none"
}

// webApp looks for the web app in the taOS unit's working directory: a
// package.json with a build script, at its top or one level down.
func (f *Finder) webApp(st hostctl.UnitStatus, ul UnitLayout, svc hostctl.Service, p *Proposal) {
	if st.WorkingDirectory == "" || !filepath.IsAbs(st.WorkingDirectory) {
		return
	}
	var dirs []string
	for _, sub := range ul.WebAppDirs {
		if d := filepath.Join(st.WorkingDirectory, sub); hasBuild(f.path(d)) {
			dirs = append(dirs, d)
		}
	}
	for _, src := range dirs {
		if slices.ContainsFunc(p.Host.SPAs, func(a hostctl.SPA) bool { return a.Source == src }) {
			continue
		}
		q := "Which directory does " + svc.Name + " serve the web app of " + src + " from (its build is swapped in there whole; empty to leave it out)?"
		a := f.ask(q)
		if a == nil {
			p.Unsure = append(p.Unsure, src+": a web app (npm run build); "+q)
			continue
		}
		if *a == "" {
			continue
		}
		app := hostctl.SPA{Name: p.freeName(svc.Name + "-web"), Source: src, Build: []string{"npm", "run", "build"}, Output: "dist",
			Serve: filepath.Clean(*a), Service: svc.Name}
		if root, ok := strings.CutSuffix(svc.HealthURL, ul.HealthPath); ok && svc.HealthURL != "" {
			app.URL = root + "/" // the service serves its page at its root
		}
		p.Host.SPAs = append(p.Host.SPAs, app)
		p.Found = append(p.Found, fmt.Sprintf("web app %s: %s, built with npm run build into dist, served from %s", app.Name, src, app.Serve))
	}
}

func hasBuild(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return false
	}
	var pkg struct {
		Scripts map[string]string `json:"scripts"`
	}
	return json.Unmarshal(b, &pkg) == nil && pkg.Scripts["build"] != ""
}

// containers proposes the containers whose name says taOS, through the
// first runtime socket that answers.
func (f *Finder) containers(ctx context.Context, p *Proposal) {
	socks := f.Sockets
	if p.Host.ContainerSocket != "" {
		socks = []string{p.Host.ContainerSocket}
	} else if len(socks) == 0 {
		socks = []string{"/run/podman/podman.sock", "/var/run/docker.sock"}
	}
	for _, sock := range socks {
		if _, err := os.Stat(sock); err != nil {
			continue
		}
		rt := containers.Client{Socket: sock, Timeout: 10 * time.Second}
		names, err := rt.Names(ctx)
		if err != nil {
			p.Unsure = append(p.Unsure, "the container runtime at "+sock+": "+err.Error())
			continue
		}
		if p.Host.ContainerSocket == "" && !slices.Contains([]string{"/run/podman/podman.sock", "/var/run/docker.sock"}, sock) {
			p.Host.ContainerSocket = sock
		}
		for _, n := range names {
			if !f.Layout.containers.MatchString(n) || slices.ContainsFunc(p.Host.Containers, func(k hostctl.Container) bool { return k.Container == n }) {
				continue
			}
			k := hostctl.Container{Name: p.freeName(n), Container: n}
			p.Host.Containers = append(p.Host.Containers, k)
			p.Found = append(p.Found, "container "+k.Name+" (the container "+n+", through "+sock+")")
		}
		return
	}
}

// provider proposes LiteLLM as a model provider: its URL, its master key
// (from its config or its environment files), and the models it serves.
func (f *Finder) provider(ctx context.Context, st hostctl.UnitStatus, ul UnitLayout) *Provider {
	args := strings.Fields(st.ExecArgv)
	pr := &Provider{ID: ul.Provider.ID, BaseURL: "http://127.0.0.1:" + unitPort(st, ul) + ul.Provider.Path, Models: []string{}}
	keyEnv := ul.Provider.KeyEnv
	env := map[string]string{}
	for _, e := range st.EnvironmentFiles {
		e = strings.TrimPrefix(e, "-")
		if b, err := hostctl.ReadFile(f.path(e), 1<<20); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(k, "#") {
					env[strings.TrimPrefix(strings.TrimSpace(k), "export ")] = strings.Trim(strings.TrimSpace(v), `"'`)
				}
			}
			if v := env[keyEnv]; v != "" && pr.Key == "" {
				pr.Key, pr.KeyFrom = v, e+" ("+keyEnv+")"
			}
		}
	}
	if c := flag(args, "--config"); c != "" && pr.Key == "" {
		if b, err := hostctl.ReadFile(f.path(c), 1<<20); err == nil {
			// LiteLLM's own: general_settings.master_key, a key or
			// os.environ/NAME.
			var cfg struct {
				General struct {
					MasterKey string `yaml:"master_key"`
				} `yaml:"general_settings"`
			}
			if yaml.Unmarshal(b, &cfg) == nil && cfg.General.MasterKey != "" {
				k := cfg.General.MasterKey
				if name, ok := strings.CutPrefix(k, "os.environ/"); ok {
					k = env[name]
				}
				if k != "" {
					pr.Key, pr.KeyFrom = k, c+" (general_settings.master_key)"
				}
			}
		}
	}
	models, err := f.models(ctx, pr)
	if err != nil {
		pr.Problem = err.Error()
	}
	pr.Models = models
	return pr
}

// models asks LiteLLM which models it serves.
func (f *Finder) models(ctx context.Context, pr *Provider) ([]string, error) {
	c := f.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.BaseURL+"/models", nil)
	if err != nil {
		return []string{}, err
	}
	if pr.Key != "" {
		req.Header.Set("Authorization", "Bearer "+pr.Key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return []string{}, fmt.Errorf("LiteLLM does not answer at %s", pr.BaseURL)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return []string{}, fmt.Errorf("LiteLLM answered %d to GET /models", resp.StatusCode)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return []string{}, errors.New("LiteLLM's model list is not the OpenAI shape")
	}
	out := []string{}
	for _, m := range list.Data {
		out = append(out, m.ID)
	}
	return out, nil
}

// ask asks q; nil when no one can be asked.
func (f *Finder) ask(q string) *string {
	if f.Ask == nil {
		return nil
	}
	a := strings.TrimSpace(f.Ask(q))
	return &a
}

// flag is the value of a command line's --name VALUE or --name=VALUE.
func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// freeName makes base a declaration name no service, container or web app
// has.
func (p *Proposal) freeName(base string) string {
	base = strings.Trim(badName.ReplaceAllString(strings.ToLower(base), "-"), "-_")
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "x" + base
	}
	if len(base) > 56 {
		base = base[:56]
	}
	taken := func(n string) bool {
		_, s := p.Host.Service(n)
		_, k := p.Host.Container(n)
		_, a := p.Host.SPA(n)
		return s || k || a
	}
	name := base
	for i := 2; taken(name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

func (p *Proposal) portTaken(port int) bool {
	_, taken := p.Host.Port(port)
	return taken
}

func describe(s hostctl.Service) string {
	d := "service " + s.Name + " (" + s.Unit + ")"
	if s.HealthURL != "" {
		d += ", health " + s.HealthURL
	}
	for _, c := range s.Configs {
		d += ", config " + c.Path + " (" + c.Format + ")"
	}
	return d
}
