// Package home owns taosagent's home directory: where everything lives,
// the daemon's lock, the operator token, and whether a daemon runs on it.
// Nothing else composes paths of the home, so the daemon, the CLI and the
// recovery tools agree on them.
//
//	token           the operator token (0600)
//	daemon.lock     held (flock) by the running daemon
//	daemon.json     what the last daemon recorded: pid, address, version
//	taosagent.db    the event log (SQLite)
//	keys/           provider keys (0600 each)
//	agents/NAME/    an agent's own directory (its confined opencode's)
//	snapshots/      copies of files taken before changes
//	host.json       the managed-host declaration (written by the operator)
//	run/            the supervisor's records of running instances
package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/randid"
)

// Home is a taosagent home directory.
type Home struct{ Dir string }

// The home's files and directories.
func (h Home) TokenFile() string { return filepath.Join(h.Dir, "token") }
func (h Home) LockFile() string  { return filepath.Join(h.Dir, "daemon.lock") }
func (h Home) DaemonFile() string {
	return filepath.Join(h.Dir, "daemon.json")
}
func (h Home) DB() string   { return filepath.Join(h.Dir, "taosagent.db") }
func (h Home) Keys() string { return filepath.Join(h.Dir, "keys") }

// Notify is where the notification channels' secrets are, a file each
// (0600); VAPID is the daemon's Web Push key pair (0600).
func (h Home) Notify() string { return filepath.Join(h.Dir, "notify") }
func (h Home) VAPID() string  { return filepath.Join(h.Dir, "vapid.json") }

// Hooks is where the webhooks' secrets are, a file each (0600).
func (h Home) Hooks() string            { return filepath.Join(h.Dir, "hooks") }
func (h Home) Agents() string           { return filepath.Join(h.Dir, "agents") }
func (h Home) Agent(name string) string { return filepath.Join(h.Dir, "agents", name) }
func (h Home) Snapshots() string        { return filepath.Join(h.Dir, "snapshots") }

// SPA is taosagent's own directory for the web app name: its build
// workspaces and the record of the build it serves.
func (h Home) SPA(name string) string { return filepath.Join(h.Dir, "spa", name) }
func (h Home) HostFile() string       { return filepath.Join(h.Dir, "host.json") }
func (h Home) Run() string            { return filepath.Join(h.Dir, "run") }
func (h Home) Binds() string          { return filepath.Join(h.Dir, "binds") } // sandbox.Sandbox.StageDir
func (h Home) Library() string        { return filepath.Join(h.Dir, "library") }
func (h Home) TUI() string            { return filepath.Join(h.Dir, "tui") }
func (h Home) RecoveryAudit() string  { return filepath.Join(h.Dir, "recovery-audit.jsonl") }

// OpencodeDir is where setup installs the pinned opencode.
func (h Home) OpencodeDir() string { return filepath.Join(h.Dir, "opencode") }

// OpencodeChoice, when present, names the opencode binary setup adopted
// (setup --opencode-bin) instead of installing one.
func (h Home) OpencodeChoice() string { return filepath.Join(h.Dir, "opencode-binary") }

// ReleaseFile records the opencode release the home runs when an operator
// chose one other than the pinned (Release).
func (h Home) ReleaseFile() string { return filepath.Join(h.Dir, "opencode-release.json") }

// Release is an opencode release a home runs: `taosagent setup --opencode
// VERSION` switches to one, keeping the one before for --rollback.
type Release struct {
	Version  string    `json:"version"`
	Path     string    `json:"path"`
	Switched time.Time `json:"switched"`
	Previous *Release  `json:"previous,omitempty"`
}

// Release reads the release the home runs; ok is false when none was
// chosen (the pinned one then runs).
func (h Home) Release() (r Release, ok bool, err error) {
	b, err := os.ReadFile(h.ReleaseFile())
	if errors.Is(err, os.ErrNotExist) {
		return Release{}, false, nil
	}
	if err != nil {
		return Release{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Version == "" || r.Path == "" {
		return Release{}, false, fmt.Errorf("%s is not a release record", h.ReleaseFile())
	}
	return r, true, nil
}

// SetRelease records r as the release the home runs (atomically, 0600).
func (h Home) SetRelease(r Release) error {
	b, _ := json.MarshalIndent(r, "", "  ")
	return atomicfile.Write(h.ReleaseFile(), append(b, '\n'), 0o600)
}

// OpencodeStamp records the last verified opencode binary (opencode.Stamp).
func (h Home) OpencodeStamp() string { return filepath.Join(h.Dir, "opencode-verified.json") }
func (h Home) DaemonLog() string     { return filepath.Join(h.Dir, "daemon.log") }

// Instance is the daemon's own directory for agent name's instance,
// outside the agent's tree and never writable by it: the opencode config
// (bound read-only into the sandbox), the HOME opencode sees (read-only
// and empty), the instance's log, the agent's gateway key.
func (h Home) Instance(name string) string { return filepath.Join(h.Instances(), name) }

// Instances holds every agent's Instance directory.
func (h Home) Instances() string { return filepath.Join(h.Dir, "instances") }

// MCPServer is the own directory of agent's local MCP server name (its
// {state}), outside the agent's tree, owned by the server's uid.
func (h Home) MCPServer(agent, name string) string { return filepath.Join(h.Dir, "mcp", agent, name) }

// Packages holds the npm packages of the Library's local MCP servers
// (npmpkg), read-only to the servers.
func (h Home) Packages() string { return filepath.Join(h.Dir, "packages") }

// AgentConfig is the opencode.json the supervisor writes for agent name at
// every start of its instance (in its XDG config home, in Instance).
func (h Home) AgentConfig(name string) string {
	return filepath.Join(h.Instance(name), "config", "opencode", "opencode.json")
}

// AgentLog is agent name's instance log (opencode's output).
func (h Home) AgentLog(name string) string { return filepath.Join(h.Instance(name), "opencode.log") }

// Create makes the home (mode 0700) if it does not exist.
func (h Home) Create() error { return os.MkdirAll(h.Dir, 0o700) }

// Token reads the operator token.
func (h Home) Token() (string, error) {
	b, err := os.ReadFile(h.TokenFile())
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", h.TokenFile())
	}
	return t, nil
}

// EnsureToken reads the operator token, creating it (mode 0600) on first
// start.
func (h Home) EnsureToken() (string, error) {
	t, err := h.Token()
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, os.ErrNotExist) && !strings.HasSuffix(err.Error(), "is empty") {
		return "", err
	}
	t = randid.Secret()
	return t, atomicfile.Write(h.TokenFile(), []byte(t+"\n"), 0o600)
}

// ErrRunning: a daemon already holds the home.
var ErrRunning = errors.New("another taosagent daemon is running on this home")

// Lock takes the home for one daemon; the lock ends with the process,
// however it ends (kill -9 included), or when unlock is called.
func (h Home) Lock() (unlock func(), err error) {
	f, err := os.OpenFile(h.LockFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s)", ErrRunning, h.Dir)
	}
	return func() { f.Close() }, nil
}

// Daemon is what a daemon records of itself in the home when it starts.
type Daemon struct {
	PID     int       `json:"pid"`
	Addr    string    `json:"addr"` // its API, e.g. 127.0.0.1:7077
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// UIDBase is its agents' first host uid (serve --uid-base): the
	// recovery CLI's builds take theirs from the same range.
	UIDBase int `json:"uid_base,omitempty"`
}

// Record writes d as the home's running daemon.
func (h Home) Record(d Daemon) error {
	b, _ := json.MarshalIndent(d, "", "  ")
	return atomicfile.Write(h.DaemonFile(), b, 0o600)
}

// Recorded returns what the last daemon recorded, if anything.
func (h Home) Recorded() (Daemon, bool) {
	b, err := os.ReadFile(h.DaemonFile())
	if err != nil {
		return Daemon{}, false
	}
	var d Daemon
	if json.Unmarshal(b, &d) != nil {
		return Daemon{}, false
	}
	return d, true
}

// Running reports whether a daemon holds the home's lock now. It probes
// with a shared lock, which only the daemon's exclusive one refuses: two
// probes at once (doctor runs its checks concurrently) never take each
// other for a daemon.
func (h Home) Running() bool {
	f, err := os.Open(h.LockFile())
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
