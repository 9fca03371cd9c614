package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/testenv"
)

// states collects the state changes a Supervisor reports.
type states struct {
	mu  sync.Mutex
	got []string
	ch  chan string
}

func (s *states) on(name string, st State, pid int, err error) {
	s.mu.Lock()
	s.got = append(s.got, name+":"+string(st))
	s.mu.Unlock()
	select {
	case s.ch <- name + ":" + string(st):
	default:
	}
}

func (s *states) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case got := <-s.ch:
			if got == want {
				return
			}
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("no %s; states so far %v", want, s.got)
		}
	}
}

func newSup(t *testing.T) (*Supervisor, *states) {
	t.Helper()
	bin := testenv.Opencode(t)
	sup, err := New(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sup.Sandbox = sandbox.New() // as serve runs them
	st := &states{ch: make(chan string, 64)}
	sup.OnState = st.on
	sup.MinBackoff = 50 * time.Millisecond
	t.Cleanup(func() { sup.Close() })
	return sup, st
}

// specs makes the Spec of an agent by name: its own directory, the
// scripted model at modelURL.
func specs(t *testing.T, modelURL string) func(name string) Spec {
	return func(n string) Spec { return Spec{Name: n, Dir: t.TempDir(), Config: testenv.Config(modelURL, "")} }
}

func ready(t *testing.T, in *Instance) *opencode.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := in.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInstanceStartsIsolatedOnLoopback(t *testing.T) {
	t.Parallel()
	sup, _ := newSup(t)
	_, modelURL := testenv.Model(t)
	dir := t.TempDir()
	in, err := sup.Ensure(Spec{Name: "a", Dir: dir, Config: testenv.Config(modelURL, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := ready(t, in)
	if !strings.HasPrefix(c.BaseURL, "http://127.0.0.1:") {
		t.Errorf("instance listens on %s, want loopback", c.BaseURL)
	}
	h, err := c.Health(context.Background())
	if err != nil || h.Version != opencode.Version {
		t.Fatalf("health %+v, %v", h, err)
	}
	// Without the password, nothing answers.
	anon := *c
	anon.Password = ""
	if _, err := anon.Health(context.Background()); err == nil {
		t.Error("instance answered without its password")
	}
	cfg := filepath.Join(dir+".instance", "config", "opencode", "opencode.json")
	// The config is the sandbox user's to read (root:GID 0640 under a
	// root daemon), and nobody's to write; the log is the daemon's alone.
	cfgMode := os.FileMode(0o600)
	if os.Geteuid() == 0 {
		cfgMode = 0o640
	}
	for p, mode := range map[string]os.FileMode{cfg: cfgMode, filepath.Join(dir+".instance", "opencode.log"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v; want mode %v", p, err, mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(os.Geteuid()) {
			t.Errorf("%s belongs to uid %d, not the daemon's", p, st.Uid)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir+".instance", "opencode.log"))
	if strings.Contains(string(log), c.Password) {
		t.Error("the instance password is in its log")
	}
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", in.PID()))
	env := strings.Split(string(environ), "\x00")
	for _, want := range []string{"HOME=" + filepath.Join(dir+".instance", "home"), "OPENCODE_DISABLE_AUTOUPDATE=1", "OPENCODE_DISABLE_MODELS_FETCH=1"} {
		if !containsStr(env, want) {
			t.Errorf("instance env lacks %s", want)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, testenv.EnvBinary+"=") {
			t.Error("the daemon's own environment leaked into the instance")
		}
	}
	// Its own process group.
	if pgid, _ := syscall.Getpgid(in.PID()); pgid != in.PID() {
		t.Errorf("pgid %d, want its own group %d", pgid, in.PID())
	}
	// Its footprint is that of every process under it, as ps sees them
	// (opencode runs in the inner sandbox's own session, not the group).
	want := psTreeRSS(t, in.PID())
	got := in.Usage()
	if diff := float64(got.MemoryBytes-want) / float64(want); diff < -0.1 || diff > 0.1 {
		t.Errorf("usage reports %d MiB in %d processes; ps shows %d MiB under the instance", got.MemoryBytes>>20, got.Processes, want>>20)
	}
}

// psTreeRSS sums the resident memory of root and every process below it,
// as ps reports them.
func psTreeRSS(t *testing.T, root int) int64 {
	t.Helper()
	out, err := exec.Command("ps", "-e", "-o", "pid=,ppid=,rss=").Output()
	if err != nil {
		t.Fatal(err)
	}
	children := map[int][]int{}
	rss := map[int]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var pid, ppid int
		var kb int64
		if n, _ := fmt.Sscan(l, &pid, &ppid, &kb); n == 3 {
			children[ppid] = append(children[ppid], pid)
			rss[pid] = kb << 10
		}
	}
	var sum int64
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		sum += rss[queue[0]]
		queue = append(queue, children[queue[0]]...)
	}
	return sum
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCrashIsNoticedAndRestarted(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	_, modelURL := testenv.Model(t)
	in, err := sup.Ensure(Spec{Name: "a", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	if err != nil {
		t.Fatal(err)
	}
	ready(t, in)
	st.waitFor(t, "a:ready")
	old := in.PID()
	syscall.Kill(old, syscall.SIGKILL)
	st.waitFor(t, "a:crashed")
	st.waitFor(t, "a:restarted")
	c := ready(t, in)
	if in.PID() == old || in.PID() == 0 {
		t.Fatalf("pid %d after restart (was %d)", in.PID(), old)
	}
	if err := c.CheckVersion(context.Background()); err != nil {
		t.Fatal(err)
	}
	if in.Restarts() != 1 {
		t.Errorf("restarts = %d, want 1", in.Restarts())
	}
}

// Each crash of an instance that was ready and served is repaired after
// the shortest delay, however many came before.
// A process that was ready and served is replaced at once after a crash,
// however many crashes came before: the backoff is for processes that die
// while starting.
func TestAnInstanceThatServedIsRestartedAtOnce(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	sup.MaxBackoff = time.Hour
	_, modelURL := testenv.Model(t)
	in, err := sup.Ensure(Spec{Name: "a", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 4; n++ {
		ready(t, in)
		if n == 0 {
			st.waitFor(t, "a:ready")
		} else {
			st.waitFor(t, "a:restarted")
		}
		syscall.Kill(in.PID(), syscall.SIGKILL)
		st.waitFor(t, "a:crashed")
		in.mu.Lock()
		delay := in.delay
		in.mu.Unlock()
		if delay != 0 {
			t.Fatalf("crash %d: restart delay %v, want none", n+1, delay)
		}
	}
}

func TestTwoInstancesAndStop(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	_, modelURL := testenv.Model(t)
	a, _ := sup.Ensure(Spec{Name: "a", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	b, _ := sup.Ensure(Spec{Name: "b", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	ca, cb := ready(t, a), ready(t, b)
	if ca.BaseURL == cb.BaseURL || a.PID() == b.PID() {
		t.Fatalf("instances share %s", ca.BaseURL)
	}
	for _, c := range []*opencode.Client{ca, cb} {
		if err := c.CheckVersion(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	pid := a.PID()
	sup.Stop("a")
	st.waitFor(t, "a:stopped")
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("pid %d alive after Stop", pid)
	}
	recs, _ := sup.pids.load()
	if len(recs) != 1 || recs[0].Name != "b" {
		t.Errorf("pid record %+v, want only b", recs)
	}
	if err := cb.CheckVersion(context.Background()); err != nil {
		t.Errorf("b disturbed by a's stop: %v", err)
	}
}

func TestMaxRunningStopsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	sup.MaxRunning = 1
	_, modelURL := testenv.Model(t)
	a, _ := sup.Ensure(Spec{Name: "a", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	ready(t, a)
	b, _ := sup.Ensure(Spec{Name: "b", Dir: t.TempDir(), Config: testenv.Config(modelURL, "")})
	st.waitFor(t, "a:stopped")
	ready(t, b)
	if sup.Get("a") != nil || sup.Get("b") == nil {
		t.Error("want only b running")
	}
}

// Under the cap, an instance in a turn is never stopped: a newcomer waits
// for a slot, in order, and gets one as soon as an instance is idle.
func TestCapWaitsForAnIdleSlot(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	sup.MaxRunning = 1
	_, modelURL := testenv.Model(t)
	spec := specs(t, modelURL)
	a, _ := sup.Ensure(spec("a"))
	ready(t, a)
	releaseA := sup.Hold("a") // a is in a turn
	releaseB := sup.Hold("b") // so is b, once it runs
	b, _ := sup.Ensure(spec("b"))
	st.waitFor(t, "b:waiting")
	c, _ := sup.Ensure(spec("c"))
	st.waitFor(t, "c:waiting")
	if pb, pc := sup.Position("b"), sup.Position("c"); pb != 1 || pc != 2 || sup.Position("a") != 0 {
		t.Errorf("places in line: b %d, c %d, a %d; want 1, 2, 0", pb, pc, sup.Position("a"))
	}
	if err := ready(t, a).CheckVersion(context.Background()); err != nil || a.State() != Ready {
		t.Fatalf("a, in a turn, was disturbed: %v, state %s", err, a.State())
	}
	releaseA() // a's turn ends: b, first in line, takes its slot
	st.waitFor(t, "a:stopped")
	ready(t, b)
	if c.State() != Waiting {
		t.Errorf("c: %s, want still waiting behind b", c.State())
	}
	releaseB()
	st.waitFor(t, "b:stopped")
	ready(t, c)
}

// Over the cap, an idle instance whose agent has input queued is stopped
// for a waiter only if no other idle instance can be: here b, although a
// was used less recently.
func TestCapSparesAnAgentWithQueuedInput(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	sup.MaxRunning = 2
	_, modelURL := testenv.Model(t)
	spec := specs(t, modelURL)
	a, _ := sup.Ensure(spec("a"))
	b, _ := sup.Ensure(spec("b"))
	ready(t, a)
	ready(t, b)
	b.Touch() // a is the least recently used
	sup.SetQueued("a", true)
	defer sup.Hold("c")()
	c, _ := sup.Ensure(spec("c"))
	st.waitFor(t, "b:stopped")
	ready(t, c)
	if sup.Get("a") != a || a.State() != Ready {
		t.Fatalf("a, with input queued, was disturbed: %s", a.State())
	}
	// When the only idle instance is one whose agent has input queued, it
	// makes room once its quantum is spent, for a waiter with work of its
	// own (victim has the cases).
	sup.mu.Lock()
	sup.Quantum = time.Millisecond
	sup.mu.Unlock()
	defer sup.Hold("d")()
	sup.SetQueued("d", true)
	sup.Ensure(spec("d"))
	st.waitFor(t, "a:stopped")
}

// An instance that nobody holds gives its slot away as soon as it is
// ready, if another waits: nothing is left waiting behind an idle instance
// (the waiter used to wait for a hold that never came).
func TestCapIdleInstanceMakesRoomWhenReady(t *testing.T) {
	t.Parallel()
	sup, st := newSup(t)
	sup.MaxRunning = 1
	_, modelURL := testenv.Model(t)
	spec := specs(t, modelURL)
	if _, err := sup.Ensure(spec("a")); err != nil { // starting, held by no one
		t.Fatal(err)
	}
	defer sup.Hold("b")()
	b, _ := sup.Ensure(spec("b"))
	st.waitFor(t, "b:waiting")
	st.waitFor(t, "a:ready")
	st.waitFor(t, "a:stopped")
	ready(t, b)
}

func TestBadBinaryFailsClearly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fake := filepath.Join(dir, "opencode")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'opencode server listening on http://127.0.0.1:1'\nsleep 60\n"), 0o755)
	sup, err := New(fake, dir)
	if err != nil {
		t.Fatal(err)
	}
	sup.StartTimeout = 2 * time.Second
	errs := make(chan error, 8)
	sup.OnState = func(name string, st State, pid int, err error) {
		if st == Failed {
			errs <- err
		}
	}
	defer sup.Close()
	if _, err := sup.Ensure(Spec{Name: "a", Dir: dir, Config: testenv.Config("http://127.0.0.1:9/v1", "")}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "health") {
			t.Errorf("err = %v, want a health check failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no failure reported")
	}
}

// TestSweepKillsOnlyOwnOrphans simulates a crash of the daemon: a helper
// process (this test binary, re-run as a "daemon") starts an instance whose
// tool runs `sleep`, and is killed with SIGKILL. The next start's sweep must
// kill exactly what that daemon left behind.
func TestSweepKillsOnlyOwnOrphans(t *testing.T) {
	t.Parallel()
	bin := testenv.Opencode(t)
	state := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDaemon$")
	cmd.Env = append(os.Environ(), "TAOSAGENT_HELPER_DAEMON="+state)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ocPID, toolPID int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "READY %d %d", &ocPID, &toolPID); n == 2 {
			break
		}
	}
	if toolPID == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("helper daemon never got its instance running a tool")
	}
	// A process of someone else's: must survive the sweep.
	decoy := exec.Command("sleep", "300")
	decoy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { decoy.Process.Kill(); decoy.Wait() }()

	cmd.Process.Signal(syscall.SIGKILL) // the daemon crashes
	cmd.Wait()

	// A recorded pid now owned by an unrelated, older process (pid reuse)
	// must not be killed either.
	sup, err := New(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	pi, _ := readStat(decoy.Process.Pid)
	sup.pids.add(procRecord{Name: "reused", PID: decoy.Process.Pid, Start: pi.start + 1, BootID: bootID()})
	// A stranger leading a group whose id was recorded for a process that
	// has since died: started after the record, it is still not ours.
	stranger := exec.Command("setsid", "sleep", "300")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stranger.Process.Kill(); stranger.Wait() }()
	si, _ := readStat(stranger.Process.Pid)
	sup.pids.add(procRecord{Name: "gone", PID: stranger.Process.Pid, Start: si.start - 1, BootID: bootID()})

	killed, err := sup.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if !containsInt(killed, toolPID) {
		t.Errorf("sweep killed %v; the orphaned tool %d was not among them", killed, toolPID)
	}
	if containsInt(killed, decoy.Process.Pid) || containsInt(killed, stranger.Process.Pid) {
		t.Fatalf("sweep killed %v: an unrelated process (%d or %d) among them", killed, decoy.Process.Pid, stranger.Process.Pid)
	}
	for _, pid := range []int{ocPID, toolPID} {
		// SIGKILL is delivered at once; give the kernel its moment.
		for i := 0; i < 100; i++ {
			if _, alive := readStat(pid); !alive {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, alive := readStat(pid); alive {
			t.Errorf("pid %d of the crashed daemon's instance still alive", pid)
		}
	}
	if err := syscall.Kill(decoy.Process.Pid, 0); err != nil {
		t.Errorf("decoy died: %v", err)
	}
	if recs, _ := sup.pids.load(); len(recs) != 0 {
		t.Errorf("record not emptied: %+v", recs)
	}
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// TestHelperDaemon is the "daemon" of TestSweepKillsOnlyOwnOrphans; it does
// nothing unless run by it.
func TestHelperDaemon(t *testing.T) {
	state := os.Getenv("TAOSAGENT_HELPER_DAEMON")
	if state == "" {
		t.Skip("helper process only")
	}
	_, modelURL := testenv.Model(t)
	sup, err := New(testenv.Opencode(t), state)
	if err != nil {
		t.Fatal(err)
	}
	in, err := sup.Ensure(Spec{Name: "a", Dir: filepath.Join(state, "a"), Config: testenv.Config(modelURL, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := ready(t, in)
	s, err := c.CreateSession(context.Background(), "orphan")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PromptAsync(context.Background(), s.ID, opencode.Prompt{Text: "run a slow tool please"}); err != nil {
		t.Fatal(err)
	}
	recs, _ := sup.pids.load()
	for i := 0; i < 600 && len(recs) == 1; i++ {
		for _, pid := range taggedProcesses(recs[0].Token) {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if strings.TrimSpace(string(comm)) == "sleep" {
				fmt.Printf("READY %d %d\n", in.PID(), pid)
				select {} // wait to be killed
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the tool never started")
}
