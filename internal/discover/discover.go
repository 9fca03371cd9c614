// Package discover finds a taOS install on the box and proposes its
// managed-host declaration: taOS's and LiteLLM's systemd units (their
// health URLs, ports, config and environment files, read off the units
// themselves), taOS's containers (through the container runtime's API),
// its web app, and the LiteLLM proxy as a model provider. It proposes; it
// never writes. What it cannot tell from the box it asks (Finder.Ask), or,
// with no one to ask, leaves out and names (Proposal.Unsure).
package discover

import (
	"context"
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

// Units are the service units of a taOS install, by name.
var (
	taosUnit    = regexp.MustCompile(`^(taos|tinyagentos)[A-Za-z0-9@._-]*\.service$`)
	litellmUnit = regexp.MustCompile(`^litellm[A-Za-z0-9@._-]*\.service$`)
	taosName    = regexp.MustCompile(`^[a-zA-Z0-9_.-]*(taos|tinyagentos)[a-zA-Z0-9_.-]*$`)
	badName     = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// Finder looks at the box.
type Finder struct {
	Systemd hostctl.Systemd
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
	p := Proposal{Host: current}
	units, err := f.Systemd.ServiceUnits(ctx)
	if err != nil {
		return p, fmt.Errorf("systemd's units: %w", err)
	}
	for _, unit := range units {
		isTaos, isLiteLLM := taosUnit.MatchString(unit), litellmUnit.MatchString(unit)
		if !isTaos && !isLiteLLM {
			continue
		}
		st, err := f.Systemd.Status(ctx, unit)
		if err != nil {
			p.Unsure = append(p.Unsure, unit+": "+err.Error())
			continue
		}
		if isLiteLLM && p.Provider == nil {
			p.Provider = f.provider(ctx, st)
		}
		if slices.ContainsFunc(p.Host.Services, func(s hostctl.Service) bool { return s.Unit == unit }) {
			continue
		}
		svc := f.service(st, isLiteLLM, &p)
		p.Host.Services = append(p.Host.Services, svc)
		p.Found = append(p.Found, describe(svc))
		if isTaos {
			f.webApp(st, svc, &p)
		}
	}
	f.containers(ctx, &p)
	return p, nil
}

// service makes a managed service of a unit, from what the unit says.
func (f *Finder) service(st hostctl.UnitStatus, litellm bool, p *Proposal) hostctl.Service {
	svc := hostctl.Service{Name: p.freeName(strings.TrimSuffix(st.Unit, ".service")), Unit: st.Unit}
	args := strings.Fields(st.ExecArgv)
	port := flag(args, "--port")
	if litellm && port == "" {
		port = "4000" // LiteLLM's own default
	}
	if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 65536 && !p.portTaken(n) {
		svc.Ports = []int{n}
		path := "/api/health"
		if litellm {
			path = "/health/liveliness"
		}
		svc.HealthURL = "http://127.0.0.1:" + port + path
	} else {
		q := "What is the health URL of " + st.Unit + " (a loopback http URL; empty for none)?"
		switch a := f.ask(q); {
		case a == nil:
			p.Unsure = append(p.Unsure, st.Unit+": its port is not on its command line; "+q)
		case *a != "":
			svc.HealthURL = *a
		}
	}
	for _, c := range []string{flag(args, "--config"), flag(args, "-c")} {
		if c != "" && filepath.IsAbs(c) {
			svc.Configs = append(svc.Configs, hostctl.ConfigFile{Path: filepath.Clean(c), Format: f.format(c, p)})
		}
	}
	for _, e := range st.EnvironmentFiles {
		e = strings.TrimPrefix(e, "-") // systemd's "may be missing"
		if filepath.IsAbs(e) {
			svc.Configs = append(svc.Configs, hostctl.ConfigFile{Path: filepath.Clean(e), Format: "ini"})
		}
	}
	return svc
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
func (f *Finder) webApp(st hostctl.UnitStatus, svc hostctl.Service, p *Proposal) {
	if st.WorkingDirectory == "" {
		return
	}
	var dirs []string
	if hasBuild(st.WorkingDirectory) {
		dirs = append(dirs, st.WorkingDirectory)
	}
	ents, _ := os.ReadDir(st.WorkingDirectory)
	for _, e := range ents {
		if d := filepath.Join(st.WorkingDirectory, e.Name()); e.IsDir() && e.Name() != "node_modules" && hasBuild(d) {
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
		if root, ok := strings.CutSuffix(svc.HealthURL, "/api/health"); ok {
			app.URL = root + "/" // taOS serves its page at its root
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
			if !taosName.MatchString(n) || slices.ContainsFunc(p.Host.Containers, func(k hostctl.Container) bool { return k.Container == n }) {
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
func (f *Finder) provider(ctx context.Context, st hostctl.UnitStatus) *Provider {
	args := strings.Fields(st.ExecArgv)
	port := flag(args, "--port")
	if port == "" {
		port = "4000"
	}
	pr := &Provider{BaseURL: "http://127.0.0.1:" + port + "/v1", Models: []string{}}
	env := map[string]string{}
	for _, e := range st.EnvironmentFiles {
		e = strings.TrimPrefix(e, "-")
		if b, err := hostctl.ReadFile(e, 1<<20); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(k, "#") {
					env[strings.TrimPrefix(strings.TrimSpace(k), "export ")] = strings.Trim(strings.TrimSpace(v), `"'`)
				}
			}
			if v := env["LITELLM_MASTER_KEY"]; v != "" && pr.Key == "" {
				pr.Key, pr.KeyFrom = v, e+" (LITELLM_MASTER_KEY)"
			}
		}
	}
	if c := flag(args, "--config"); c != "" && pr.Key == "" {
		if b, err := hostctl.ReadFile(c, 1<<20); err == nil {
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
