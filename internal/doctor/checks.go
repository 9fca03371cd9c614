package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/backup"
	"github.com/taosagent/taosagent/internal/discover"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/npmpkg"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
)

func checkOpencode(ctx context.Context, e *Env) []Finding {
	const id = "opencode"
	if e.Opencode == "" {
		d := "no binary is installed"
		if e.OpencodeErr != nil {
			d = e.OpencodeErr.Error()
		}
		return []Finding{{ID: id, Severity: Critical, Summary: "the pinned opencode " + opencode.Version + " is missing", Details: d, Recipe: "reinstall-opencode"}}
	}
	v := e.OpencodeVersion
	if v == "" {
		v = opencode.Version
	}
	if e.OpencodeStamp != "" && opencode.StampedOf(e.OpencodeStamp, e.Opencode, v) {
		return ok(id, "opencode "+v+" at "+e.Opencode+" (unchanged since verified)")
	}
	if err := opencode.VerifyVersion(ctx, e.Opencode, v); err != nil {
		return []Finding{{ID: id, Severity: Critical, Summary: "the opencode binary is not the opencode " + v + " it must be", Details: err.Error(), Recipe: "reinstall-opencode"}}
	}
	return ok(id, "opencode "+v+" at "+e.Opencode)
}

// private checks that path is not readable or writable by others (and
// not writable by its group).
func private(path string, secret bool) (string, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return "", true // absent: nothing to leak
	}
	m := st.Mode().Perm()
	switch {
	case m&0o002 != 0:
		return fmt.Sprintf("%s is writable by everyone (%04o)", path, m), false
	case m&0o020 != 0:
		return fmt.Sprintf("%s is writable by its group (%04o)", path, m), false
	case secret && m&0o044 != 0:
		return fmt.Sprintf("%s holds a secret and is readable by others (%04o)", path, m), false
	}
	return "", true
}

// privateFiles are the home's files only its owner may read: the token,
// the database and the recovery audit, the providers' keys, the webhooks'
// and the notification channels' secrets, the Web Push keys, the agents' opencode configs (their MCP tokens).
func (e *Env) privateFiles() []string {
	paths := []string{e.Home.TokenFile(), e.Home.DB(), e.Home.RecoveryAudit()}
	ks, _ := filepath.Glob(filepath.Join(e.Home.Keys(), "*.key"))
	hs, _ := filepath.Glob(filepath.Join(e.Home.Hooks(), "hook_*"))
	ns, _ := filepath.Glob(filepath.Join(e.Home.Notify(), "ch_*"))
	paths = append(append(append(paths, ks...), hs...), ns...)
	if _, err := os.Stat(e.Home.VAPID()); err == nil {
		paths = append(paths, e.Home.VAPID())
	}
	if as, err := os.ReadDir(e.Home.Agents()); err == nil {
		for _, a := range as {
			paths = append(paths, e.Home.AgentConfig(a.Name()))
		}
	}
	return paths
}

func checkHome(ctx context.Context, e *Env) []Finding {
	const id = "home"
	st, err := os.Stat(e.Home.Dir)
	if err != nil {
		return []Finding{{ID: id, Severity: Critical, Summary: "the home " + e.Home.Dir + " cannot be read", Details: err.Error()}}
	}
	if !st.IsDir() {
		return []Finding{{ID: id, Severity: Critical, Summary: e.Home.Dir + " is not a directory"}}
	}
	var bad []string
	if m := st.Mode().Perm(); m&0o077 != 0 {
		bad = append(bad, fmt.Sprintf("%s is open to others (%04o; want 0700)", e.Home.Dir, m))
	}
	for _, p := range e.privateFiles() {
		if why, good := private(p, true); !good {
			bad = append(bad, why)
		}
	}
	if _, err := os.Stat(e.Home.TokenFile()); errors.Is(err, fs.ErrNotExist) {
		return []Finding{{ID: id, Severity: Warning, Summary: "there is no operator token yet", Details: "the daemon creates it at its first start", Recipe: "start-daemon"}}
	}
	if len(bad) > 0 {
		return []Finding{{ID: id, Severity: Error, Summary: plural(len(bad), "file is", "files are") + " open to other users", Details: joinMax(bad, 5), Recipe: "repair-permissions"}}
	}
	return ok(id, "the home and its secrets are private")
}

func checkDatabase(ctx context.Context, e *Env) []Finding {
	const id = "database"
	if e.Postgres != "" {
		return ok(id, "the store is in PostgreSQL (see cluster)")
	}
	if _, err := os.Stat(e.Home.DB()); errors.Is(err, fs.ErrNotExist) {
		return ok(id, "no database yet (the daemon creates it at its first start)")
	}
	db, ver, err := e.DB()
	if err != nil {
		return []Finding{{ID: id, Severity: Critical, Summary: "the event log cannot be opened", Details: err.Error(), Recipe: "recover-database"}}
	}
	if problems, err := db.QuickCheck(ctx); err != nil || len(problems) > 0 {
		d := joinMax(problems, 3)
		if err != nil {
			d = err.Error()
		}
		return []Finding{{ID: id, Severity: Critical, Summary: "the event log is damaged", Details: d, Recipe: "recover-database"}}
	}
	var fs []Finding
	if ver < eventlog.SchemaVersion {
		fs = append(fs, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("schema version %d; the daemon migrates it to %d at its next start", ver, eventlog.SchemaVersion)})
	}
	if st, err := os.Stat(e.Home.DB() + "-wal"); err == nil && st.Size() > 256<<20 {
		fs = append(fs, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("the write-ahead log is %d MiB", st.Size()>>20), Details: "it is folded back at the daemon's next start"})
	}
	if len(fs) == 0 {
		fs = ok(id, fmt.Sprintf("the event log is sound (schema %d, %d events)", ver, db.Head()))
	}
	return fs
}

// agentConfig is what the checks read of an agent's opencode.json.
type agentConfig struct {
	Model            string   `json:"model"`
	EnabledProviders []string `json:"enabled_providers"`
	DefaultAgent     string   `json:"default_agent"`
}

// agentsFor reads the agents for check id, or says why it cannot.
func (e *Env) agentsFor(ctx context.Context, id string) ([]agent.Agent, []Finding) {
	db, err := e.Store(ctx)
	if err != nil {
		return nil, ok(id, "not checked: the store cannot be read (see database, or cluster)")
	}
	as, err := db.Agents(ctx)
	if err != nil {
		return nil, ok(id, "not checked: the agents cannot be read (see database)")
	}
	return as, nil
}

func checkAgents(ctx context.Context, e *Env) []Finding {
	const id = "agents"
	as, notChecked := e.agentsFor(ctx, id)
	if notChecked != nil {
		return notChecked
	}
	var out []Finding
	known := map[string]bool{}
	for _, a := range as {
		known[a.Name] = true
		path := e.Home.AgentConfig(a.Name)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // never started, or regenerated: written at its next start
		}
		var c agentConfig
		switch {
		case err != nil:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "agent " + a.Name + ": its opencode config cannot be read", Details: err.Error(), Recipe: "regenerate-agent-config:" + a.Name})
		case json.Unmarshal(b, &c) != nil:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "agent " + a.Name + ": its opencode config is not valid JSON", Details: path, Recipe: "regenerate-agent-config:" + a.Name})
		case c.Model != a.Model || len(c.EnabledProviders) != 1 || c.DefaultAgent != "taosagent":
			out = append(out, Finding{ID: id, Severity: Error, Summary: "agent " + a.Name + ": its opencode config is not what taosagent writes",
				Details: fmt.Sprintf("%s: model %q, want %q", path, c.Model, a.Model), Recipe: "regenerate-agent-config:" + a.Name})
		}
	}
	if ents, err := os.ReadDir(e.Home.Agents()); err == nil {
		for _, d := range ents {
			if d.IsDir() && !known[d.Name()] && !strings.HasPrefix(d.Name(), ".") && !strings.Contains(d.Name(), "@deleted-") {
				out = append(out, Finding{ID: id, Severity: Warning, Summary: "a directory of an unknown agent: " + d.Name(),
					Details: filepath.Join(e.Home.Agents(), d.Name()), Recipe: "reset-agent-dirs:" + d.Name()})
			}
		}
	}
	if len(out) == 0 {
		return ok(id, fmt.Sprintf("%s, each config as taosagent writes it", plural(len(as), "agent", "agents")))
	}
	return out
}

func checkHostFile(ctx context.Context, e *Env) []Finding {
	const id = "host-file"
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return []Finding{{ID: id, Severity: Error, Summary: "the managed-host file is not valid: the host assistant cannot manage services", Details: err.Error(), Recipe: "restore-host-file"}}
	}
	if _, err := os.Stat(e.Home.HostFile()); errors.Is(err, fs.ErrNotExist) {
		f := &discover.Finder{}
		if p, err := f.Find(ctx, c); err == nil && len(p.Found) > 0 {
			return []Finding{{ID: id, Severity: Warning, Summary: "no managed-host declaration, and discover finds " + plural(len(p.Found), "thing", "things") + " to manage",
				Details: joinMax(p.Found, 5) + ". Run `taosagent discover` to see the proposal and write it."}}
		}
	}
	return ok(id, fmt.Sprintf("%s managed", plural(len(c.Services), "service", "services")))
}

func checkDaemon(ctx context.Context, e *Env) []Finding {
	const id = "daemon"
	if !e.Home.Running() {
		return []Finding{{ID: id, Severity: Critical, Summary: "the daemon is not running", Details: "no taosagent daemon holds " + e.Home.LockFile(), Recipe: "start-daemon"}}
	}
	rec, _ := e.Home.Recorded()
	url := "http://" + e.loopback() + "/healthz"
	code, err := e.probe(ctx, url)
	switch {
	case err != nil:
		return []Finding{{ID: id, Severity: Critical, Summary: "the daemon runs (pid " + strconv.Itoa(rec.PID) + ") but does not answer", Details: url + ": " + err.Error(), Recipe: "restart-daemon"}}
	case code == 503:
		return []Finding{{ID: id, Severity: Error, Summary: "the daemon answers but is degraded", Details: url + " answered 503; see daemon-log", Recipe: "restart-daemon"}}
	case code != 200:
		return []Finding{{ID: id, Severity: Error, Summary: fmt.Sprintf("the daemon's health check answered %d", code), Details: url, Recipe: "restart-daemon"}}
	}
	return ok(id, fmt.Sprintf("the daemon runs (pid %d, %s) and answers", rec.PID, e.Addr))
}

func checkStaleLock(ctx context.Context, e *Env) []Finding {
	const id = "stale-lock"
	if e.Home.Running() {
		return ok(id, "the daemon holds its lock")
	}
	rec, ok2 := e.Home.Recorded()
	if !ok2 {
		return ok(id, "no stale record")
	}
	if alive(rec.PID) {
		if p, _ := readProcess(rec.PID); isDaemonOf(p, e.Home.Dir) {
			return []Finding{{ID: id, Severity: Error, Summary: "a daemon process (pid " + strconv.Itoa(rec.PID) + ") runs without holding its lock", Recipe: "restart-daemon"}}
		}
	}
	return []Finding{{ID: id, Severity: Warning, Summary: fmt.Sprintf("the last daemon (pid %d, started %s) died without stopping cleanly", rec.PID, rec.Started.Local().Format(time.DateTime)),
		Details: "killed (kill -9), crashed, or the machine lost power; its record " + e.Home.DaemonFile() + " is stale", Recipe: "clear-stale-lock"}}
}

func checkPort(ctx context.Context, e *Env) []Finding {
	const id = "port"
	port, err := strconv.Atoi(e.port())
	if err != nil {
		return []Finding{{ID: id, Severity: Error, Summary: "the daemon's address " + e.Addr + " has no port"}}
	}
	p, held := Listener(port)
	running := e.Home.Running()
	rec, _ := e.Home.Recorded()
	switch {
	case !held && running:
		return []Finding{{ID: id, Severity: Error, Summary: fmt.Sprintf("nothing listens on port %d, though the daemon runs", port), Details: "it may listen elsewhere: see " + e.Home.DaemonFile(), Recipe: "restart-daemon"}}
	case !held:
		return ok(id, fmt.Sprintf("port %d is free for the daemon", port))
	case running && p.PID == rec.PID:
		return ok(id, fmt.Sprintf("port %d is the daemon's", port))
	case isDaemonOf(p, e.Home.Dir):
		return []Finding{{ID: id, Severity: Error, Summary: fmt.Sprintf("a stale taosagent holds port %d", port), Details: p.String(), Recipe: "free-port"}}
	}
	return []Finding{{ID: id, Severity: Error, Summary: fmt.Sprintf("port %d is held by another program: %s", port, p.Name),
		Details: p.String() + ". taosagent never stops a program that is not its own: stop it yourself, or give the daemon another address (--listen, TAOSAGENT_LISTEN)"}}
}

func checkLeftovers(ctx context.Context, e *Env) []Finding {
	const id = "leftovers"
	if e.Home.Running() {
		return ok(id, "the daemon owns its opencode processes")
	}
	pids, err := supervisor.Leftovers(e.Home.Run())
	if err != nil {
		return []Finding{{ID: id, Severity: Warning, Summary: "the record of opencode processes cannot be read", Details: err.Error()}}
	}
	if len(pids) == 0 {
		return ok(id, "no opencode process of ours is left")
	}
	var ps []string
	for _, pid := range pids {
		if p, ok := readProcess(pid); ok {
			ps = append(ps, p.String())
		}
	}
	return []Finding{{ID: id, Severity: Error, Summary: plural(len(pids), "opencode process of ours runs", "opencode processes of ours run") + " with no daemon",
		Details: joinMax(ps, 4), Recipe: "stop-leftovers"}}
}

func checkDisk(ctx context.Context, e *Env) []Finding {
	const id = "disk"
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.Home.Dir, &st); err != nil {
		return []Finding{{ID: id, Severity: Warning, Summary: "the home's filesystem cannot be measured", Details: err.Error()}}
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	s := fmt.Sprintf("%d MiB free of %d MiB", free>>20, total>>20)
	switch {
	case free < 256<<20:
		return []Finding{{ID: id, Severity: Critical, Summary: "the home's disk is full: " + s, Details: "the event log cannot be written; free space on " + e.Home.Dir}}
	case total > 0 && free*20 < total:
		return []Finding{{ID: id, Severity: Warning, Summary: "the home's disk is nearly full: " + s}}
	}
	return ok(id, s)
}

func checkDaemonLog(ctx context.Context, e *Env) []Finding {
	const id = "daemon-log"
	since := time.Now().Add(-24 * time.Hour)
	var lines []string
	if ls, err := hostctl.Tail(e.Home.DaemonLog(), 20, "level=ERROR", 1<<20); err == nil {
		lines = append(lines, ls...)
	}
	if ls, err := e.Systemd.Journal(ctx, e.unit(), 20, since, "level=ERROR"); err == nil {
		lines = append(lines, ls...)
	}
	if len(lines) == 0 {
		return ok(id, "no errors in the daemon's log in the last day")
	}
	return []Finding{{ID: id, Severity: Warning, Summary: plural(len(lines), "error", "errors") + " in the daemon's log", Details: joinMax(lines[max(0, len(lines)-3):], 3)}}
}

func checkProviders(ctx context.Context, e *Env) []Finding {
	const id = "providers"
	db, err := e.Store(ctx)
	if err != nil {
		return ok(id, "not checked: the store cannot be read (see database, or cluster)")
	}
	ps, err := db.Providers(ctx)
	if err != nil {
		return ok(id, "not checked: the providers cannot be read (see database)")
	}
	keys := agent.Keys{Dir: e.Home.Keys()}
	var out []Finding
	n := 0
	for _, p := range ps {
		if p.Demo {
			continue
		}
		n++
		key, _ := keys.Get(p.ID)
		var hdr []string
		if key != "" {
			hdr = []string{"Authorization", "Bearer " + key}
		}
		url := strings.TrimSuffix(p.BaseURL, "/") + "/models"
		code, err := e.probe(ctx, url, hdr...)
		switch {
		case err != nil:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "provider " + p.ID + " cannot be reached", Details: opencode.Redacted(err.Error(), []string{key}) + "; check its URL and the network"})
		case code == 401 || code == 403:
			out = append(out, Finding{ID: id, Severity: Error, Summary: "provider " + p.ID + " refuses its key", Details: fmt.Sprintf("%s answered %d; give it a valid key", url, code)})
		case code >= 500:
			out = append(out, Finding{ID: id, Severity: Warning, Summary: fmt.Sprintf("provider %s answers %d", p.ID, code), Details: url})
		}
	}
	if len(out) == 0 && n == 0 {
		return ok(id, "no provider to reach but the built-in demo")
	}
	if len(out) == 0 {
		return ok(id, plural(n, "provider answers", "providers answer"))
	}
	return out
}

func checkServices(ctx context.Context, e *Env) []Finding {
	const id = "services"
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return ok(id, "not checked: the managed-host file is not valid (see host-file)")
	}
	store := snapshot.Store{Dir: e.Home.Snapshots()}
	var svcs []hostctl.Service
	for _, s := range c.Services {
		if s.Name != hostctl.Self.Name { // the daemon checks cover it
			svcs = append(svcs, s)
		}
	}
	n := len(svcs)
	found := make([][]Finding, n)
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			found[i] = e.checkService(ctx, store, s)
		}()
	}
	wg.Wait()
	var out []Finding
	for _, f := range found {
		out = append(out, f...)
	}
	if len(out) == 0 && n == 0 {
		return ok(id, "no managed service declared besides taosagent ("+e.Home.HostFile()+")")
	}
	if len(out) == 0 {
		return ok(id, plural(n, "managed service is up", "managed services are up")+", healthy, configs valid")
	}
	return out
}

// checkService checks one managed service: its unit, its health, its
// config files.
func (e *Env) checkService(ctx context.Context, store snapshot.Store, s hostctl.Service) []Finding {
	const id = "services"
	var out []Finding
	st, err := e.Systemd.Status(ctx, s.Unit)
	switch {
	case err != nil:
		out = append(out, Finding{ID: id, Severity: Warning, Summary: "service " + s.Name + ": its state cannot be read", Details: err.Error()})
	case st.LoadState == "not-found":
		out = append(out, Finding{ID: id, Severity: Error, Summary: "service " + s.Name + ": the unit " + s.Unit + " is not installed"})
	case st.ActiveState != "active":
		f := Finding{ID: id, Severity: Error, Summary: fmt.Sprintf("service %s is %s (%s)", s.Name, st.ActiveState, st.SubState), Recipe: "restart-service:" + s.Name}
		if ls, _ := e.Systemd.Journal(ctx, s.Unit, 3, time.Now().Add(-time.Hour), ""); len(ls) > 0 {
			f.Details = "its journal: " + joinMax(ls, 3)
		}
		out = append(out, f)
	case s.HealthURL != "":
		if code, err := e.probe(ctx, s.HealthURL); err != nil || code/100 != 2 {
			d := fmt.Sprintf("%s answered %d", s.HealthURL, code)
			if err != nil {
				d = s.HealthURL + ": no answer"
			}
			out = append(out, Finding{ID: id, Severity: Error, Summary: "service " + s.Name + " runs but is not healthy", Details: d, Recipe: "restart-service:" + s.Name})
		}
	}
	for _, f := range s.Configs {
		b, err := hostctl.ReadFile(f.Path, 16<<20)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, Finding{ID: id, Severity: Error, Summary: "service " + s.Name + ": its config " + f.Path + " is missing", Recipe: restoreRecipe(store, f.Path)})
			continue
		}
		if err == nil {
			err = hostctl.Validate(f.Format, b)
		}
		if err != nil {
			out = append(out, Finding{ID: id, Severity: Error, Summary: "service " + s.Name + ": its config " + f.Path + " does not parse", Details: err.Error(), Recipe: restoreRecipe(store, f.Path)})
		}
	}
	return out
}

// restoreRecipe is the recipe that restores path from a snapshot, "" when
// there is no snapshot of it.
func restoreRecipe(store snapshot.Store, path string) string {
	if list, _ := store.List(path); len(list) > 0 {
		return "restore-config:" + path
	}
	return ""
}

// checkRipgrep looks for rg on the PATH confined instances get: opencode's
// grep, glob and skill tools run it, and without it opencode downloads it
// at first use, which a confined instance cannot (no network).
func checkRipgrep(ctx context.Context, e *Env) []Finding {
	const id = "ripgrep"
	for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		if fi, err := os.Stat(filepath.Join(dir, "rg")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return ok(id, "ripgrep: "+filepath.Join(dir, "rg"))
		}
	}
	return []Finding{{ID: id, Severity: Warning, Summary: "ripgrep (rg) is not installed: agents' grep, glob and skill tools fail",
		Details: "opencode runs rg for them, and a confined agent cannot download it; install it: apt-get install ripgrep"}}
}

// checkMCPServers looks, for every local MCP server of the Library an
// agent is given, at what its start needs (daemon.mcpServers): the pinned
// version, its npm package installed, node under /usr, and each secret it
// names set. A server that cannot start is otherwise only an event at the
// agent's next turn.
func checkMCPServers(ctx context.Context, e *Env) []Finding {
	const id = "mcp-servers"
	as, notChecked := e.agentsFor(ctx, id)
	if notChecked != nil {
		return notChecked
	}
	store := library.Store{Dir: e.Home.Library()}
	pkgs := npmpkg.Installer{Root: e.Home.Packages()}
	keys := agent.Keys{Dir: e.Home.Keys()}
	var out []Finding
	n := 0
	for _, a := range as {
		for _, ref := range a.Library {
			p, err := library.ParseRef(ref)
			if err != nil || p.Kind != library.MCP {
				continue
			}
			n++
			what := fmt.Sprintf("agent %s's MCP server %s", a.Name, p.Name)
			it, err := store.Version(p.Kind, p.Name, p.Digest)
			if err != nil || it.MCP == nil {
				out = append(out, Finding{ID: id, Severity: Error, Summary: what + ": its pinned version cannot be read", Details: fmt.Sprint(err)})
				continue
			}
			if _, err := pkgs.Find(it.MCP.Package, lockOf(it)); it.MCP.Package != "" && err != nil {
				out = append(out, Finding{ID: id, Severity: Warning, Summary: what + ": its package " + it.MCP.Package + " is not installed",
					Details: "the daemon installs it at the server's first start (npm, from the registry); until then the agent's first turn may go without its tools"})
			}
			for _, s := range append(slices.Clone(it.MCP.Env), it.MCP.Headers...) {
				if v, _ := keys.Get(agent.MCPSecretID(p.Name, s)); v == "" {
					out = append(out, Finding{ID: id, Severity: Error, Summary: what + ": its secret " + s + " is not set: it cannot start",
						Details: fmt.Sprintf("a person sets it: taosagent library secret mcp/%s %s (the value on standard input)", p.Name, s)})
				}
			}
		}
	}
	if n > 0 {
		if node, err := exec.LookPath("node"); err != nil || !strings.HasPrefix(node, "/usr/") {
			out = append(out, Finding{ID: id, Severity: Error, Summary: "node is not installed under /usr: no local MCP server can start", Details: "apt-get install nodejs"})
		}
	}
	if len(out) == 0 {
		return ok(id, plural(n, "MCP server given to agents can start", "MCP servers given to agents can start"))
	}
	return out
}

// checkWorkspaces finds the workspaces that would stop their agent's
// start: gone, no longer a directory, or now reached through a link (the
// sandbox binds only what a person named).
func checkWorkspaces(ctx context.Context, e *Env) []Finding {
	const id = "workspaces"
	as, notChecked := e.agentsFor(ctx, id)
	if notChecked != nil {
		return notChecked
	}
	var out []Finding
	n := 0
	for _, a := range as {
		for _, w := range a.Workspaces {
			n++
			what := fmt.Sprintf("agent %s's workspace %s (%s)", a.Name, w.Name, w.Path)
			fi, err := os.Lstat(w.Path)
			real, rerr := filepath.EvalSymlinks(w.Path)
			switch {
			case err != nil:
				out = append(out, Finding{ID: id, Severity: Error, Summary: what + " is gone: the agent cannot start", Details: err.Error() +
					"; make the directory again, or give the agent its workspaces anew (PATCH /v1/agents/" + a.Name + ")"})
			case !fi.IsDir() || rerr != nil || real != w.Path:
				out = append(out, Finding{ID: id, Severity: Error, Summary: what + " is no longer a directory reached with no link: the agent cannot start",
					Details: "give the agent its workspaces anew, naming the directory itself"})
			}
		}
	}
	if len(out) == 0 {
		return ok(id, plural(n, "workspace given to agents is there", "workspaces given to agents are there"))
	}
	return out
}

// BackupStale is the age past which the last backup is a warning.
const BackupStale = 7 * 24 * time.Hour

// checkBackup reports the age of the home's last backup: none is said
// plainly (not every home needs one), an old one is a warning.
func checkBackup(ctx context.Context, e *Env) []Finding {
	const id = "backup"
	file, m, made := backup.Last(e.Home)
	if !made {
		return ok(id, "no backup has been made of this home (taosagent backup FILE makes one, the daemon running or not)")
	}
	age := time.Since(m.Created).Round(time.Minute)
	what := fmt.Sprintf("the last backup, %s, is %s old (the event log up to event %d)", file, age, m.Head)
	if age > BackupStale {
		return []Finding{{ID: id, Severity: Warning, Summary: what, Details: "taosagent backup FILE makes a new one"}}
	}
	return ok(id, what)
}

func checkSandbox(ctx context.Context, e *Env) []Finding {
	const id = "sandbox"
	if err := sandbox.New().Check(ctx); err != nil {
		return []Finding{{ID: id, Severity: Critical, Summary: "agents cannot run: their sandbox cannot be built", Details: err.Error()}}
	}
	return ok(id, "bubblewrap works")
}

func checkUnit(ctx context.Context, e *Env) []Finding {
	const id = "service-unit"
	st, err := e.Systemd.Status(ctx, e.unit())
	switch {
	case err != nil:
		return ok(id, "not checked: systemd cannot be reached here")
	case st.LoadState == "not-found":
		return []Finding{{ID: id, Severity: Warning, Summary: e.unit() + " is not installed: nothing restarts taosagent after a crash or a reboot", Recipe: "install-service"}}
	}
	return ok(id, e.unit()+" is installed ("+st.ActiveState+")")
}

// lockOf is the lockfile an item holds, or nil.
func lockOf(it library.Item) []byte {
	if b, ok := it.Files[library.LockFile]; ok {
		return b
	}
	return nil
}
