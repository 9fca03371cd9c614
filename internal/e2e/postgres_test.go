package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	taohome "github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/testenv"
)

// A daemon keeps its store in PostgreSQL (Debian's, a throwaway cluster)
// with TAOSAGENT_DB or --db: turns run and stream as on SQLite, and
// nothing goes to the home's SQLite file. It holds the whole database: a
// second daemon on it is refused, naming the holder; a wrong address is a
// clear error at once. Killed with SIGKILL and started again within its
// lease, it takes the database back, adopts its instance and loses
// nothing. Frozen (SIGSTOP) past its lease while another daemon takes the
// database, then resumed, it writes nothing more and stops.
func TestADaemonOnPostgreSQL(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	dsn := pg.Database(t)
	ctx := ctxT(t, 3*time.Minute)
	home := newHome(t)
	d := startIn(t, home, []string{"TAOSAGENT_DB=" + dsn}, "--lease", "2s")
	d.agent(ctx, "a", "")
	first := d.send(ctx, "a", "say: kept in postgres", "")
	if e := last(d.turnOf(ctx, "a", first.Seq-1, first.Input)); e.Kind != "final" || !strings.Contains(e.Field("text"), "kept in postgres") {
		t.Fatalf("the turn on PostgreSQL ended %s %q", e.Kind, e.Field("text"))
	}
	if _, err := os.Stat(taohome.Home{Dir: home}.DB()); !os.IsNotExist(err) {
		t.Fatalf("the home's SQLite file with --db: %v", err)
	}
	if f := cluster(t, d, dsn); f.Severity != "ok" || !strings.Contains(f.Summary, home+" holds the database") {
		t.Fatalf("doctor's cluster check while a daemon holds the database: %+v", f)
	}
	// The database's address (its password, if it had one) is the
	// daemon's: not in its agents' reach.
	if a, err := d.c.Agent(ctx, "a"); err != nil {
		t.Fatal(err)
	} else if oc := opencodeIn(a.Status.PID); oc == 0 {
		t.Fatalf("no opencode under %d", a.Status.PID)
	} else if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", oc)); err != nil || strings.Contains(string(env), dsn) || strings.Contains(string(env), "TAOSAGENT_DB") {
		t.Fatalf("the agent's opencode environment names the database (%v):\n%s", err, strings.ReplaceAll(string(env), "\x00", "\n"))
	}
	// doctor reads the agents from the database, read only.
	if f := doctorOn(t, d, dsn, "agents"); f.Severity != "ok" || strings.Contains(f.Summary, "not checked") {
		t.Fatalf("doctor's agents check on PostgreSQL: %+v", f)
	}

	// A second daemon on the same database, and a wrong address.
	refused := func(args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, binary, append([]string{"serve", "--home", newHome(t), "--listen", "127.0.0.1:0"}, args...)...)
		cmd.Env = append(os.Environ(), "TAOSAGENT_OPENCODE="+testenv.Opencode(t))
		out, err := cmd.CombinedOutput()
		if err == nil || cctx.Err() != nil {
			t.Fatalf("serve %v did not fail at once: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := refused("--db", dsn); !strings.Contains(out, "another daemon runs on this database") || !strings.Contains(out, home) {
		t.Fatalf("a second daemon on the database: %s", out)
	}
	nowhere := "host=" + filepath.Join(t.TempDir(), "nosocket") + " dbname=taosagent"
	if out := refused("--db", nowhere); !strings.Contains(out, "cannot reach the database at") || !strings.Contains(out, "nosocket") {
		t.Fatalf("a wrong database: %s", out)
	}

	// SIGKILL, and back within the lease: the same hold, the same
	// instance, nothing lost.
	a, err := d.c.Agent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	pid := a.Status.PID
	d.kill()
	d = startIn(t, home, []string{"TAOSAGENT_DB=" + dsn}, "--lease", "2s")
	next := d.send(ctx, "a", "say: after the kill", "")
	if e := last(d.turnOf(ctx, "a", next.Seq-1, next.Input)); e.Kind != "final" {
		t.Fatalf("the turn after the restart ended %s", e.Kind)
	}
	if a, err := d.c.Agent(ctx, "a"); err != nil || a.Status.PID != pid {
		t.Fatalf("the instance after the restart: pid %d, was %d (%v)", a.Status.PID, pid, err)
	}
	evs, err := d.c.Events(ctx, "a", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	finals := 0
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Fatalf("seq %d after %d", e.Seq, evs[i-1].Seq)
		}
		if e.Kind == "final" {
			finals++
		}
	}
	if finals != 2 {
		t.Fatalf("%d final events, want 2: %v", finals, kinds(evs))
	}

	// A standby waits; d is killed with SIGKILL in the middle of a
	// turn: the standby takes over once d's lease lapsed, the cut turn
	// ends with one error naming the failover, nothing d committed is
	// lost or doubled. d, back, is refused and stops its orphaned
	// instance.
	standby := func(lease string) <-chan *daemon {
		ch := make(chan *daemon, 1)
		go func() {
			s, err := launch(t, "", []string{"TAOSAGENT_DB=" + dsn}, "--lease", lease, "--standby")
			if err != nil {
				t.Error(err)
			}
			ch <- s
		}()
		return ch
	}
	waiting := standby("2s")
	cut := d.send(ctx, "a", "endless", "")
	err = d.c.Stream(ctx, "a", cut.Seq, func(e client.Event) bool { return e.Kind != "delta" && e.Kind != "reasoning" })
	if err != nil {
		t.Fatal(err)
	}
	d.kill()
	killed := time.Now()
	s := <-waiting
	if s == nil {
		t.FailNow()
	}
	t.Logf("the standby took over %.1f s after the kill (lease 2 s)", time.Since(killed).Seconds())
	evs, err = s.c.Events(ctx, "a", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ends []client.Event
	seen := map[int64]bool{}
	for _, e := range evs {
		if seen[e.Seq] {
			t.Fatalf("seq %d twice", e.Seq)
		}
		seen[e.Seq] = true
		if e.Seq > cut.Seq && (e.Kind == "final" || e.Kind == "error") {
			ends = append(ends, e)
		}
	}
	if len(ends) != 1 || ends[0].Kind != "error" || ends[0].Field("code") != "interrupted" ||
		!strings.Contains(ends[0].Field("message"), "failover") || !strings.Contains(ends[0].Field("message"), home) {
		t.Fatalf("the cut turn's end on the new holder: %+v", ends)
	}
	out := refused("--home", home, "--db", dsn)
	if !strings.Contains(out, "another daemon runs on this database") || !strings.Contains(out, "stopped the instances") {
		t.Fatalf("the old holder back: %s", out)
	}
	if !exited(pid) {
		t.Fatalf("the old holder's instance %d still runs after it was refused:\n%s", pid, out)
	}
	third := s.send(ctx, "a", "say: on the new holder", "")
	if e := last(s.turnOf(ctx, "a", third.Seq-1, third.Input)); e.Kind != "final" {
		t.Fatalf("the turn on the new holder ended %s", e.Kind)
	}

	// Frozen past its lease while a standby takes the database; resumed,
	// the frozen one stops, and writes nothing after the takeover.
	s.cmd.Process.Signal(syscall.SIGSTOP)
	other := <-standby("5s")
	if other == nil {
		s.cmd.Process.Signal(syscall.SIGCONT)
		t.FailNow()
	}
	held, err := other.c.Events(ctx, "a", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	head := last(held).Seq
	s.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the frozen daemon, resumed, did not stop:\n%s", s.log)
	}
	if !strings.Contains(s.log.String(), "no longer holds its database") {
		t.Fatalf("the resumed daemon's log:\n%s", s.log)
	}
	// Nothing has touched a on the new holder yet: any event of a now
	// would be the old holder's (its instance stopping, say).
	if after, err := other.c.Events(ctx, "a", head, 1000); err != nil || len(after) != 0 {
		t.Fatalf("events of a after the takeover: %v %v", kinds(after), err)
	}

	// The database goes away: /healthz says so, and once the hold lapsed
	// the daemon stops. Back, a daemon takes work again; nothing
	// committed was lost.
	pg.Kill(t)
	if f := cluster(t, other, dsn); f.Severity != "critical" || !strings.Contains(f.Details, "cannot reach the database") {
		t.Fatalf("doctor's cluster check without the database: %+v", f)
	}
	degraded := func() bool {
		resp, err := http.Get(other.addr + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "the database does not answer")
	}
	for !degraded() {
		select {
		case <-other.done:
			t.Fatalf("the daemon stopped before /healthz said degraded:\n%s", other.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	select {
	case <-other.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("a daemon without its database did not stop:\n%s", other.log)
	}
	if !strings.Contains(other.log.String(), "lapsed, unrenewed") {
		t.Fatalf("the daemon's log without its database:\n%s", other.log)
	}
	pg.Start(t)
	if f := cluster(t, other, dsn); f.Severity != "warning" || !strings.Contains(f.Summary, "lapsed") || !strings.Contains(f.Summary, other.home) {
		t.Fatalf("doctor's cluster check once a daemon stopped renewing: %+v", f)
	}
	back := startIn(t, other.home, []string{"TAOSAGENT_DB=" + dsn}, "--lease", "5s")
	fourth := back.send(ctx, "a", "say: the database is back", "")
	if e := last(back.turnOf(ctx, "a", fourth.Seq-1, fourth.Input)); e.Kind != "final" {
		t.Fatalf("the turn once the database is back ended %s", e.Kind)
	}
	evs, err = back.c.Events(ctx, "a", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	finals = 0
	for _, e := range evs {
		if e.Kind == "final" {
			finals++
		}
	}
	if finals != 4 {
		t.Fatalf("%d final events once the database is back, want 4: %v", finals, kinds(evs))
	}
}

// cluster is doctor's cluster finding for dsn.
func cluster(t *testing.T, d *daemon, dsn string) (f struct{ Severity, Summary, Details string }) {
	t.Helper()
	return doctorOn(t, d, dsn, "cluster")
}

// doctorOn is the first finding of doctor's check on d's home and dsn.
func doctorOn(t *testing.T, d *daemon, dsn, check string) (f struct{ Severity, Summary, Details string }) {
	t.Helper()
	out, stderr, _ := d.run("doctor", "--db", dsn, "--json", check)
	var res struct {
		Findings []struct{ Severity, Summary, Details string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Findings) == 0 {
		t.Fatalf("doctor --json cluster: %v %q %s", err, out, stderr)
	}
	return res.Findings[0]
}

// exited says whether process pid is gone, or a zombie: killed, not yet
// reaped by whoever it was handed to.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}
