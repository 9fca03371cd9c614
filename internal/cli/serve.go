package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/gateway"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/httpapi"
	"github.com/taosagent/taosagent/internal/mcpserver"
	"github.com/taosagent/taosagent/internal/panel"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// defaultListen is $TAOSAGENT_LISTEN, else 127.0.0.1:7077.
func defaultListen() string {
	if l := os.Getenv("TAOSAGENT_LISTEN"); l != "" {
		return l
	}
	return "127.0.0.1:7077"
}

// runServe runs the daemon until SIGINT or SIGTERM.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("serve", stderr)
	homeDir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	listen := fs.String("listen", defaultListen(), "address of the HTTP API (env TAOSAGENT_LISTEN)")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "stop an agent's opencode after this long unused")
	maxRunning := fs.Int("max-running", 8, "most opencode instances running at once; the least recently used stops")
	retention := fs.Duration("retention", 90*24*time.Hour, "keep events this long (0: forever)")
	rawRetention := fs.Duration("raw-retention", 24*time.Hour, "keep raw opencode events this long")
	noDemo := fs.Bool("no-demo", false, "never offer the scripted demo provider")
	defaultTokens := fs.Int64("default-daily-tokens", 0, "the daily token budget of an agent created through MCP (0: none may be created there; a person creates agents through the API)")
	unconfined := fs.Bool("unconfined", false, "run every opencode and its tools on the host, outside the sandbox (not recommended)")
	uidBase := fs.Int("uid-base", hostid.DefaultBase, "the first host uid of agents' instances (each its own; builds take theirs from right after the agents' 65536)")
	verbose := fs.Bool("verbose", false, "log at debug level")
	maxConns := fs.Int("max-conns", 512, "most client connections open at once")
	systemctl := fs.String("systemctl", "systemctl", "the systemctl the managed-host tools run")
	journalctl := fs.String("journalctl", "journalctl", "the journalctl the managed-host tools run")
	modelsSync := fs.Duration("models-sync", 5*time.Minute, "how often the permitted models of agents on a LiteLLM proxy are synced with their keys' scope (0: only at start and on demand)")
	llmConnect := fs.Duration("llm-connect-timeout", 30*time.Second, "the model gateway's bound on connecting to an upstream")
	llmHeader := fs.Duration("llm-header-timeout", 5*time.Minute, "the model gateway's bound on an upstream's time to its first byte")
	llmStall := fs.Duration("llm-stall-timeout", 5*time.Minute, "the model gateway ends an upstream response silent this long")
	hosts := &listFlag{}
	fs.Var(hosts, "allow-host", "a host name clients may use to reach the API, beyond IP addresses and localhost (repeatable)")
	public := fs.String("public-listen", "", "a second address serving the panel and the API to other machines (a phone on the LAN): needs --tls-cert and --tls-key, or --insecure-public-http")
	tlsCert := fs.String("tls-cert", "", "the certificate (PEM, with its chain) of --public-listen")
	tlsKey := fs.String("tls-key", "", "the private key (PEM) of --tls-cert")
	insecure := fs.Bool("insecure-public-http", false, "allow plain HTTP on an address other machines reach (only behind a reverse proxy on this host that terminates TLS)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := exposure(*listen, *public, *tlsCert, *tlsKey, *insecure); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	h := home.Home{Dir: *homeDir}
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
	bin, ocVersion, err := ensureOpencode(ctx, h.Dir, stderr)
	if err != nil {
		return err
	}
	log, err := eventlog.Open(h.DB())
	if err != nil {
		return err
	}
	defer log.Close()

	sup, err := supervisor.New(bin, h.Run())
	if err != nil {
		return err
	}
	sup.Version = ocVersion
	sup.MaxRunning, sup.Logger = *maxRunning, logger
	var agentUIDs *hostid.Range
	var buildIDs *hostid.Pool
	if *unconfined {
		logger.Warn("opencode instances and their tools run UNCONFINED, on the host as " + userName() + ": --unconfined")
	} else {
		sup.Sandbox = sandbox.New()
		if os.Geteuid() == 0 {
			// A host uid per agent, and one per build while it runs:
			// nobody else's, checked against the host's users and
			// subordinate ranges.
			for _, r := range []hostid.Range{hostid.Agents(*uidBase), hostid.Builds(*uidBase)} {
				if err := r.Check(); err != nil {
					return fmt.Errorf("%w; choose another --uid-base", err)
				}
			}
			uids := hostid.Agents(*uidBase)
			agentUIDs = &uids
			buildIDs = &hostid.Pool{Range: hostid.Builds(*uidBase)}
		}
		if err := sup.Sandbox.Check(ctx); err != nil {
			// Not fatal: the API, the log and the recovery tools still
			// work; each turn ends with this error until it is fixed.
			logger.Error("agents cannot start: their sandbox cannot be built", "err", err)
		}
	}
	if killed, err := sup.Sweep(); err == nil && len(killed) > 0 {
		logger.Info("stopped opencode processes left by an earlier run", "pids", killed)
	}
	defer sup.Close()

	// The demo provider: the scripted model on a loopback port of its own.
	demoURL := ""
	if !*noDemo {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		model := &http.Server{Handler: &scriptedmodel.Server{}, ReadHeaderTimeout: 10 * time.Second}
		go model.Serve(ln)
		defer model.Close()
		demoURL = "http://" + ln.Addr().String() + "/v1"
	}
	// The listener comes first: agents are given its address for taosagent's
	// MCP tools.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	// A bounded number of connections: idle or slow ones cannot pile up.
	ln = netutil.LimitListener(ln, *maxConns)
	mcpSrv := &mcpserver.Server{OperatorToken: token, Version: Version, Logger: logger, URL: loopbackURL(ln.Addr()) + "/mcp"}
	keys := agent.Keys{Dir: h.Keys()}
	// Agents reach their models through the gateway, each with a key of its
	// own; the upstreams' keys stay with the daemon.
	keyring := &gateway.Keyring{Log: log, Home: h}
	llmURL := loopbackURL(ln.Addr()) + "/llm/v1"
	var ctl *control.Service // the runner's hooks call it; set below
	daemon := control.Actor{Kind: control.Daemon, Channel: "sync"}
	mgr := runner.New(runner.Config{Home: h.Dir, Log: log, Sup: sup, Keys: keys,
		IdleTimeout: *idle, DemoURL: demoURL, Logger: logger, TaosTools: mcpSrv.AgentServer, UIDs: agentUIDs,
		Gateway: func(ctx context.Context, agent string) (string, string, error) {
			key, err := keyring.Ensure(ctx, agent)
			return llmURL, key, err
		},
		Sync: func(ctx context.Context, name string) (agent.Agent, error) {
			if _, err := ctl.SyncModels(ctx, daemon, name); err != nil && !agent.IsInvalid(err) {
				return agent.Agent{}, err
			}
			return log.Agent(ctx, name)
		},
		OnModelSwitch: func(name, from, to string) {
			if err := ctl.ModelSwitched(context.Background(), name, from, to); err != nil {
				logger.Warn("a model switch made in opencode was refused", "agent", name, "from", from, "to", to, "err", err)
			} else {
				logger.Info("a model switch made in opencode is now the agent's model", "agent", name, "from", from, "to", to)
			}
		}})
	gw := &gateway.Gateway{Log: log, Keys: keys, DemoURL: demoURL, Logger: logger,
		ConnectTimeout: *llmConnect, HeaderTimeout: *llmHeader, StallTimeout: *llmStall, OnCall: func(c gateway.Call) {
			// One usage event per call, in the agent's log.
			e := mgr.TurnEvent(context.Background(), c.Agent, event.Usage, event.UsageData{Input: int(c.InputTokens), Output: int(c.OutputTokens),
				Cost: c.Cost, Model: c.Model, Source: "gateway"})
			log.AppendAsync([]event.Event{e}, nil)
		}}
	keyring.Issued = gw.Invalidate
	gw.OnFallback = func(name, from, to, reason string) {
		// The turn says which model answered: a model.switched event, and
		// an audit entry.
		e := mgr.TurnEvent(context.Background(), name, event.ModelSwitched, event.ModelSwitchedData{From: from, To: to, Reason: reason, Source: "gateway"})
		log.AppendAsync([]event.Event{e}, nil)
		log.Audit(context.Background(), eventlog.AuditEntry{Actor: "gateway", Action: "gateway.fallback", Tier: "write", Target: name,
			Phase: "outcome", Outcome: "ok", Detail: from + " → " + to + ": " + reason})
		logger.Warn("an agent's upstream failed; its fallback answered", "agent", name, "from", from, "to", to, "reason", reason)
	}
	gw.OnSoftLimit = func(name, what string) {
		// An event in the agent's log, and an audit entry.
		e := mgr.TurnEvent(context.Background(), name, event.Usage, event.UsageData{Source: "gateway", Warning: "budget: " + what})
		log.AppendAsync([]event.Event{e}, nil)
		log.Audit(context.Background(), eventlog.AuditEntry{Actor: "gateway", Action: "budget.soft", Tier: "write", Target: name,
			Phase: "outcome", Outcome: "ok", Detail: what})
		logger.Warn("an agent passed the soft share of its budget", "agent", name, "budget", what)
	}
	if n := scrubAgentConfigs(h, keys); n > 0 {
		logger.Info("removed agent configs written before the gateway; each is written afresh at its agent's next start", "configs", n)
	}
	sysd := hostctl.Systemd{Systemctl: *systemctl, Journalctl: *journalctl}
	if *systemctl != "systemctl" {
		sysd.Env = standInEnv() // the test stand-in's state
	}
	ctl = &control.Service{Log: log, Runner: mgr, Home: h.Dir, Keys: keys, Snapshots: snapshot.Store{Dir: h.Snapshots()},
		HostFile: h.HostFile(), Systemd: sysd, Version: Version, Logger: logger, Secrets: []string{token},
		Deleted: mcpSrv.Revoke, Keyring: keyring, Changed: gw.Invalidate, Scope: gw.Scope, BuildIDs: buildIDs}
	if *defaultTokens > 0 {
		ctl.DefaultBudget = &agent.Budget{DailyTokens: *defaultTokens}
	}
	self, _ := os.Executable()
	ctl.Opencode = func(ctx context.Context) (string, error) {
		if os.Getenv("TAOSAGENT_OPENCODE") != "" {
			return "", errors.New("the daemon runs the binary TAOSAGENT_OPENCODE names; unset it to switch releases")
		}
		path, version, err := opencodeBinary(ctx, h.Dir)
		if err != nil {
			return "", err
		}
		sup.Use(path, version)
		logger.Info("opencode release switched; each agent moves to it between two of its turns", "version", version, "path", path)
		return version, nil
	}
	ctl.Doctor = func() *doctor.Env {
		return &doctor.Env{Home: h, Addr: ln.Addr().String(), Opencode: bin, OpencodeVersion: ocVersion, OpencodeStamp: h.OpencodeStamp(), Systemd: sysd, Self: self}
	}
	mcpSrv.Control = ctl
	mcpHandler := mcpSrv.Handler()
	if sup.Sandbox != nil {
		if os.Geteuid() == 0 {
			// Each instance in a network namespace of its own; its door
			// serves the gateway, the MCP tools and the egress proxy.
			proxy := &egress.Proxy{
				Policy: func(ctx context.Context, p egress.Principal) (egress.Policy, error) {
					a, err := log.Agent(ctx, p.Name)
					if err != nil || p.Kind != "agent" {
						return egress.Policy{Mode: egress.None}, err
					}
					return a.EgressPolicy(), nil
				},
				Record: func(d egress.Decision) {
					e := mgr.TurnEvent(context.Background(), d.Principal.Name, event.Egress, event.EgressData{Method: d.Method, Host: d.Host,
						Port: d.Port, Address: d.Address, Allowed: d.Allowed, Reason: d.Reason})
					log.AppendAsync([]event.Event{e}, nil)
				}}
			sup.Doors = &supervisor.Doors{Handler: door.Routes{LLM: gw, MCP: mcpHandler, Proxy: proxy}.For, DaemonURL: loopbackURL(ln.Addr())}
		} else {
			logger.Warn("opencode instances share the host's network: a network namespace of their own needs the daemon to run as root")
		}
	}
	created, err := mgr.EnsureBuiltins(ctx, !*noDemo)
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	defer mgr.Close()

	api := &httpapi.Server{Log: log, Runner: mgr, Control: ctl, MCP: mcpHandler, LLM: gw, Token: token, Version: Version, Logger: logger, Hosts: *hosts,
		Sessions: &panel.Sessions{Token: token, Secure: *tlsCert != ""}}
	handler := api.Handler()
	srv := httpapi.HTTPServer(handler, logger)
	if *public != "" {
		pln, err := net.Listen("tcp", *public)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *public, err)
		}
		pln = netutil.LimitListener(pln, *maxConns)
		psrv := httpapi.HTTPServer(handler, logger)
		defer psrv.Close()
		if *tlsCert != "" {
			go func() {
				if err := psrv.ServeTLS(pln, *tlsCert, *tlsKey); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("the public listener stopped", "addr", pln.Addr().String(), "err", err)
				}
			}()
			fmt.Fprintf(stdout, "taosagent also serving the panel and the API on https://%s (TLS)\n", pln.Addr())
		} else {
			go psrv.Serve(pln)
			logger.Warn("the panel and the API are served WITHOUT TLS on an address other machines may reach: --insecure-public-http", "addr", pln.Addr().String())
			fmt.Fprintf(stdout, "taosagent also serving the panel and the API on http://%s (NO TLS: --insecure-public-http)\n", pln.Addr())
		}
	}
	if err := h.Record(home.Daemon{PID: os.Getpid(), Addr: ln.Addr().String(), Version: Version, Started: time.Now().UTC()}); err != nil {
		logger.Warn("the daemon's address could not be recorded in the home", "err", err)
	}
	defer os.Remove(h.DaemonFile()) // a clean stop leaves no record; a kill -9 does
	if n, err := doctor.ImportAudit(ctx, h, log); err != nil {
		logger.Warn("the recovery audit could not be merged into the audit", "err", err)
	} else if n > 0 {
		logger.Info("merged the recovery audit into the audit", "entries", n)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	fmt.Fprintf(stdout, "taosagent %s listening on http://%s (token: %s)\n", Version, ln.Addr(), h.TokenFile())
	if ps, _ := mgr.Providers(ctx); len(ps) == 1 && ps[0].Demo {
		fmt.Fprintln(stdout, "No model provider is configured: agents use the built-in scripted DEMO provider,\n"+
			"a test stand-in that is not an AI. Try:  taosagent chat host 'hello'\n"+
			"Add a real provider with POST /v1/providers, then point host at it with PATCH /v1/agents/host.")
	}
	for _, c := range created {
		logger.Info("created built-in " + c)
	}
	go prune(ctx, log, *retention, *rawRetention, logger)
	if *modelsSync > 0 {
		go syncModels(ctx, ctl, *modelsSync, logger)
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // event streams do not end on their own
	}
	return nil
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
	secrets := keys.All()
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

// exposure refuses a daemon that other machines could reach without TLS,
// unless the operator said so (--insecure-public-http): the main listener
// (plain HTTP, the agents' and the CLI's) must be loopback, and a public
// one needs a certificate and its key.
func exposure(listen, public, cert, key string, insecure bool) error {
	if (cert == "") != (key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cert != "" && public == "" {
		return errors.New("--tls-cert is for --public-listen: the main listener stays plain HTTP on loopback for the agents and the CLI")
	}
	if !loopbackAddr(listen) && !insecure {
		return fmt.Errorf("--listen %s is reachable from other machines over plain HTTP; keep it on loopback and use --public-listen with --tls-cert and --tls-key (or say --insecure-public-http)", listen)
	}
	if public != "" && cert == "" && !insecure {
		return fmt.Errorf("--public-listen %s needs --tls-cert and --tls-key (or --insecure-public-http behind a reverse proxy that terminates TLS)", public)
	}
	return nil
}

// loopbackAddr reports whether addr (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// prune applies retention hourly.
func prune(ctx context.Context, log *eventlog.Log, keep, keepRaw time.Duration, logger *slog.Logger) {
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

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
