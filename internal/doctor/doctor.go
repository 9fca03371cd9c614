// Package doctor is taosagent's recovery: deterministic checks of the whole
// install (the home, the daemon, opencode, the database, the sandbox, the
// providers, the managed services) that need no daemon and no model, and
// vetted recipes that repair what they find. The CLI (`taosagent doctor`,
// `taosagent fix`) and the host assistant's `diagnose` tool run the same
// checks.
//
// Checks only read: the home directly (the database read-only, never
// migrated), /proc, systemd, and the network only for loopback probes and
// provider reachability, each with a short timeout.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// Severity is how bad a finding is.
type Severity int

// The severities, in order.
const (
	OK Severity = iota
	Warning
	Error
	Critical
)

var severityNames = []string{"ok", "warning", "error", "critical"}

func (s Severity) String() string { return severityNames[s] }

// ParseSeverity reads a severity's name.
func ParseSeverity(v string) (Severity, error) {
	if i := slices.Index(severityNames, v); i >= 0 {
		return Severity(i), nil
	}
	return OK, fmt.Errorf("severity %q: want ok, warning, error or critical", v)
}

// MarshalJSON writes the severity's name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity's name.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	x, err := ParseSeverity(v)
	*s = x
	return err
}

// Finding is what one check found. Recipe names the fix ("" when only a
// person can fix it; Details then say how).
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"`
	Details  string   `json:"details,omitempty"`
	Recipe   string   `json:"recipe,omitempty"`
}

// Env is what the checks look at.
type Env struct {
	Home home.Home
	// Postgres is the PostgreSQL database the daemon keeps its store in (serve
	// --db), "" for the home's SQLite file.
	Postgres string
	// Addr is the daemon's address (host:port): the recorded one when the
	// daemon runs, else what it would listen on.
	Addr     string
	Opencode string // the pinned opencode's binary, "" when none is installed
	// OpencodeErr says why there is no binary.
	OpencodeErr error
	// OpencodeVersion is the opencode version Opencode must be ("": the
	// pinned opencode.Version).
	OpencodeVersion string
	// OpencodeStamp is the file where the last successful verification of
	// the binary is recorded: an unchanged binary is not run again.
	OpencodeStamp string
	Systemd       hostctl.Systemd
	Unit          string        // taosagent's own systemd unit; default taosagent.service
	Timeout       time.Duration // of each probe; default 2 s
	// Self is the path of the taosagent binary (for recipes that start it).
	Self string
	// UnitDir is where install-service writes the unit; default the
	// system's (or the user's, when not root).
	UnitDir string
	// ContainerWait is how long unwedge-container waits for the container
	// to run and be healthy; default a minute.
	ContainerWait time.Duration
	// Sandbox runs rebuild-spa's builds; default a new one, with the
	// recovery CLI's build uid when root (hostid.RecoveryBuilds).
	Sandbox *sandbox.Sandbox

	once  sync.Once
	db    *eventlog.Log
	dbVer int64
	dbErr error

	pgOnce sync.Once
	pg     *pgstore.Reader
	pgErr  error
}

// store is what the checks read of the store, wherever it is.
type store interface {
	eventlog.Catalog
	eventlog.Notifications
}

// Store opens the store read-only, once: the PostgreSQL database of
// Postgres, else the home's SQLite file (DB).
func (e *Env) Store(ctx context.Context) (store, error) {
	if e.Postgres == "" {
		db, _, err := e.DB()
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	e.pgOnce.Do(func() { e.pg, e.pgErr = pgstore.OpenReader(ctx, e.Postgres) })
	if e.pgErr != nil {
		return nil, e.pgErr
	}
	return e.pg, nil
}

func (e *Env) timeout() time.Duration {
	if e.Timeout <= 0 {
		return 2 * time.Second
	}
	return e.Timeout
}

func (e *Env) unit() string {
	if e.Unit == "" {
		return "taosagent.service"
	}
	return e.Unit
}

// DB opens the event log read-only, once.
func (e *Env) DB() (*eventlog.Log, int64, error) {
	e.once.Do(func() { e.db, e.dbVer, e.dbErr = eventlog.OpenReadOnly(e.Home.DB()) })
	return e.db, e.dbVer, e.dbErr
}

// Close releases what the checks opened.
func (e *Env) Close() {
	if e.db != nil {
		e.db.Close()
	}
	if e.pg != nil {
		e.pg.Close()
	}
}

// Check is one check.
type Check struct {
	ID    string
	Title string
	Run   func(ctx context.Context, e *Env) []Finding
}

// Checks lists every check, in the order they are shown.
func Checks() []Check {
	return []Check{
		{"opencode", "the pinned opencode is installed and is the right version", checkOpencode},
		{"home", "the home and its secrets are private", checkHome},
		{"database", "the event log passes a read-only integrity check", checkDatabase},
		{"cluster", "on PostgreSQL: the database answers, its holder renews its hold, and the clocks agree", checkCluster},
		{"agents", "every agent's opencode config matches the database", checkAgents},
		{"host-file", "the managed-host declaration is valid", checkHostFile},
		{"daemon", "the daemon runs and answers", checkDaemon},
		{"stale-lock", "no record of a daemon that died", checkStaleLock},
		{"port", "the daemon's port is free or the daemon's", checkPort},
		{"leftovers", "no opencode of ours runs without a daemon", checkLeftovers},
		{"disk", "the home's filesystem has room", checkDisk},
		{"daemon-log", "no recent errors in the daemon's log", checkDaemonLog},
		{"providers", "every provider answers with its key", checkProviders},
		{"services", "every managed service is up, healthy, and its config parses", checkServices},
		{"ports", "who holds each port a managed service or container declares: its owner, a stale process of it, or another program", checkPorts},
		{"containers", "every managed container runs, is healthy, does not restart in a loop, and runs its pinned image", checkContainers},
		{"spa", "every web app serves the last build of its source", checkSPAs},
		{"sandbox", "the sandbox works (bubblewrap, user namespaces)", checkSandbox},
		{"ripgrep", "ripgrep is on the host for agents' search and skill tools", checkRipgrep},
		{"mcp-servers", "every MCP server an agent is given can start: its version, its package, node, its secrets", checkMCPServers},
		{"workspaces", "every workspace an agent is given is a directory, reached with no link", checkWorkspaces},
		{"notifications", "every channel's notifications are delivered, and Web Push can work", checkNotifications},
		{"backup", "the age of the home's last backup (taosagent backup FILE)", checkBackup},
		{"service-unit", "taosagent's systemd unit is installed and enabled", checkUnit},
	}
}

// Run runs the checks named in ids (all when empty), concurrently, and
// returns their findings in the checks' order. An unknown id is an error.
func Run(ctx context.Context, e *Env, ids ...string) ([]Finding, error) {
	all := Checks()
	var run []Check
	for _, id := range ids {
		i := slices.IndexFunc(all, func(c Check) bool { return c.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("unknown check %q (taosagent doctor --list)", id)
		}
		run = append(run, all[i])
	}
	if len(ids) == 0 {
		run = all
	}
	out := make([][]Finding, len(run))
	var wg sync.WaitGroup
	for i, c := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					out[i] = []Finding{{ID: c.ID, Severity: Error, Summary: "the check itself failed", Details: fmt.Sprint(p)}}
				}
			}()
			out[i] = c.Run(ctx, e)
		}()
	}
	wg.Wait()
	var fs []Finding
	for _, f := range out {
		fs = append(fs, f...)
	}
	return fs, nil
}

// Worst is the highest severity among fs.
func Worst(fs []Finding) Severity {
	w := OK
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

func ok(id, summary string) []Finding { return []Finding{{ID: id, Severity: OK, Summary: summary}} }

// probe GETs url and returns the status code (0 when nothing answered).
func (e *Env) probe(ctx context.Context, url string, header ...string) (int, error) {
	return hostctl.Probe(ctx, url, e.timeout(), header...)
}

// port is the daemon's port.
func (e *Env) port() string {
	_, p, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return ""
	}
	return p
}

// loopback is the daemon's address as a local client reaches it.
func (e *Env) loopback() string {
	h, p, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return e.Addr
	}
	if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func joinMax(items []string, n int) string {
	if len(items) > n {
		return strings.Join(items[:n], "; ") + fmt.Sprintf("; and %d more", len(items)-n)
	}
	return strings.Join(items, "; ")
}

// Fresh returns an Env that looks at the same install, with nothing opened
// yet: for checking again after a fix.
func (e *Env) Fresh() *Env {
	return &Env{Home: e.Home, Addr: e.Addr, Opencode: e.Opencode, OpencodeVersion: e.OpencodeVersion, OpencodeErr: e.OpencodeErr, OpencodeStamp: e.OpencodeStamp,
		Systemd: e.Systemd, Unit: e.Unit, Timeout: e.Timeout, Self: e.Self, UnitDir: e.UnitDir, ContainerWait: e.ContainerWait, Sandbox: e.Sandbox}
}
