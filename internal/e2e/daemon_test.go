// Package e2e drives the real taosagent binary: the daemon with the real
// opencode and its built-in scripted demo model, through the HTTP API, the
// Go client and the CLI.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	taohome "github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/supervisor"
	"github.com/taosagent/taosagent/internal/testenv"
)

var (
	binary string
	// stamp is the record of the pinned opencode's verification, made
	// once, after testenv.Opencode verified it: a new home starts with it,
	// as a home whose daemon verified the binary before, and is spared
	// seconds of hashing and running it at each daemon start. Tests that
	// give their own home verify anew.
	stamp     []byte
	stampOnce sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taosagent-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "taosagent")
	args := []string{"build", "-o", binary}
	if raceFlag != "" {
		args = append(args, raceFlag)
	}
	out, err := exec.Command("go", append(args, "../../cmd/taosagent")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one running `taosagent serve`.
type daemon struct {
	t    testing.TB
	home string
	cmd  *exec.Cmd
	addr string
	c    *client.Client
	log  *syncBuffer
	done chan struct{}
	// onTurnEnd, if set, is called as each turn turnsEach runs ends.
	onTurnEnd func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listening = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

// start runs the daemon on home (a new one if ""), and waits until it
// answers.
func start(t testing.TB, home string, extra ...string) *daemon {
	t.Helper()
	return startIn(t, home, nil, extra...)
}

// startEnv runs a new daemon with env added to its environment.
func startEnv(t testing.TB, env []string, extra ...string) *daemon {
	t.Helper()
	return startIn(t, "", env, extra...)
}

func startIn(t testing.TB, home string, env []string, extra ...string) *daemon {
	t.Helper()
	d, err := launch(t, home, env, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newHome is a new, empty home whose opencode is known verified (its
// stamp written once for the run): a daemon started on it does not run
// the binary to check it again.
func newHome(t testing.TB) string {
	bin := testenv.Opencode(t)
	home := t.TempDir()
	stampOnce.Do(func() {
		f := filepath.Join(t.TempDir(), "stamp.json")
		if opencode.WriteStamp(f, bin) == nil {
			stamp, _ = os.ReadFile(f)
		}
	})
	if stamp != nil {
		if err := os.WriteFile(taohome.Home{Dir: home}.OpencodeStamp(), stamp, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// launch is startIn, with an error for a daemon that exits or does not
// answer.
func launch(t testing.TB, home string, env []string, extra ...string) (*daemon, error) {
	t.Helper()
	bin := testenv.Opencode(t)
	if home == "" {
		home = newHome(t)
	}
	cmd := exec.Command(binary, append([]string{"serve", "--home", home, "--listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(append(os.Environ(), "TAOSAGENT_OPENCODE="+bin), env...)
	return launchCmd(t, home, cmd)
}

// launchCmd starts cmd, a daemon of home (a serve command, or one that
// execs it), and waits for it to listen.
func launchCmd(t testing.TB, home string, cmd *exec.Cmd) (*daemon, error) {
	t.Helper()
	d := &daemon{t: t, home: home, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.log
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.log.Write([]byte(sc.Text() + "\n"))
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	go func() { cmd.Wait(); close(d.done) }()
	select {
	case d.addr = <-addr:
	case <-d.done:
		return d, fmt.Errorf("daemon exited:\n%s", d.log)
	case <-time.After(60 * time.Second):
		d.kill()
		return d, fmt.Errorf("daemon did not start:\n%s", d.log)
	}
	token, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		t.Fatal(err)
	}
	d.c = &client.Client{Base: d.addr, Token: strings.TrimSpace(string(token))}
	t.Cleanup(func() {
		d.stop()
		// Instances outlive a daemon that is killed (to be adopted by the
		// next): none may outlive the test.
		if pids, _ := supervisor.Leftovers(taohome.Home{Dir: home}.Run()); len(pids) > 0 {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log)
		}
	})
	return d, nil
}

// stop ends the daemon with SIGTERM, as a service manager would.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		// Its goroutines, in the log, say where it is stuck.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		d.t.Errorf("daemon did not stop on SIGTERM")
	}
}

// kill ends the daemon with SIGKILL: no chance to clean up.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.done
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// turnOf follows agent's events after seq after until the turn of input
// has ended, and returns that turn's events in order.
func (d *daemon) turnOf(ctx context.Context, agent string, after, input int64) []client.Event {
	d.t.Helper()
	var turn string
	var out []client.Event
	err := d.c.Stream(ctx, agent, after, func(e client.Event) bool {
		if turn == "" && (e.Kind == "turn.started" || e.Kind == "input.steered") && e.Field("input") == fmt.Sprint(input) {
			turn = e.Turn
		}
		if turn == "" || e.Turn != turn {
			return true
		}
		out = append(out, e)
		return e.Kind != "final" && e.Kind != "error"
	})
	if err != nil {
		d.t.Fatalf("following %s's turn of input %d: %v (events %v)", agent, input, err, kinds(out))
	}
	return out
}

func kinds(evs []client.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind))
	}
	return out
}

// order checks that the first occurrences of want appear in that order.
func order(t *testing.T, evs []client.Event, want ...string) {
	t.Helper()
	i := 0
	for _, e := range evs {
		if i < len(want) && string(e.Kind) == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("events %v: want in order %v", kinds(evs), want)
	}
	for j := 1; j < len(evs); j++ {
		if evs[j].Seq <= evs[j-1].Seq {
			t.Fatalf("seq not increasing: %d after %d", evs[j].Seq, evs[j-1].Seq)
		}
	}
}

func last(evs []client.Event) client.Event {
	if len(evs) == 0 {
		return client.Event{}
	}
	return evs[len(evs)-1]
}

func (d *daemon) send(ctx context.Context, agent, text, mode string) client.Accepted {
	d.t.Helper()
	acc, err := d.c.Send(ctx, agent, client.Message{Text: text, Mode: mode})
	if err != nil {
		d.t.Fatalf("send to %s: %v", agent, err)
	}
	return acc
}

func (d *daemon) agent(ctx context.Context, name, permission string) {
	d.t.Helper()
	a := client.Agent{Name: name, Model: "demo/scripted-demo"}
	if permission != "" {
		a.Permission = []byte(permission)
	}
	if _, err := d.c.CreateAgent(ctx, a); err != nil {
		d.t.Fatalf("create agent %s: %v", name, err)
	}
}

func (d *daemon) run(args ...string) (stdout, stderr string, code int) {
	return d.runWith("", args...)
}

// runWith runs the CLI with stdin on its standard input.
func (d *daemon) runWith(stdin string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "TAOSAGENT_HOME="+d.home, "TAOSAGENT_ADDR="+d.addr)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	return request(t, "GET", url, token, "")
}

// request makes a request, with a JSON body unless body is "", and returns
// its status and body.
func request(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func patch(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	return request(t, "PATCH", url, token, body)
}

// agentConfig is the opencode config the daemon writes for agent name.
func agentConfig(homeDir, name string) string { return taohome.Home{Dir: homeDir}.AgentConfig(name) }

// instanceDir is the daemon's own directory of agent name's instance.
func instanceDir(homeDir, name string) string { return taohome.Home{Dir: homeDir}.Instance(name) }

// onePending waits until exactly one approval is pending, and returns it.
func (d *daemon) onePending(t *testing.T, ctx context.Context) client.Approval {
	t.Helper()
	var ap client.Approval
	waitFor(t, ctx, func() bool {
		aps, _ := d.c.Approvals(ctx, "pending")
		if len(aps) == 1 {
			ap = aps[0]
		}
		return len(aps) == 1
	})
	return ap
}
