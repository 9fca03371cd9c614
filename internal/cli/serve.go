package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/daemon"
	"github.com/taosagent/taosagent/internal/hostid"
)

// defaultListen is $TAOSAGENT_LISTEN, else 127.0.0.1:7077.
func defaultListen() string {
	if l := os.Getenv("TAOSAGENT_LISTEN"); l != "" {
		return l
	}
	return "127.0.0.1:7077"
}

// runServe runs the daemon until SIGINT or SIGTERM; on SIGHUP it hands
// over to the daemon's binary as it is now (a planned restart): it returns
// the *daemon.Handover that Main execs.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("serve", stderr)
	homeDir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	listen := fs.String("listen", defaultListen(), "address of the HTTP API (env TAOSAGENT_LISTEN)")
	db := fs.String("db", "", "a PostgreSQL database (postgres://… or key=value pairs) to keep the store in, instead of the home's SQLite file (env TAOSAGENT_DB); one daemon per database")
	standby := fs.Bool("standby", false, "with --db, when another daemon holds the database, wait and take over once its lease lapsed, instead of refusing to start")
	clusterMode := fs.Bool("cluster", false, "with --db, run as one of several daemons sharing the database: each agent runs on one daemon at a time, placed on the one with the most free slots, and moves when its daemon dies or drains (docs/CLUSTER.md)")
	labels := &listFlag{}
	fs.Var(labels, "label", "with --cluster, a label k=v of this daemon that an agent's pin may name (repeatable)")
	lease := fs.Duration("lease", daemon.LeaseDefault, "with --db, how long this daemon's hold on the database lasts unrenewed: another daemon may take it that long after this one stopped renewing")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "stop an agent's opencode after this long unused")
	maxRunning := fs.Int("max-running", 8, "most opencode instances running at once; others wait in line for a slot")
	notifyBackoff := fs.Duration("notify-backoff", 5*time.Second, "the wait after a notification's first failed delivery, doubled after each (lower it for tests only)")
	scheduleFloor := fs.Duration("schedule-floor", time.Minute, "the shortest time between two slots of a schedule (lower it for tests only)")
	quantum := fs.Duration("quantum", 60*time.Second, "over --max-running, how long an agent with work keeps its instance's slot while others wait")
	memBudget := fs.Int64("memory-budget-mb", 0, "what all opencode instances may hold together, MiB; a start past it, or past what the machine has available, waits for a slot (0: half the machine's memory)")
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
	if *db == "" {
		// Not the flag's default: --help would show it, password and all.
		*db = os.Getenv("TAOSAGENT_DB")
	}
	if (*clusterMode || len(*labels) > 0) && *db == "" {
		return fmt.Errorf("%w: --cluster and --label need --db: a cluster shares a PostgreSQL database", errUsage)
	}
	for _, l := range *labels {
		if k, v, ok := strings.Cut(l, "="); !ok || k == "" || v == "" || strings.ContainsAny(l, ", ") {
			return fmt.Errorf("%w: --label %q: a label is k=v, with no comma or space", errUsage, l)
		}
	}
	if *clusterMode && *standby {
		return fmt.Errorf("%w: --standby is for a daemon that runs alone; in a cluster every daemon runs agents, and takes over those of one that died", errUsage)
	}
	if err := exposure(*listen, *public, *tlsCert, *tlsKey, *insecure); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := daemon.Config{Home: *homeDir, DB: *db, Lease: *lease, Standby: *standby, Cluster: *clusterMode, Labels: *labels, Listen: *listen, IdleTimeout: *idle, MaxRunning: *maxRunning, Quantum: *quantum, MemoryBudget: *memBudget << 20, Retention: *retention, ScheduleFloor: *scheduleFloor, NotifyBackoff: *notifyBackoff,
		RawRetention: *rawRetention, NoDemo: *noDemo, DefaultDailyTokens: *defaultTokens, Unconfined: *unconfined, MaxConns: *maxConns,
		Systemctl: *systemctl, Journalctl: *journalctl, ModelsSync: *modelsSync, LLMConnectTimeout: *llmConnect,
		LLMHeaderTimeout: *llmHeader, LLMStallTimeout: *llmStall, AllowHosts: *hosts, PublicListen: *public, TLSCert: *tlsCert,
		TLSKey: *tlsKey, UIDBase: *uidBase, Version: Version, Stdout: stdout,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Opencode: func(ctx context.Context, dir string) (string, string, error) { return ensureOpencode(ctx, dir, stderr) },
		Release:  opencodeBinary,
	}
	if *systemctl != "systemctl" {
		cfg.SystemdEnv = standInEnv() // the test stand-in's state
	}
	// SIGHUP is a planned restart: the daemon hands over to its binary as
	// it is now, in place (daemon.Handover).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	handover := make(chan struct{})
	go func() {
		select {
		case <-hup:
			close(handover)
		case <-ctx.Done():
		}
	}()
	cfg.Handover = handover
	return daemon.Run(ctx, cfg) // a *daemon.Handover is Main's to exec
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

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
