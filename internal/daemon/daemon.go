// Package daemon is taosagent's daemon: Run wires the store, the
// supervisor, the runner, the gateway, the control service, the MCP server
// and the HTTP API together, serves until its context ends, and returns
// with every goroutine it started joined. It holds no policy of its own:
// each rule lives in the package that owns it (docs/ARCHITECTURE.md).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/catalog"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/hostops"
	"github.com/taosagent/taosagent/internal/httpapi"
	"github.com/taosagent/taosagent/internal/mcpbridge"
	"github.com/taosagent/taosagent/internal/mcpserver"
	"github.com/taosagent/taosagent/internal/notify"
	"github.com/taosagent/taosagent/internal/npmpkg"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/panel"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/schedule"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Config is how the daemon runs (taosagent serve's flags).
type Config struct {
	Home string // the taosagent home
	// DB is the PostgreSQL database's address (serve --db): "" keeps the
	// store in the home's SQLite file. Lease is how long the daemon's
	// hold on that database lasts unrenewed (default LeaseDefault).
	DB    string
	Lease time.Duration
	// Standby, with DB, waits for a database another daemon holds and
	// takes over once that daemon's lease lapsed, instead of refusing to
	// start.
	Standby bool
	// Cluster, with DB, makes the daemon one of several sharing the
	// database: each agent runs on one daemon at a time, through its
	// lease (internal/cluster). Labels ("k=v") are what pins may name.
	Cluster bool
	Labels  []string

	Listen       string // the API's address (loopback)
	PublicListen string // a second address for other machines ("": none)
	TLSCert      string // PublicListen's certificate and key ("": plain HTTP)
	TLSKey       string
	AllowHosts   []string // host names clients may use beyond IPs and localhost
	MaxConns     int      // client connections open at once, per listener (0: 512)

	IdleTimeout  time.Duration // stop an agent's opencode unused this long
	MaxRunning   int           // opencode instances at once
	Quantum      time.Duration // over the cap, a slot's turn (supervisor.Supervisor.Quantum)
	MemoryBudget int64         // bytes all instances may hold (0: supervisor.MemoryBudgetDefault)
	// Handover, when it receives, starts a planned restart (handover.go):
	// Run returns a *Handover to exec. HandoverWait bounds how long the
	// running turns are waited for first (default 2 min).
	Handover     <-chan struct{}
	HandoverWait time.Duration
	Retention    time.Duration // keep events this long (0: forever)
	// NotifyBackoff is the wait after a notification's first failed
	// delivery, doubled after each (default 5 s; tests lower it).
	NotifyBackoff time.Duration
	// ScheduleFloor is the shortest time between a schedule's slots
	// (default a minute; tests lower it).
	ScheduleFloor      time.Duration
	RawRetention       time.Duration // keep raw opencode events this long
	NoDemo             bool          // never offer the scripted demo provider
	DefaultDailyTokens int64         // the budget of an agent created through MCP (0: none may be)
	Unconfined         bool          // run instances on the host (an operator's explicit choice)
	UIDBase            int           // the agents' first host uid (0: hostid.DefaultBase)

	Systemctl, Journalctl string   // what the managed-host tools run ("": systemctl, journalctl)
	SystemdEnv            []string // their environment (the test stand-in's state)

	ModelsSync        time.Duration // how often LiteLLM agents' models are synced (0: at start and on demand)
	LLMConnectTimeout time.Duration
	LLMHeaderTimeout  time.Duration
	LLMStallTimeout   time.Duration

	// Opencode returns the pinned opencode binary of home dir, installing
	// it if needed; Release the installed release to switch to.
	Opencode func(ctx context.Context, dir string) (path, version string, err error)
	Release  func(ctx context.Context, dir string) (path, version string, err error)

	Version string       // taosagent's
	Logger  *slog.Logger // the daemon's log
	Stdout  io.Writer    // where the listening line goes
}

// group runs goroutines and waits for them.
// Run runs the daemon until ctx ends or its listener fails, and returns
// when everything it started has stopped: the listeners served, the
// workers (retention, model sync), the instances.
//
// It is long by design: the wiring, in the order the parts depend on each
// other, each made once and handed on, its closing deferred where it is
// made. What holds a decision is a function of its own (confine,
// servePublic) or lives in its package (the gateway's hooks and the
// egress proxy's policy: control.WatchGateway, control.EgressProxy).
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	logger := cfg.Logger
	// The listeners' goroutines end when their servers close (deferred
	// below, each where its server is made); they are waited for last.
	var servers sync.WaitGroup
	defer servers.Wait()
	h := home.Home{Dir: cfg.Home}
	if err := h.Create(); err != nil {
		return err
	}
	unlock, err := h.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	token, err := h.EnsureToken()
	if err != nil {
		return err
	}
	bin, ocVersion, err := cfg.Opencode(ctx, h.Dir)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, h, logger)
	if err != nil {
		return err
	}
	handingOver := false
	defer func() { st.stop(!handingOver) }()
	var log eventlog.Store = st

	sup, err := supervisor.New(bin, h.Run())
	if err != nil {
		return err
	}
	sup.Version = ocVersion
	sup.MaxRunning, sup.Quantum, sup.MemoryBudget, sup.Logger = cfg.MaxRunning, cfg.Quantum, cfg.MemoryBudget, logger
	sup.Detached = true // the instances outlive a crash, or a hand-over, of the daemon
	if total, _, err := supervisor.Meminfo(); err == nil && sup.MemoryBudget <= 0 {
		sup.MemoryBudget = supervisor.MemoryBudgetDefault(total)
	}
	agentUIDs, buildIDs, err := confine(ctx, cfg, sup)
	if err != nil {
		return err
	}
	defer sup.Close()
	if sup.Sandbox != nil {
		// The idmapped mounts of workspaces are staged in the home; what a
		// daemon that died while staging left there goes now, and the
		// staging directory's own mount when this daemon ends.
		sup.Sandbox.StageDir = h.Binds()
		if err := sup.Sandbox.SweepBinds(); err != nil {
			cfg.Logger.Error("release staged workspace mounts", "err", err)
		}
		defer sup.Sandbox.SweepBinds()
	}

	// The demo provider: the scripted model on a loopback port of its own.
	demoURL := ""
	if !cfg.NoDemo {
		url, stop, err := demoModel(&servers)
		if err != nil {
			return err
		}
		defer stop()
		demoURL = url
	}
	// The listener comes first: agents are given its address for taosagent's
	// MCP tools.
	tln, err := listen(cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// A bounded number of connections: idle or slow ones cannot pile up.
	ln := netutil.LimitListener(tln, cfg.MaxConns)
	keys := agent.Keys{Dir: h.Keys()}
	mcpSrv := &mcpserver.Server{OperatorToken: token, Version: cfg.Version, Logger: logger, URL: loopbackURL(ln.Addr()) + "/mcp", Keys: &keys}
	// Agents reach their models through the gateway, each with a key of its
	// own; the upstreams' keys stay with the daemon.
	keyring := &gateway.Keyring{Log: log, Home: h}
	llmURL := loopbackURL(ln.Addr()) + "/llm/v1"
	// Agents' own MCP servers run only where each has a door to be
	// reached at and a host uid of its own: a confined daemon as root.
	var bridge *mcpbridge.Bridge
	var serverURL func(agent, name string) opencode.MCPServer
	ms := &mcpServers{home: h, log: log, keys: keys, sandbox: sup.Sandbox, packages: &npmpkg.Installer{Root: h.Packages()}}
	if sup.Sandbox != nil && agentUIDs != nil {
		ms.uids = *agentUIDs
		bridge = &mcpbridge.Bridge{Lookup: ms.lookup, Failed: ms.failed, Idle: cfg.IdleTimeout, Logger: logger}
		defer bridge.Close()
		serverURL = func(_, name string) opencode.MCPServer {
			// The first request starts the server, its package installed
			// if it is not yet.
			return opencode.MCPServer{URL: loopbackURL(ln.Addr()) + "/mcp/" + name, TimeoutMS: 30000}
		}
	}
	var here func(string) bool
	var elsewhere func(string) string
	var forward func(context.Context, string, []byte) ([]byte, string, string, error)
	if st.cluster != nil {
		st.cluster.Self.Slots = sup.MaxRunning
		here, elsewhere, forward = st.cluster.Here, st.cluster.Owner, st.cluster.Forward
	}
	mgr := runner.New(runner.Config{Home: h.Dir, Store: log, Instances: runner.Supervised(sup), Keys: keys, Predecessor: st.predecessor,
		Here: here, Elsewhere: elsewhere, Forward: forward,
		IdleTimeout: cfg.IdleTimeout, DemoURL: demoURL, Logger: logger, TaosTools: mcpSrv.AgentServer, UIDs: agentUIDs, MCPServers: serverURL,
		ToolModules: func() (string, error) {
			// Installed when a person adds or accepts a tool.
			p, err := ms.packages.Find(opencode.PluginPackage, nil)
			if err != nil {
				return "", fmt.Errorf("not installed (it is when a person adds or accepts a tool item): %w", err)
			}
			return filepath.Join(p.Dir, "node_modules"), nil
		},
		Gateway: func(ctx context.Context, agent string) (string, string, error) {
			key, err := keyring.Ensure(ctx, agent)
			return llmURL, key, err
		}})
	ms.event = func(name string, kind event.Kind, data any) {
		log.AppendAsync([]event.Event{mgr.TurnEvent(context.Background(), name, kind, data)}, nil)
	}
	gw := &gateway.Gateway{Log: log, Keys: keys, DemoURL: demoURL, Logger: logger,
		ConnectTimeout: cfg.LLMConnectTimeout, HeaderTimeout: cfg.LLMHeaderTimeout, StallTimeout: cfg.LLMStallTimeout}
	keyring.Issued = gw.Invalidate
	if n := scrubAgentConfigs(h, keys); n > 0 {
		logger.Info("removed agent configs written before the gateway; each is written afresh at its agent's next start", "configs", n)
	}
	sysd := hostctl.Systemd{Systemctl: cfg.Systemctl, Journalctl: cfg.Journalctl}
	sysd.Env = cfg.SystemdEnv
	cat := &catalog.Catalog{Home: h.Dir, Log: log, Keys: keys, Forget: mgr.Forget}
	ctl := &control.Service{Log: log, Runner: mgr, Catalog: cat, Home: h.Dir, Keys: keys,
		Version: cfg.Version, Logger: logger, Secrets: []string{token},
		Deleted: mcpSrv.Revoke, Keyring: keyring, Changed: gw.Invalidate, Scope: gw.Scope}
	ctl.Packages = func(ctx context.Context, spec string, lock []byte) error {
		_, err := ms.packages.Ensure(ctx, spec, lock)
		return err
	}
	ctl.Scheduler = &schedule.Scheduler{Store: log, Queued: mgr.Queued, Logger: logger}
	ctl.ScheduleFloor = cfg.ScheduleFloor
	vapid, err := notify.LoadVAPID(h.Dir)
	if err != nil {
		return fmt.Errorf("the Web Push keys: %w", err)
	}
	ctl.Notifier = &notify.Notifier{Store: log, Home: h.Dir, VAPID: vapid, Logger: logger, Redact: ctl.Redact, Backoff: cfg.NotifyBackoff}
	ctl.WatchGateway(gw)
	ctl.WatchRunner()
	if cfg.DefaultDailyTokens > 0 {
		ctl.DefaultBudget = &agent.Budget{DailyTokens: cfg.DefaultDailyTokens}
	}
	self, _ := os.Executable()
	ctl.Opencode = func(ctx context.Context) (string, error) {
		if os.Getenv("TAOSAGENT_OPENCODE") != "" {
			return "", errors.New("the daemon runs the binary TAOSAGENT_OPENCODE names; unset it to switch releases")
		}
		path, version, err := cfg.Release(ctx, h.Dir)
		if err != nil {
			return "", err
		}
		sup.Use(path, version)
		logger.Info("opencode release switched; each agent moves to it between two of its turns", "version", version, "path", path)
		return version, nil
	}
	mcpSrv.Control = ctl
	apps := &appgate.Gate{Control: ctl, BuildIDs: buildIDs}
	mcpSrv.Apps = apps
	mcpSrv.Host = &hostops.Ops{Control: ctl, HostFile: h.HostFile(), Systemd: sysd, Snapshots: snapshot.Store{Dir: h.Snapshots()},
		Doctor: func() *doctor.Env {
			return &doctor.Env{Home: h, Addr: ln.Addr().String(), Opencode: bin, OpencodeVersion: ocVersion, OpencodeStamp: h.OpencodeStamp(), Systemd: sysd, Self: self}
		}}
	mcpHandler := mcpSrv.Handler()
	if sup.Sandbox != nil {
		if os.Geteuid() == 0 {
			// Each instance in a network namespace of its own; its door
			// serves the gateway, the MCP tools and the egress proxy.
			proxy := ctl.EgressProxy()
			ms.egress = proxy
			routes := door.Routes{LLM: gw, MCP: mcpHandler, Proxy: proxy}
			if bridge != nil {
				routes.Servers = bridge.Handler(func(r *http.Request) (string, bool) { return door.Agent(r.Context()) })
			}
			sup.Doors = &supervisor.Doors{Handler: routes.For, DaemonURL: loopbackURL(ln.Addr())}
			// The agents' tools reach the proxy alone, through a relay
			// that is this binary.
			if self, err := os.Executable(); err == nil {
				sup.Doors.ToolProxy, sup.Doors.Relay = routes.ToolsFor, self
			} else {
				logger.Warn("agents' tools get no network: this binary's path is unknown", "err", err)
			}
		} else {
			logger.Warn("opencode instances share the host's network: a network namespace of their own needs the daemon to run as root")
		}
	}
	// What an earlier run left running goes on: its instances are taken
	// over (their turns' events then resume), or stopped when they are
	// not ours any more.
	adopted, killed, err := sup.Adopt()
	if err != nil {
		logger.Warn("the record of running opencode processes could not be read; none adopted", "err", err)
	}
	if len(adopted) > 0 || len(killed) > 0 {
		logger.Info("opencode processes left by an earlier run", "adopted", adopted, "stopped", killed)
	}
	created, err := cat.EnsureBuiltins(ctx, !cfg.NoDemo)
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	defer mgr.Close()
	if st.cluster != nil {
		ctl.Cluster = st.cluster
		// The agents this daemon owns are taken (again, within their
		// leases: their instances adopted), and what an earlier run left
		// of agents it owns no more is stopped.
		st.cluster.Step(ctx, mgr)
		for _, name := range adopted {
			if !st.cluster.Here(name) {
				sup.Stop(name)
			}
		}
	}

	api := &httpapi.Server{Log: log, StoreProblem: st.Problem, Runner: mgr, Control: ctl, Apps: apps, MCP: mcpHandler, LLM: gw, Token: token, Version: cfg.Version, Logger: logger, Hosts: cfg.AllowHosts,
		Sessions: &panel.Sessions{Token: token, Secure: cfg.TLSCert != ""}}
	handler := api.Handler()
	srv := httpapi.HTTPServer(handler, logger)
	var pln *net.TCPListener // the public listener, if any
	var psrv *httpapi.Served
	var publicLn net.Listener
	if cfg.PublicListen != "" {
		pln, publicLn, psrv, err = servePublic(cfg, handler, &servers)
		if err != nil {
			return err
		}
		defer psrv.Close()
	}
	os.Unsetenv(listenFDsEnv) // taken: nothing started from here inherits it
	stopping := os.Getenv(stopEnv) != ""
	os.Unsetenv(stopEnv)
	if err := h.Record(home.Daemon{PID: os.Getpid(), Addr: ln.Addr().String(), Version: cfg.Version, Started: time.Now().UTC(), UIDBase: cfg.UIDBase}); err != nil {
		logger.Warn("the daemon's address could not be recorded in the home", "err", err)
	}
	defer os.Remove(h.DaemonFile()) // a clean stop leaves no record; a kill -9 does
	if n, err := doctor.ImportAudit(ctx, h, log); err != nil {
		logger.Warn("the recovery audit could not be merged into the audit", "err", err)
	} else if n > 0 {
		logger.Info("merged the recovery audit into the audit", "entries", n)
	}
	serveErr := make(chan error, 1)
	servers.Go(func() { serveErr <- srv.Serve(ln) })

	fmt.Fprintf(cfg.Stdout, "taosagent %s listening on http://%s (token: %s)\n", cfg.Version, ln.Addr(), h.TokenFile())
	if ps, _ := cat.Providers(ctx); len(ps) == 1 && ps[0].Demo {
		fmt.Fprintln(cfg.Stdout, "No model provider is configured: agents use the built-in scripted DEMO provider,\n"+
			"a test stand-in that is not an AI. Try:  taosagent chat host 'hello'\n"+
			"Add a real provider with POST /v1/providers, then point host at it with PATCH /v1/agents/host.")
	}
	for _, c := range created {
		logger.Info("created built-in " + c)
	}
	// The workers end, and are waited for, before anything they use closes.
	wctx, stopWorkers := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer func() { stopWorkers(); workers.Wait() }()
	// The work done for every agent: on one daemon of a cluster, the
	// one holding its lease.
	shared := func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { prune(ctx, log, cfg.Retention, cfg.RawRetention, logger) })
		wg.Go(func() { ctl.Scheduler.Run(ctx) })
		wg.Go(func() { ctl.WatchTasks(ctx) })
		wg.Go(func() { ctl.Notifier.Run(ctx) })
		wg.Wait()
	}
	if st.cluster != nil {
		st.cluster.Workers = shared
		workers.Go(func() { st.cluster.Run(wctx, mgr) })
	} else {
		workers.Go(func() { shared(wctx) })
	}
	if cfg.ModelsSync > 0 {
		workers.Go(func() { syncModels(wctx, ctl, cfg.ModelsSync, logger) })
	}

	var handover *Handover
	var lost error
	select {
	case err := <-serveErr:
		return err
	case lost = <-st.lost:
		logger.Error("stopping: this daemon no longer holds its database", "err", lost)
	case <-ctx.Done():
		logger.Info("stopping")
	case <-stopAtOnce(stopping):
		logger.Info("stopping: a stop came as the earlier program handed over")
	case <-cfg.Handover:
		if handover, err = handOver(cfg, mgr, tln, pln); err != nil {
			logger.Error("the hand-over failed; stopping instead", "err", err)
			handover = nil
		}
	}
	// Requests under way are answered, none is dropped (event streams end
	// at once: their clients resume by cursor); a hand-over's listeners
	// stay open meanwhile, new connections waiting in their backlog.
	api.EndStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ends sync.WaitGroup
	ends.Go(func() { srv.End(sctx, ln) })
	if psrv != nil {
		ends.Go(func() { psrv.End(sctx, publicLn) })
	}
	ends.Wait()
	if handover != nil && ctx.Err() != nil {
		// A stop came during the hand-over: it wins, and stops everything.
		logger.Info("stopping: a stop came during the hand-over")
		handover = nil
	}
	if handover != nil {
		sup.Detach()
		handingOver = true // the next program takes the same lease
		logger.Info("handing over now")
		return handover
	}
	return lost
}

// handOver prepares a planned restart (handover.go): no turn starts, the
// running ones end (for at most cfg.HandoverWait: those still running then
// end as a restart ends them), and the listeners' sockets are kept for the
// next program. Run detaches the instances last, unless a stop came
// meanwhile.
func handOver(cfg Config, mgr *runner.Manager, lns ...*net.TCPListener) (*Handover, error) {
	cfg.Logger.Info("a planned restart: finishing the running turns, then handing over", "wait", cfg.HandoverWait)
	if err := ignoreHangups(); err != nil {
		return nil, fmt.Errorf("ignoring SIGHUP across the hand-over: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.HandoverWait)
	defer cancel()
	if err := mgr.Quiesce(ctx); err != nil {
		cfg.Logger.Warn("turns still running are cut by the hand-over", "err", err)
	}
	h := &Handover{}
	for k, addr := range []string{cfg.Listen, cfg.PublicListen} {
		if lns[k] != nil {
			if err := h.keep(addr, lns[k]); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// syncModels syncs, every period, the permitted models of every agent on
// a LiteLLM proxy with what its key may access, until ctx is done.
func syncModels(ctx context.Context, ctl *control.Service, period time.Duration, logger *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		as, err := ctl.Log.Agents(ctx)
		if err != nil {
			continue
		}
		for _, a := range as {
			s, err := ctl.SyncModels(ctx, control.Actor{Kind: control.Daemon, Channel: "sync"}, a.Name)
			switch {
			case agent.IsInvalid(err):
				// not on a LiteLLM proxy
			case err != nil:
				logger.Warn("an agent's models could not be synced with its key's scope", "agent", a.Name, "err", err)
			case s.Changed:
				logger.Info("an agent's models follow its key's scope", "agent", a.Name, "added", s.Added, "removed", s.Removed, "model", s.Model)
			}
		}
	}
}

// scrubAgentConfigs removes every agent's opencode config that holds an
// upstream provider's key (written by a version before the gateway): no
// such key may stay in an agent's reach. The supervisor writes each config
// afresh, with the agent's gateway key, at the agent's next start.
func scrubAgentConfigs(h home.Home, keys agent.Keys) int {
	// Upstream keys only: an agent's MCP token is its config's to hold.
	secrets := keys.AllBut(agent.MCPTokenPrefix)
	ents, _ := os.ReadDir(h.Agents())
	n := 0
	for _, e := range ents {
		path := h.AgentConfig(e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, k := range secrets {
			if len(k) >= 4 && strings.Contains(string(b), k) {
				if os.Remove(path) == nil {
					n++
				}
				break
			}
		}
	}
	return n
}

// loopbackURL is how a local client reaches addr: an unspecified address
// (0.0.0.0, ::) is reached on loopback.
func loopbackURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// prune applies retention hourly.
func prune(ctx context.Context, log eventlog.Store, keep, keepRaw time.Duration, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		before := time.Time{}
		if keep > 0 {
			before = time.Now().Add(-keep)
		}
		if n, err := log.Prune(ctx, before, time.Now().Add(-keepRaw)); err != nil && ctx.Err() == nil {
			logger.Warn("retention", "err", err)
		} else if n > 0 {
			logger.Info("retention removed old events", "events", n)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// UserName names the user this process runs as.
func UserName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// defaults fills the zero fields that have one.
func (c *Config) defaults() {
	if c.Lease <= 0 {
		c.Lease = LeaseDefault
	}
	if c.HandoverWait <= 0 {
		c.HandoverWait = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 512
	}
	if c.UIDBase <= 0 {
		c.UIDBase = hostid.DefaultBase
	}
	if c.Systemctl == "" {
		c.Systemctl = "systemctl"
	}
	if c.Journalctl == "" {
		c.Journalctl = "journalctl"
	}
}

// confine gives sup its sandbox unless the operator said --unconfined
// and, when the daemon is root, the ranges of host ids: the agents' (one
// each, stored) and the builds' (one each while it runs), checked against
// the host's users and subordinate ranges.
func confine(ctx context.Context, cfg Config, sup *supervisor.Supervisor) (agentUIDs *hostid.Range, buildIDs *hostid.Pool, err error) {
	if cfg.Unconfined {
		cfg.Logger.Warn("opencode instances and their tools run UNCONFINED, on the host as " + UserName() + ": --unconfined")
	} else {
		sup.Sandbox = sandbox.New()
		if os.Geteuid() == 0 {
			// A host uid per agent, and one per build while it runs:
			// nobody else's, checked against the host's users and
			// subordinate ranges.
			for _, r := range []hostid.Range{hostid.Agents(cfg.UIDBase), hostid.Builds(cfg.UIDBase)} {
				if err := r.Check(); err != nil {
					return nil, nil, fmt.Errorf("%w; choose another --uid-base", err)
				}
			}
			uids := hostid.Agents(cfg.UIDBase)
			agentUIDs = &uids
			buildIDs = &hostid.Pool{Range: hostid.DaemonBuilds(cfg.UIDBase)}
		}
		if err := sup.Sandbox.Check(ctx); err != nil {
			// Not fatal: the API, the log and the recovery tools still
			// work; each turn ends with this error until it is fixed.
			cfg.Logger.Error("agents cannot start: their sandbox cannot be built", "err", err)
		}
	}
	return agentUIDs, buildIDs, nil
}

// demoModel serves the scripted model on a loopback port of its own, on
// a goroutine of servers, until stop.
func demoModel(servers *sync.WaitGroup) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	model := &http.Server{Handler: &scriptedmodel.Server{}, ReadHeaderTimeout: 10 * time.Second}
	servers.Go(func() { model.Serve(ln) })
	return "http://" + ln.Addr().String() + "/v1", func() { model.Close() }, nil
}

// servePublic serves handler on cfg.PublicListen (TLS, or plain HTTP when
// the operator said so), on a goroutine of servers, until psrv ends: tln
// is the socket (a hand-over keeps it), pln the listener psrv serves.
func servePublic(cfg Config, handler http.Handler, servers *sync.WaitGroup) (tln *net.TCPListener, pln net.Listener, psrv *httpapi.Served, err error) {
	tln, err = listen(cfg.PublicListen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen on %s: %w", cfg.PublicListen, err)
	}
	pln = netutil.LimitListener(tln, cfg.MaxConns)
	psrv = httpapi.HTTPServer(handler, cfg.Logger)
	if cfg.TLSCert != "" {
		servers.Go(func() {
			if err := psrv.ServeTLS(pln, cfg.TLSCert, cfg.TLSKey); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("the public listener stopped", "addr", pln.Addr().String(), "err", err)
			}
		})
		fmt.Fprintf(cfg.Stdout, "taosagent also serving the panel and the API on https://%s (TLS)\n", pln.Addr())
	} else {
		servers.Go(func() { psrv.Serve(pln) })
		cfg.Logger.Warn("the panel and the API are served WITHOUT TLS on an address other machines may reach: --insecure-public-http", "addr", pln.Addr().String())
		fmt.Fprintf(cfg.Stdout, "taosagent also serving the panel and the API on http://%s (NO TLS: --insecure-public-http)\n", pln.Addr())
	}
	return tln, pln, psrv, nil
}
