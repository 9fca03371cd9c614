package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/hostid"
)

// probeBin is the escape-probe program, built once by TestMain.
var probeBin string

// base holds the tests' workspaces.
var base string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taosagent-probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	base = dir
	probeBin = filepath.Join(dir, "probe")
	build := exec.Command("go", "build", "-o", probeBin, "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build probe: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newSandbox returns a working sandbox or fails: bubblewrap is part of the
// test environment (make test installs it), so its absence is a failure.
func newSandbox(t *testing.T) *Sandbox {
	t.Helper()
	s := New()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("sandbox unavailable (make deps installs bubblewrap): %v", err)
	}
	return s
}

// workspace returns a fresh workspace holding a copy of the probe.
func workspace(t *testing.T) string {
	t.Helper()
	ws, err := os.MkdirTemp(base, "ws-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ws) })
	data, err := os.ReadFile(probeBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "probe"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	return ws
}

func run(t *testing.T, s *Sandbox, ws string, lim Limits, cmd ...string) *Result {
	t.Helper()
	res, err := s.Run(context.Background(), Spec{Workspace: ws, Command: cmd, Limits: lim})
	if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return res
}

// TestEscapeProbes runs each escape attempt in the sandbox; every one must
// be blocked, and the host must show no trace of it.
func TestEscapeProbes(t *testing.T) {
	s := newSandbox(t)

	// A secret planted in a home directory, and one in /root; the sandbox
	// must see neither. /etc/shadow exists on the host.
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(home, ".taosagent-probe-secret")
	if err := os.WriteFile(secret, []byte("hunter2"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(secret) })

	// A server on the host's loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()

	outside := filepath.Join(base, "outside.txt")
	tmpMarker := filepath.Join(os.TempDir(), fmt.Sprintf("taosagent-escape-%d", time.Now().UnixNano()))
	cases := []struct {
		name string
		args []string
		// own: the attempt may succeed inside the sandbox, in a disposable
		// place of its own; only the host side is checked.
		own bool
	}{
		{"write next to the workspace", []string{"write", outside}, false},
		{"write /tmp (the sandbox's own)", []string{"write", tmpMarker}, true},
		{"write /usr", []string{"write", "/usr/local/escaped"}, false},
		{"write /etc", []string{"write", "/etc/escaped"}, false},
		{"read /etc/shadow", []string{"read", "/etc/shadow"}, false},
		{"read a home secret", []string{"read", secret}, false},
		{"connect to host loopback", []string{"connect", ln.Addr().String()}, false},
		{"ptrace", []string{"ptrace"}, false},
		{"mount", []string{"mount"}, false},
		{"setuid root", []string{"setuid"}, false},
		{"kernel keyring", []string{"keyring"}, false},
		{"new user namespace", []string{"unshare"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws := workspace(t)
			res := run(t, s, ws, Limits{Wall: 20 * time.Second}, append([]string{"./probe"}, c.args...)...)
			out := string(res.Stdout) + string(res.Stderr)
			if c.own {
				return
			}
			if res.ExitCode != 0 || !strings.HasPrefix(string(res.Stdout), "blocked:") {
				t.Fatalf("probe not blocked: exit %d, output %q", res.ExitCode, out)
			}
		})
	}
	for _, p := range []string{outside, tmpMarker, "/usr/local/escaped", "/etc/escaped"} {
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s was written on the host", p)
		}
	}
	select {
	case <-accepted:
		t.Error("the host's loopback server accepted a connection from the sandbox")
	default:
	}
}

func TestSetuidBinaryGainsNothing(t *testing.T) {
	s := newSandbox(t)
	// /usr/bin/mount is setuid root on Debian; inside the sandbox
	// no_new_privs and the user namespace leave it powerless.
	res := run(t, s, workspace(t), Limits{Wall: 20 * time.Second}, "/bin/sh", "-c",
		"grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; id -u; /usr/bin/mount -t tmpfs none /tmp && echo MOUNTED")
	out := string(res.Stdout)
	if strings.Contains(out, "MOUNTED") {
		t.Fatalf("setuid mount worked: %s", out)
	}
	for _, want := range []string{"NoNewPrivs:\t1", "CapEff:\t0000000000000000", "1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestIsolation(t *testing.T) {
	s := newSandbox(t)
	t.Setenv("TAOSAGENT_TEST_SECRET", "s3cr3t-value")
	res := run(t, s, workspace(t), Limits{Wall: 20 * time.Second}, "/bin/sh", "-c",
		"env; echo host=$(cat /proc/sys/kernel/hostname); ls /proc/sys/net/ipv4/conf; ls -a /; ls /home /root 2>&1; ps -e 2>/dev/null | wc -l; cat /proc/1/cmdline | tr '\\0' ' '")
	out := string(res.Stdout) + string(res.Stderr)
	if strings.Contains(out, "s3cr3t-value") {
		t.Errorf("the caller's environment leaked into the sandbox:\n%s", out)
	}
	if !strings.Contains(out, "host=sandbox") {
		t.Errorf("hostname not isolated:\n%s", out)
	}
	// Only the loopback of its own: conf holds all, default, lo.
	if strings.Contains(out, "eth") || strings.Contains(out, "veth") {
		t.Errorf("a host network interface is visible:\n%s", out)
	}
	if !strings.Contains(out, "cannot access '/home'") || !strings.Contains(out, "cannot access '/root'") {
		t.Errorf("home directories visible:\n%s", out)
	}
	if !strings.Contains(out, "bwrap") {
		t.Errorf("pid 1 is not the sandbox's own init:\n%s", out)
	}
}

func TestWorkspaceIsWritableAndHandedBack(t *testing.T) {
	s := newSandbox(t)
	ws := workspace(t)
	res := run(t, s, ws, Limits{Wall: 20 * time.Second}, "/bin/sh", "-c", "mkdir -p out && echo built > out/app.js && cat out/app.js")
	if !res.OK() || strings.TrimSpace(string(res.Stdout)) != "built" {
		t.Fatalf("build in the workspace failed: %+v %s", res, res.Stderr)
	}
	fi, err := os.Stat(filepath.Join(ws, "out", "app.js"))
	if err != nil {
		t.Fatalf("output not in the host workspace: %v", err)
	}
	wsInfo, _ := os.Stat(ws)
	if got, want := fi.Sys().(*syscall.Stat_t).Uid, wsInfo.Sys().(*syscall.Stat_t).Uid; got != want {
		t.Errorf("output owned by uid %d, want the workspace owner %d", got, want)
	}
}

func TestLimits(t *testing.T) {
	s := newSandbox(t)
	cases := []struct {
		name string
		lim  Limits
		cmd  []string
		want string
	}{
		{"command that never ends", Limits{Wall: 1 * time.Second}, []string{"/bin/sleep", "1000"}, LimitWall},
		{"cpu spin", Limits{Wall: 30 * time.Second, CPU: time.Second}, []string{"./probe", "spin"}, LimitCPU},
		{"memory hog", Limits{Wall: 30 * time.Second, Memory: 512 << 20}, []string{"./probe", "memory"}, LimitMemory},
		{"file too big", Limits{Wall: 30 * time.Second, FileSize: 1 << 20}, []string{"/bin/sh", "-c", "head -c 4000000 /dev/zero > big"}, LimitFileSize},
		{"fork bomb", Limits{Wall: 3 * time.Second, Processes: 32}, []string{"/bin/sh", "-c", "b() { while :; do b & done; }; b"}, LimitProcesses},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, s, workspace(t), c.lim, c.cmd...)
			if res.LimitHit != c.want {
				t.Fatalf("limit hit = %q, want %q (exit %d, signal %q, cpu %v, wall %v)\nstdout %.300s\nstderr %.300s",
					res.LimitHit, c.want, res.ExitCode, res.Signal, res.CPUTime, res.Duration, res.Stdout, res.Stderr)
			}
			if res.OK() {
				t.Fatal("a run that hit a limit reports OK")
			}
			if strings.HasPrefix(string(res.Stdout), "escaped") {
				t.Fatalf("probe escaped its limit: %s", res.Stdout)
			}
			// Nothing of the run is left on the host.
			if out, _ := exec.Command("pgrep", "-f", strings.Join(c.cmd, " ")).Output(); len(out) > 0 {
				t.Errorf("processes of the run survived it: %s", out)
			}
		})
	}
}

// Found in review: the file-size limit is per file, and the workspace sat
// on the host's disk with no bound (four 60 MB files under a 64 MB limit
// all succeeded). A run made by root works on a copy of at most Disk
// bytes: what it can write to the host's disk is bounded.
func TestWhatARunWritesIsBoundedInTotal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the workspace is bounded in total for runs made by root (the daemon)")
	}
	s := newSandbox(t)
	ws := workspace(t)
	res := run(t, s, ws, Limits{Wall: 60 * time.Second, FileSize: 64 << 20, Disk: 100 << 20},
		"/bin/sh", "-c", "for i in 1 2 3 4; do head -c 60000000 /dev/zero > f$i || exit 1; done")
	if res.OK() || res.LimitHit != LimitDisk {
		t.Fatalf("four 60 MB files under a 100 MB disk limit: limit %q, exit %d\nstderr %.300s", res.LimitHit, res.ExitCode, res.Stderr)
	}
	var total int64
	filepath.Walk(ws, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	if total > 100<<20 {
		t.Fatalf("the run wrote %d bytes into the host workspace, over its 100 MiB limit", total)
	}
	t.Logf("the run wrote %d MB back (limit 100 MiB)", total/1e6)

	// A workspace larger than the limit is refused before the command runs.
	res = run(t, s, ws, Limits{Wall: 30 * time.Second, Disk: 8 << 20}, "/bin/sh", "-c", "echo ran > ran.txt")
	if res.OK() || res.LimitHit != LimitDisk || fileExists(filepath.Join(ws, "ran.txt")) {
		t.Fatalf("a workspace over the limit: limit %q, exit %d, stderr %.200s", res.LimitHit, res.ExitCode, res.Stderr)
	}
}

// The copy is written back as the command left it: new and changed files,
// and what it removed is removed; a run that is killed writes nothing back.
func TestTheWorkspaceCopyIsWrittenBack(t *testing.T) {
	s := newSandbox(t)
	ws := workspace(t)
	os.WriteFile(filepath.Join(ws, "old.txt"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(ws, "keep.txt"), []byte("v1"), 0o644)
	res := run(t, s, ws, Limits{Wall: 20 * time.Second}, "/bin/sh", "-c", "rm old.txt && echo v2 > keep.txt && mkdir -p d && echo new > d/new.txt")
	if !res.OK() {
		t.Fatalf("run: %+v %s", res, res.Stderr)
	}
	if fileExists(filepath.Join(ws, "old.txt")) {
		t.Error("a file the run removed is still there")
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "keep.txt")); string(b) != "v2\n" {
		t.Errorf("changed file: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "d", "new.txt")); string(b) != "new\n" {
		t.Errorf("new file: %q", b)
	}
	res = run(t, s, ws, Limits{Wall: time.Second}, "/bin/sh", "-c", "echo x > killed.txt; rm keep.txt; sleep 100")
	if res.LimitHit != LimitWall {
		t.Fatalf("want the wall limit: %+v", res)
	}
	if os.Geteuid() == 0 && (fileExists(filepath.Join(ws, "killed.txt")) || !fileExists(filepath.Join(ws, "keep.txt"))) {
		t.Error("a killed run wrote its workspace back")
	}
}

// Found in review: /tmp was an unsized tmpfs (half the host's memory, not
// counted by the data limit). It holds Tmp bytes at most.
func TestTmpIsBounded(t *testing.T) {
	s := newSandbox(t)
	res := run(t, s, workspace(t), Limits{Wall: 30 * time.Second, Tmp: 16 << 20},
		"/bin/sh", "-c", "head -c 100000000 /dev/zero > /tmp/fill; wc -c < /tmp/fill; exit 1")
	n, _ := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64)
	if res.LimitHit != LimitDisk || n > 16<<20 || n == 0 {
		t.Fatalf("/tmp filler: limit %q, wrote %d bytes (limit 16 MiB)\nstderr %.300s", res.LimitHit, n, res.Stderr)
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestFailuresAreData(t *testing.T) {
	s := newSandbox(t)
	res := run(t, s, workspace(t), Limits{Wall: 20 * time.Second}, "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
	if res.ExitCode != 7 || res.Signal != "" || res.LimitHit != "" {
		t.Errorf("exit = %d signal %q limit %q, want 7", res.ExitCode, res.Signal, res.LimitHit)
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	res = run(t, s, workspace(t), Limits{Wall: 20 * time.Second}, "/bin/sh", "-c", "kill -SEGV $$")
	if res.Signal != "SIGSEGV" {
		t.Errorf("signal = %q (exit %d), want SIGSEGV", res.Signal, res.ExitCode)
	}
	res = run(t, s, workspace(t), Limits{Wall: 20 * time.Second, Output: 1000}, "/bin/sh", "-c", "head -c 50000 /dev/zero")
	if len(res.Stdout) != 1000 || res.StdoutDropped != 49000 {
		t.Errorf("kept %d bytes, dropped %d; want 1000 and 49000", len(res.Stdout), res.StdoutDropped)
	}
}

func TestCancelKillsEverything(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	ws := workspace(t)
	res, err := s.Run(ctx, Spec{Workspace: ws, Command: []string{"/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"}})
	if !errors.Is(err, context.DeadlineExceeded) || res == nil {
		t.Fatalf("err = %v, want deadline exceeded with a result", err)
	}
	// No process of the sandbox is left on the host.
	out, _ := exec.Command("pgrep", "-f", "sleep 1000").Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("sandboxed processes survived the cancel: %s", out)
	}
}

func TestRefusesWithoutBubblewrap(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran-on-host")
	fake := filepath.Join(t.TempDir(), "bwrap")
	// A bwrap that cannot make namespaces, as on a kernel without user namespaces.
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"), 0o755)
	for name, bin := range map[string]string{"missing": "/nonexistent/bwrap", "broken": fake} {
		t.Run(name, func(t *testing.T) {
			s := New()
			s.Bwrap = bin
			_, err := s.Run(context.Background(), Spec{Workspace: t.TempDir(), Command: []string{"/bin/sh", "-c", "touch " + marker}})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command ran on the host")
			}
		})
	}
}

func TestBadSpec(t *testing.T) {
	s := newSandbox(t)
	for name, spec := range map[string]Spec{
		"no command":         {Workspace: t.TempDir()},
		"missing workspace":  {Workspace: "/nonexistent/ws", Command: []string{"true"}},
		"relative read-only": {Workspace: t.TempDir(), Command: []string{"true"}, ReadOnly: []string{"usr"}},
	} {
		if _, err := s.Run(context.Background(), spec); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: err = %v, want a usage error", name, err)
		}
	}
}

// A workspace under a directory only root may search (such as /root) is
// reached through root's outer layer (the fork bomb of TestLimits shows
// that the run still takes an unprivileged uid).
func TestWorkspaceUnderPrivateDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the run to another user")
	}
	s := newSandbox(t)
	private := t.TempDir()
	os.Chmod(private, 0o700)
	ws := filepath.Join(private, "ws")
	os.Mkdir(ws, 0o755)
	res, err := s.Run(context.Background(), Spec{Workspace: ws, Command: []string{"sh", "-c", "id -u > made-by"}})
	if err != nil || !res.OK() {
		t.Fatalf("run: %v %+v %s", err, res, res.Stderr)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "made-by")); err != nil || strings.TrimSpace(string(b)) != "1000" {
		t.Errorf("made-by = %q, %v", b, err)
	}
}

// BenchmarkStartOverhead runs `true` directly and in the sandbox, in
// alternation, and reports the median of each, the median added time and
// their ratio.
func BenchmarkStartOverhead(b *testing.B) {
	s := New()
	if err := s.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	ws, err := os.MkdirTemp(base, "bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(ws)
	var direct, boxed []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := exec.Command("/usr/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(t0))
		t0 = time.Now()
		res, err := s.Run(context.Background(), Spec{Workspace: ws, Command: []string{"/usr/bin/true"}})
		if err != nil || !res.OK() {
			b.Fatalf("sandboxed true: %v %+v", err, res)
		}
		boxed = append(boxed, time.Since(t0))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	md, mb := med(direct), med(boxed)
	b.ReportMetric(float64(md.Microseconds())/1000, "direct-ms")
	b.ReportMetric(float64(mb.Microseconds())/1000, "sandbox-ms")
	b.ReportMetric(float64((mb-md).Microseconds())/1000, "added-ms")
	b.ReportMetric(float64(mb)/float64(md), "ratio")
}

// TestTheWorkspaceIsTheDirectoryResolved: root binds the workspace it
// resolved, held open: a path with a link swapped into it is refused,
// and the command holds no descriptor of the host's directory.
func TestTheWorkspaceIsTheDirectoryResolved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the held workspace is root's")
	}
	s := newSandbox(t)
	ws := workspace(t)
	res := run(t, s, ws, Limits{Wall: 20 * time.Second}, "/bin/sh", "-c", "ls -l /proc/$$/fd")
	if out := string(res.Stdout); !res.OK() || strings.Contains(out, " 4 -> ") || strings.Contains(out, ws) {
		t.Errorf("the command holds the host's workspace: %s %s", out, res.Stderr)
	}
	outside := t.TempDir()
	link := filepath.Join(t.TempDir(), "swapped")
	os.Symlink(outside, link)
	if _, err := openNoLinks(filepath.Join(link, ".")); err == nil {
		t.Error("a path through a link was opened")
	}
}

// Runs made by root with a pool of build ids each run as an id of their
// own, seen from the host while they run, and give the workspace back to
// its owner.
func TestEachBuildRunsAsAnIdOfItsOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("build ids are for runs made by root")
	}
	s := newSandbox(t)
	s.BuildIDs = &hostid.Pool{Range: hostid.Range{First: hostid.DefaultBase + hostid.AgentCount, Count: 2}}
	// Two runs at once, each waiting on its stdin: each is found on the
	// host under an id of the pool, and not the same one.
	type running struct {
		in   *io.PipeWriter
		done chan *Result
	}
	var runs []running
	var wss []string
	for i := range 2 {
		ws := workspace(t)
		wss = append(wss, ws)
		r, w := io.Pipe()
		done := make(chan *Result, 1)
		go func() {
			res, err := s.Run(context.Background(), Spec{Workspace: ws, Stdin: r, Limits: Limits{Wall: time.Minute},
				Command: []string{"/bin/sh", "-c", "read x; touch made" + strconv.Itoa(i)}})
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		runs = append(runs, running{w, done})
	}
	uids := map[int]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(uids) < 2 && time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			fi, err := os.Stat("/proc/" + e.Name())
			if err != nil {
				continue
			}
			if uid := int(fi.Sys().(*syscall.Stat_t).Uid); s.BuildIDs.Range.Contains(uid) {
				uids[uid] = true
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the process table
	}
	for i, r := range runs {
		r.in.Write([]byte("go\n"))
		r.in.Close()
		if res := <-r.done; res == nil || !res.OK() {
			t.Fatalf("run %d: %+v", i, res)
		}
		fi, err := os.Stat(filepath.Join(wss[i], "made"+strconv.Itoa(i)))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Fatalf("run %d's file was not handed back to root: %v", i, err)
		}
	}
	if len(uids) != 2 {
		t.Fatalf("the runs' host uids: %v (want the pool's two)", uids)
	}
}
