package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/testenv"
)

// recovery is a home that a daemon has run on and left (stopped), with a
// managed service "app" behind the systemd stand-in, and the port it
// listened on.
type recovery struct {
	t    *testing.T
	home string
	addr string
	sysd *testenv.FakeSystemd
	conf string
	env  []string // added to the commands' environment
}

func newRecovery(t *testing.T, withTurn bool) *recovery {
	d, sysd, conf := hostDaemon(t)
	ctx := ctxT(t, time.Minute)
	d.agent(ctx, "worker", "")
	if withTurn {
		acc := d.send(ctx, "worker", "hello", "") // the worker's opencode config exists
		d.turnOf(ctx, "worker", acc.Seq, acc.Input)
	}
	d.stop()
	return &recovery{t: t, home: d.home, addr: strings.TrimPrefix(d.addr, "http://"), sysd: sysd, conf: conf}
}

// cli runs taosagent with the recovery's home, address and systemd.
func (r *recovery) cli(args ...string) (stdout string, code int) {
	r.t.Helper()
	full := append([]string{args[0], "--home", r.home}, args[1:]...)
	if args[0] == "doctor" || args[0] == "fix" {
		full = append([]string{args[0], "--home", r.home, "--listen", r.addr,
			"--systemctl", r.sysd.Systemd.Systemctl, "--journalctl", r.sysd.Systemd.Journalctl}, args[1:]...)
	}
	cmd := exec.Command(binary, full...)
	cmd.Env = append(append(os.Environ(), "TAOSAGENT_OPENCODE="+testenv.Opencode(r.t), "FAKE_SYSTEMD_DIR="+r.sysd.Dir), r.env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return o.String() + e.String(), code
}

// findings runs doctor --json (the given checks) and returns its findings.
func (r *recovery) findings(checks ...string) ([]doctor.Finding, int) {
	r.t.Helper()
	out, code := r.cli(append([]string{"doctor", "--json"}, checks...)...)
	var res struct{ Findings []doctor.Finding }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		r.t.Fatalf("doctor --json (exit %d): %v\n%s", code, err, out)
	}
	return res.Findings, code
}

// expect runs the check and wants one finding of that severity and recipe.
func (r *recovery) expect(check string, sev doctor.Severity, recipe string) doctor.Finding {
	r.t.Helper()
	fs, code := r.findings(check)
	for _, f := range fs {
		if f.Severity == sev && f.Recipe == recipe {
			if code == 0 {
				r.t.Errorf("doctor exited 0 with a %s finding", sev)
			}
			return f
		}
	}
	r.t.Fatalf("doctor %s: %+v, want a %s finding with recipe %q", check, fs, sev, recipe)
	return doctor.Finding{}
}

// clean wants the checks to pass.
func (r *recovery) clean(checks ...string) {
	r.t.Helper()
	fs, code := r.findings(checks...)
	for _, f := range fs {
		if f.Severity != doctor.OK {
			r.t.Fatalf("after the fix, %s: %+v", f.ID, f)
		}
	}
	if code != 0 {
		r.t.Fatalf("doctor exited %d on a clean home", code)
	}
}

func (r *recovery) fix(recipes ...string) string {
	r.t.Helper()
	out, code := r.cli(append([]string{"fix", "--yes"}, recipes...)...)
	r.t.Logf("fix %v (exit %d):\n%s", recipes, code, out)
	if strings.Contains(out, "unknown recipe") || code == 2 && !strings.Contains(out, "doctor, after the fixes") {
		r.t.Fatalf("fix %v exited %d:\n%s", recipes, code, out)
	}
	return out
}

// stopDaemon stops every daemon of the recovery's home that fix started
// in the background (found by its command line: it may not have recorded
// itself yet).
func (r *recovery) stopDaemon() {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "serve\x00--home\x00"+r.home+"\x00") {
			continue
		}
		var pid int
		fmt.Sscan(e.Name(), &pid)
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond) // no notice of another process's exit
		}
	}
}

// Each breakage, on a home of its own: doctor names it with the right
// recipe, `fix --yes` repairs it, and doctor is clean afterwards.
func TestDoctorFindsAndFixRepairs(t *testing.T) {
	t.Run("missing opencode binary", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		r.env = []string{"TAOSAGENT_OPENCODE="} // as installed: the binary setup chose
		os.WriteFile(filepath.Join(r.home, "opencode-binary"), []byte("/nonexistent/opencode\n"), 0o600)
		r.expect("opencode", doctor.Critical, "reinstall-opencode")
		r.fix("reinstall-opencode") // from the npm registry (its cache, after make test's setup)
		r.clean("opencode")
	})
	t.Run("substituted opencode binary", func(t *testing.T) {
		// Same --version output, other bytes: the pin's hash tells them apart.
		t.Parallel()
		r := newRecovery(t, false)
		r.env = []string{"TAOSAGENT_OPENCODE="}
		fake := filepath.Join(t.TempDir(), "opencode")
		os.WriteFile(fake, []byte("#!/bin/sh\necho "+opencode.Version+"\n"), 0o755)
		os.WriteFile(filepath.Join(r.home, "opencode-binary"), []byte(fake+"\n"), 0o600)
		f := r.expect("opencode", doctor.Critical, "reinstall-opencode")
		if !strings.Contains(f.Details, "substituted") {
			r.t.Errorf("the finding does not say why: %+v", f)
		}
		r.fix("reinstall-opencode")
		r.clean("opencode")
	})
	t.Run("corrupt agent config", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, true)
		os.WriteFile(agentConfig(r.home, "worker"), []byte(`{"model": "evil/x",`), 0o600)
		r.expect("agents", doctor.Error, "regenerate-agent-config:worker")
		r.fix("regenerate-agent-config:worker")
		r.clean("agents")
	})
	t.Run("world-readable key", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		key := filepath.Join(r.home, "keys", "acme.key")
		os.MkdirAll(filepath.Dir(key), 0o700)
		os.WriteFile(key, []byte("sk-secret"), 0o644)
		os.Chmod(key, 0o644)
		f := r.expect("home", doctor.Error, "repair-permissions")
		if !strings.Contains(f.Details, "acme.key") {
			t.Errorf("details %q do not name the key", f.Details)
		}
		r.fix("repair-permissions")
		r.clean("home")
	})
	t.Run("failed managed service", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		os.WriteFile(filepath.Join(r.sysd.Dir, "units", "app.service"), []byte(`{"active":"failed","sub":"failed","pid":0}`), 0o600)
		r.expect("services", doctor.Error, "restart-service:app")
		r.fix("restart-service:app")
		r.clean("services")
	})
	t.Run("broken managed config with a snapshot", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		// A snapshot exists (taken before an earlier change); then the file breaks.
		if _, err := (snapshot.Store{Dir: filepath.Join(r.home, "snapshots")}).Take(r.conf, "before a change"); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(r.conf, []byte(`{"workers": `), 0o640)
		r.expect("services", doctor.Error, "restore-config:"+r.conf)
		r.fix("restore-config:" + r.conf)
		r.clean("services")
	})
	t.Run("stale lock after kill -9", func(t *testing.T) {
		t.Parallel()
		d, sysd, conf := hostDaemon(t)
		d.kill()
		r := &recovery{t: t, home: d.home, addr: strings.TrimPrefix(d.addr, "http://"), sysd: sysd, conf: conf}
		r.expect("stale-lock", doctor.Warning, "clear-stale-lock")
		r.expect("daemon", doctor.Critical, "start-daemon")
		t.Cleanup(r.stopDaemon)
		// --all installs the service unit too (into a temp dir, that the
		// systemd stand-in reads), then starts the daemon through it.
		// A real install ran setup: the unit's daemon (started with
		// systemd's clean environment) finds its opencode in the home.
		if out, code := r.cli("setup", "--opencode-bin", testenv.Opencode(t)); code != 0 {
			t.Fatalf("setup: %s", out)
		}
		unitDir := t.TempDir()
		r.env = append(r.env, "FAKE_SYSTEMD_UNIT_PATH="+unitDir)
		r.fix("--all", "--unit-dir", unitDir)
		r.clean() // every check: the daemon runs again and answers
		// What fix did is in the daemon's audit, merged from the home's
		// recovery audit when it started.
		tok, _ := os.ReadFile(filepath.Join(r.home, "token"))
		code, body := get(t, "http://"+r.addr+"/v1/audit?actor=recovery&tool=fix.clear-stale-lock&outcome=ok", strings.TrimSpace(string(tok)))
		if code != 200 || !strings.Contains(body, `"fix.clear-stale-lock"`) {
			t.Errorf("the recovery audit is not in the daemon's: %d %s", code, body)
		}
		if st, err := os.Stat(filepath.Join(r.home, "recovery-audit.jsonl")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("recovery audit: %v %v", st, err)
		}
	})
	t.Run("leftover opencode processes", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		ours, stranger := exec.Command("sleep", "300"), exec.Command("sleep", "301")
		ours.Env = append(os.Environ(), "TAOSAGENT_INSTANCE=tok-left-behind")
		for _, c := range []*exec.Cmd{ours, stranger} {
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		}
		rec := fmt.Sprintf(`[{"name":"worker","pid":%d,"start":1,"boot_id":"gone","token":"tok-left-behind"}]`, ours.Process.Pid)
		os.WriteFile(filepath.Join(r.home, "run", "instances.json"), []byte(rec), 0o600)
		r.expect("leftovers", doctor.Error, "stop-leftovers")
		r.fix("stop-leftovers")
		r.clean("leftovers")
		ours.Wait()
		if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
			t.Error("a process that is not ours was stopped")
		}
	})
	t.Run("foreign listener on the daemon's port", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		ln, err := net.Listen("tcp", r.addr) // this test process: a program that is not taosagent
		if err != nil {
			t.Skip("the port was taken meanwhile:", err)
		}
		defer ln.Close()
		f := r.expect("port", doctor.Error, "")
		if !strings.Contains(f.Summary, "another program") || !strings.Contains(f.Details, fmt.Sprint(os.Getpid())) {
			t.Errorf("the finding does not name the holder: %+v", f)
		}
		out, _ := r.cli("fix", "--yes", "free-port")
		if !strings.Contains(out, "never stops") {
			t.Errorf("free-port on a foreign listener: %s", out)
		}
		if c, err := net.Dial("tcp", r.addr); err != nil {
			t.Error("the foreign listener was stopped")
		} else {
			c.Close()
		}
	})
	t.Run("unreachable provider", func(t *testing.T) {
		t.Parallel()
		d, sysd, conf := hostDaemon(t)
		ctx := ctxT(t, time.Minute)
		code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token, `{"id":"gone","base_url":"http://127.0.0.1:1/v1","api_key":"sk-never-printed-1234","models":[{"id":"m"}]}`)
		if code != 201 {
			t.Fatalf("create provider: %d %s", code, body)
		}
		_ = ctx
		d.stop()
		r := &recovery{t: t, home: d.home, addr: strings.TrimPrefix(d.addr, "http://"), sysd: sysd, conf: conf}
		f := r.expect("providers", doctor.Error, "")
		if !strings.Contains(f.Summary, "gone") {
			t.Errorf("finding %+v", f)
		}
		out, _ := r.cli("doctor", "--json")
		if strings.Contains(out, "sk-never-printed") {
			t.Error("doctor printed a provider key")
		}
	})
	t.Run("damaged database", func(t *testing.T) {
		t.Parallel()
		r := newRecovery(t, false)
		db := filepath.Join(r.home, "taosagent.db")
		addEvents(t, db, 3000)
		readable := damage(t, db)
		r.expect("database", doctor.Critical, "recover-database")
		r.fix("recover-database")
		r.clean("database")
		got := eventSeqs(t, db)
		for _, seq := range readable {
			if !slices.Contains(got, seq) {
				t.Fatalf("event %d was readable in the damaged file and is not in the recovered one (%d of %d recovered)", seq, len(got), len(readable))
			}
		}
		if len(got) < len(readable) {
			t.Fatalf("%d events recovered, %d were readable", len(got), len(readable))
		}
	})
}

// addEvents appends n events straight into the (stopped) daemon's log.
func addEvents(t *testing.T, path string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, _ := db.Begin()
	var head int64
	tx.QueryRow(`SELECT COALESCE(MAX(seq),0) FROM events`).Scan(&head)
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf(`{"seq":%d,"agent":"worker","kind":"delta","data":{"text":%q}}`, head+int64(i), strings.Repeat("x", 200))
		if _, err := tx.Exec(`INSERT INTO events(seq, agent, turn, kind, time, body) VALUES (?,?,?,?,?,?)`, head+int64(i), "worker", "turn_x", "delta", time.Now().UnixNano(), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// damage overwrites a page in the middle of the file with garbage, and
// returns the seqs of the events still readable one by one.
func damage(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	pages := st.Size() / 4096
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7 + 13)
	}
	f.WriteAt(garbage, (pages/2)*4096)
	f.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var readable []int64
	for seq := int64(1); seq <= 5000; seq++ {
		var body []byte
		if db.QueryRow(`SELECT body FROM events WHERE seq = ?`, seq).Scan(&body) == nil {
			readable = append(readable, seq)
		}
	}
	if len(readable) == 0 || len(readable) >= 3000 {
		t.Fatalf("the damage left %d events readable: not a partial damage", len(readable))
	}
	return readable
}

func eventSeqs(t *testing.T, path string) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq FROM events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var s int64
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}
