package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// Recipe is one vetted repair. Run is idempotent; with dry it changes
// nothing and only reports, through step, what it would do. A destructive
// recipe is confirmed by a person first (Fixer.Confirm).
type Recipe struct {
	ID          string
	Summary     string
	Destructive bool
	Run         func(ctx context.Context, e *Env, arg string, dry bool, step func(string)) (snapshot string, err error)
}

// Recipes lists every recipe.
func Recipes() []Recipe {
	// In the order fix runs them: what blocks a start first, the start last.
	return []Recipe{
		{"clear-stale-lock", "remove the record of a daemon that died", false, clearStaleLock},
		{"free-port", "stop a stale taosagent holding the daemon's port, or (free-port:PORT) a stale process of the managed service that declares PORT; never another program", true, freePort},
		{"stop-leftovers", "stop the opencode processes a dead daemon left (and nothing else)", true, stopLeftovers},
		{"repair-permissions", "make the home and its secrets private again", false, repairPermissions},
		{"reinstall-opencode", "install the pinned opencode " + opencode.Version + " again", false, reinstallOpencode},
		{"recover-database", "back up the damaged event log and recover what can be read into a fresh one", true, recoverDatabase},
		{"regenerate-agent-config", "set aside an agent's opencode config; the daemon writes it afresh from the database", false, regenerateConfig},
		{"reset-agent-dirs", "set aside an agent's instance directories (its opencode starts clean)", true, resetAgentDirs},
		{"restore-host-file", "restore the managed-host file from its last good snapshot", true, restoreHostFile},
		{"restore-config", "restore a managed service's config file from its last good snapshot", true, restoreConfig},
		{"restart-service", "restart a managed service through systemd", true, restartService},
		{"unwedge-container", "stop (then kill) a managed container, remove its leftover where declared, start it again and wait for its health; its settings kept first", true, unwedgeContainer},
		{"rebuild-spa", "build a web app in the build sandbox and serve the result in one swap, the build it replaces kept; rolled back when the page does not answer", true, rebuildSPA},
		{"install-service", "install and enable taosagent's systemd unit", false, installService},
		{"restart-daemon", "restart the daemon (through its systemd unit when installed)", true, restartDaemon},
		{"start-daemon", "start the daemon (through its systemd unit when installed)", false, startDaemon},
	}
}

// Lookup finds the recipe of id ("restart-service:litellm": the recipe,
// and its argument "litellm").
func Lookup(id string) (Recipe, string, bool) {
	name, arg, _ := strings.Cut(id, ":")
	for _, r := range Recipes() {
		if r.ID == name {
			return r, arg, true
		}
	}
	return Recipe{}, "", false
}

func needArg(arg, what string) error {
	if arg == "" {
		return fmt.Errorf("name the %s: RECIPE:%s", what, strings.ToUpper(what))
	}
	return nil
}

// ---- the daemon

func (e *Env) unitInstalled(ctx context.Context) bool {
	st, err := e.Systemd.Status(ctx, e.unit())
	return err == nil && st.LoadState == "loaded"
}

func startDaemon(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.Home.Running() {
		step("the daemon already runs")
		return "", nil
	}
	if e.unitInstalled(ctx) {
		step("systemctl start " + e.unit())
		if dry {
			return "", nil
		}
		if _, err := e.Systemd.Start(ctx, e.unit()); err != nil {
			return "", err
		}
		return "", e.waitHealthy(ctx, step)
	}
	if e.Self == "" {
		return "", errors.New("the taosagent binary is unknown: start it with `taosagent serve`")
	}
	step(fmt.Sprintf("run %s serve --home %s --listen %s in the background (its log: %s)", e.Self, e.Home.Dir, e.Addr, e.Home.DaemonLog()))
	if dry {
		return "", nil
	}
	logf, err := os.OpenFile(e.Home.DaemonLog(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command(e.Self, "serve", "--home", e.Home.Dir, "--listen", e.Addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the fix
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go cmd.Wait()
	return "", e.waitHealthy(ctx, step)
}

// waitHealthy waits until the daemon answers /healthz, at most 60 s.
func (e *Env) waitHealthy(ctx context.Context, step func(string)) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, err := e.probe(ctx, "http://"+e.loopback()+"/healthz"); err == nil && code == 200 {
			step("the daemon answers on " + e.Addr)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not answer on %s within a minute; see %s", e.Addr, e.Home.DaemonLog())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // the daemon has no way to tell us sooner
		}
	}
}

// stopProcess ends pid with SIGTERM, then SIGKILL after 10 s.
func stopProcess(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond) // no notice of another process's exit
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if alive(pid) {
		return fmt.Errorf("pid %d did not stop", pid)
	}
	return nil
}

func restartDaemon(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.unitInstalled(ctx) {
		step("systemctl restart " + e.unit())
		if dry {
			return "", nil
		}
		if _, err := e.Systemd.Restart(ctx, e.unit()); err != nil {
			return "", err
		}
		return "", e.waitHealthy(ctx, step)
	}
	if rec, ok := e.Home.Recorded(); ok && alive(rec.PID) {
		p, _ := readProcess(rec.PID)
		if !isDaemonOf(p, e.Home.Dir) {
			return "", fmt.Errorf("pid %d is no longer taosagent (%s): not touched", rec.PID, p)
		}
		step(fmt.Sprintf("stop the daemon (pid %d)", rec.PID))
		if !dry {
			if err := stopProcess(rec.PID); err != nil {
				return "", err
			}
		}
	}
	return startDaemon(ctx, e, "", dry, step)
}

func clearStaleLock(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.Home.Running() {
		return "", errors.New("a daemon holds the lock: it is not stale")
	}
	if _, ok := e.Home.Recorded(); !ok {
		step("no stale record")
		return "", nil
	}
	step("remove " + e.Home.DaemonFile())
	if dry {
		return "", nil
	}
	return "", os.Remove(e.Home.DaemonFile())
}

func freePort(ctx context.Context, e *Env, arg string, dry bool, step func(string)) (string, error) {
	if arg != "" {
		return freeDeclaredPort(ctx, e, arg, dry, step)
	}
	port, _ := strconv.Atoi(e.port())
	p, held := Listener(port)
	if !held {
		step(fmt.Sprintf("port %d is free", port))
		return "", nil
	}
	rec, _ := e.Home.Recorded()
	if e.Home.Running() && p.PID == rec.PID {
		return "", fmt.Errorf("port %d is the running daemon's: not stale", port)
	}
	if !isDaemonOf(p, e.Home.Dir) {
		return "", fmt.Errorf("port %d is held by %s, which is not taosagent's: taosagent never stops it; stop it yourself or move the daemon (--listen)", port, p)
	}
	step(fmt.Sprintf("stop the stale taosagent holding port %d: %s", port, p))
	if dry {
		return "", nil
	}
	return "", stopProcess(p.PID)
}

func stopLeftovers(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.Home.Running() {
		return "", errors.New("the daemon runs: its opencode processes are its own")
	}
	pids, err := supervisor.Leftovers(e.Home.Run())
	if err != nil {
		return "", err
	}
	if len(pids) == 0 {
		step("no leftover opencode process")
		return "", nil
	}
	step(fmt.Sprintf("stop %s: pids %v", plural(len(pids), "leftover process", "leftover processes"), pids))
	if dry {
		return "", nil
	}
	_, err = supervisor.Sweep(e.Home.Run())
	return "", err
}

// ---- the home

func repairPermissions(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	fix := func(path string, mode fs.FileMode) error {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() == mode || (!st.IsDir() && st.Mode().Perm()&^mode == 0) {
			return nil
		}
		step(fmt.Sprintf("chmod %04o %s (was %04o)", mode, path, st.Mode().Perm()))
		if dry {
			return nil
		}
		return os.Chmod(path, mode)
	}
	if err := fix(e.Home.Dir, 0o700); err != nil {
		return "", err
	}
	paths := append(e.privateFiles(), e.Home.DB()+"-wal", e.Home.DB()+"-shm", e.Home.DaemonLog())
	for _, p := range paths {
		if err := fix(p, 0o600); err != nil {
			return "", err
		}
	}
	for _, d := range []string{e.Home.Keys(), e.Home.Hooks()} {
		if err := fix(d, 0o700); err != nil {
			return "", err
		}
	}
	return "", nil
}

func regenerateConfig(ctx context.Context, e *Env, name string, dry bool, step func(string)) (string, error) {
	if err := needArg(name, "agent"); err != nil {
		return "", err
	}
	if strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", fmt.Errorf("%q is not an agent's name", name)
	}
	path := e.Home.AgentConfig(name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		step("no config to set aside: the daemon writes it at the agent's next start")
		return "", nil
	}
	step("snapshot and remove " + path + "; the daemon writes it afresh from the database at the agent's next start")
	if dry {
		return "", nil
	}
	sn, err := snapshot.Store{Dir: e.Home.Snapshots()}.Take(path, "before regenerate-agent-config")
	if err != nil {
		return "", err
	}
	// The config directory is read-only to the agent's sandbox, and may be
	// to us: open it for the removal.
	os.Chmod(filepath.Dir(path), 0o700)
	return sn.ID, os.Remove(path)
}

func resetAgentDirs(ctx context.Context, e *Env, name string, dry bool, step func(string)) (string, error) {
	if err := needArg(name, "agent"); err != nil {
		return "", err
	}
	if strings.ContainsAny(name, "/\\") || name == "." || name == ".." || name == "" {
		return "", fmt.Errorf("%q is not an agent's name", name)
	}
	dir := e.Home.Agent(name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		step("no directory to reset")
		return "", nil
	}
	aside := filepath.Join(e.Home.Agents(), ".reset", name+"-"+time.Now().UTC().Format("20060102T150405"))
	step("move " + dir + " to " + aside + " (kept, not deleted)")
	if dry {
		return "", nil
	}
	if err := os.MkdirAll(filepath.Dir(aside), 0o700); err != nil {
		return "", err
	}
	return "", os.Rename(dir, aside)
}

// lastGood is the newest snapshot of path whose contents pass ok.
func lastGood(e *Env, path string, ok func([]byte) error) (snapshot.Snapshot, error) {
	store := snapshot.Store{Dir: e.Home.Snapshots()}
	list, err := store.List(path)
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	for _, sn := range list {
		if !sn.Exists {
			continue
		}
		if b, err := store.Content(sn); err == nil && ok(b) == nil {
			return sn, nil
		}
	}
	return snapshot.Snapshot{}, fmt.Errorf("no good snapshot of %s", path)
}

// restoreSnapshot restores sn (the file as it is now is snapshotted first)
// and returns that snapshot's id.
func restoreSnapshot(e *Env, sn snapshot.Snapshot, dry bool, step func(string)) (string, error) {
	step("restore " + sn.Path + " from snapshot " + sn.ID + " of " + sn.Time.Local().Format(time.DateTime))
	if dry {
		return "", nil
	}
	before, err := snapshot.Store{Dir: e.Home.Snapshots()}.Restore(sn.ID)
	return before.ID, err
}

func restoreHostFile(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	path := e.Home.HostFile()
	if _, err := hostctl.Load(path); err == nil {
		step("the managed-host file is valid")
		return "", nil
	}
	sn, err := lastGood(e, path, func(b []byte) error { _, err := hostctl.Parse(b); return err })
	if err != nil {
		aside := path + ".broken-" + time.Now().UTC().Format("20060102T150405")
		step("no good snapshot: move " + path + " to " + aside + " (only taosagent itself stays managed)")
		if dry {
			return "", nil
		}
		return "", os.Rename(path, aside)
	}
	return restoreSnapshot(e, sn, dry, step)
}

func restoreConfig(ctx context.Context, e *Env, path string, dry bool, step func(string)) (string, error) {
	if err := needArg(path, "path"); err != nil {
		return "", err
	}
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return "", err
	}
	_, f, ok := c.ConfigFile(path)
	if !ok {
		return "", fmt.Errorf("%s is not a config file declared in the managed-host file", path)
	}
	if b, err := os.ReadFile(path); err == nil && hostctl.Validate(f.Format, b) == nil {
		step(path + " parses: nothing to restore")
		return "", nil
	}
	sn, err := lastGood(e, path, func(b []byte) error { return hostctl.Validate(f.Format, b) })
	if err != nil {
		return "", err
	}
	return restoreSnapshot(e, sn, dry, step)
}

func restartService(ctx context.Context, e *Env, name string, dry bool, step func(string)) (string, error) {
	if err := needArg(name, "service"); err != nil {
		return "", err
	}
	c, err := hostctl.Load(e.Home.HostFile())
	if err != nil {
		return "", err
	}
	s, ok := c.Service(name)
	if !ok {
		return "", fmt.Errorf("%q is not a managed service", name)
	}
	if s.Name == hostctl.Self.Name {
		return restartDaemon(ctx, e, "", dry, step)
	}
	step("systemctl restart " + s.Unit)
	if dry {
		return "", nil
	}
	st, err := e.Systemd.Restart(ctx, s.Unit)
	if err != nil {
		return "", err
	}
	step(fmt.Sprintf("%s is %s (%s)", s.Unit, st.ActiveState, st.SubState))
	return "", nil
}

func reinstallOpencode(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	dir := e.Home.OpencodeDir()
	step("install opencode-linux-x64@" + opencode.Version + " from the npm registry into " + dir)
	if _, err := os.Stat(e.Home.OpencodeChoice()); err == nil {
		step("forget the binary adopted earlier (" + e.Home.OpencodeChoice() + "): the installed one is used")
	}
	if r, ok, _ := e.Home.Release(); ok {
		step("leave opencode " + r.Version + ", switched to earlier, for the pinned " + opencode.Version + " (setup --opencode " + r.Version + " switches again)")
	}
	if dry {
		return "", nil
	}
	bin, err := opencode.Install(ctx, dir, io.Discard)
	if err != nil {
		return "", err
	}
	for _, f := range []string{e.Home.OpencodeChoice(), e.Home.ReleaseFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	opencode.WriteStamp(e.Home.OpencodeStamp(), bin) // Install verified it
	e.Opencode, e.OpencodeVersion, e.OpencodeErr = bin, opencode.Version, nil
	return "", nil
}

// ---- the database

func recoverDatabase(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.Home.Running() {
		return "", errors.New("the daemon runs and holds the event log: stop it first (or run restart-daemon if it is wedged)")
	}
	db := e.Home.DB()
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		step("no database: the daemon creates it")
		return "", nil
	}
	backup := db + ".damaged-" + time.Now().UTC().Format("20060102T150405")
	step("move " + db + " (and its -wal, -shm) to " + backup)
	step("create a fresh event log and copy into it every row the damaged one still yields")
	if dry {
		return "", nil
	}
	if e.db != nil {
		e.db.Close()
		e.db, e.dbErr = nil, errors.New("closed for recovery")
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(db+suffix, backup+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	n, err := eventlog.Recover(ctx, backup, db)
	if err != nil {
		return "", fmt.Errorf("recovery: %w (the damaged file is kept as %s)", err, backup)
	}
	step(fmt.Sprintf("recovered %d rows (%d events); the damaged file is kept as %s", n.Rows, n.Events, backup))
	return "", nil
}
