package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/client"
)

// instanceSecrets finds the opencode process of agent under home and
// returns its port and password, read from the host as only the daemon's
// user can.
func instanceSecrets(t testing.TB, home, agent string) (port, password string) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(instanceDir(home, agent), "opencode.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`listening on http://127\.0\.0\.1:(\d+)`).FindAllSubmatch(log, -1)
	if len(m) == 0 {
		t.Fatalf("no listening line in %s's log", agent)
	}
	port = string(m[len(m)-1][1])
	if pid := instancePID(home, agent); pid > 0 {
		env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("OPENCODE_SERVER_PASSWORD=")); ok {
				return port, string(v)
			}
		}
	}
	t.Fatalf("no opencode process of %s found", agent)
	return "", ""
}

// TestConfinedToolCannotReachTheHost gives a confined agent every opencode
// permission there is, then has its bash tool try, with the real secrets
// handed to it, what a prompt injection would try. The sandbox must stop
// each attempt, and the host must show nothing changed.
func TestConfinedToolCannotReachTheHost(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	const leakKey = "sk-leaktest-4f1d2c9a7b"
	if _, err := d.c.CreateProvider(ctx, client.Provider{ID: "leak", BaseURL: "https://example.invalid/v1",
		APIKey: leakKey, Models: []client.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	d.agent(ctx, "other", "")
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "probe", Model: "demo/scripted-demo",
		Permission: []byte(`{"bash":"allow","external_directory":"allow","read":"allow","edit":"allow"}`),
		Limits:     &agent.Limits{Processes: 300, TmpMB: 64}}); err != nil {
		t.Fatal(err)
	}
	// recycle_mb's default is a share of the machine's memory, at least 1 GiB.
	if a, err := d.c.Agent(ctx, "probe"); err != nil || a.Limits == nil || a.Limits.RecycleMB < 1024 ||
		*a.Limits != (agent.Limits{MemoryMB: 8192, Processes: 300, FileSizeMB: 1024, TmpMB: 64, RecycleMB: a.Limits.RecycleMB}) {
		t.Fatalf("probe's limits: %+v, %v", a.Limits, err)
	}
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/probe", d.c.Token, `{"limits":{"memory_mb":10}}`); code != 422 || !strings.Contains(body, "limits.memory_mb") {
		t.Fatalf("PATCH limits below the floor: %d %s", code, body)
	}
	for _, a := range []string{"other", "probe"} {
		acc := d.send(ctx, a, "hello", "")
		if e := last(d.turnOf(ctx, a, 0, acc.Input)); e.Kind != "final" {
			t.Fatalf("%s's first turn ended %s: %s", a, e.Kind, e.Data)
		}
	}
	otherSecret := filepath.Join(d.home, "agents", "other", "work", "secret.txt")
	if err := os.WriteFile(otherSecret, []byte("other-agent-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, password := instanceSecrets(t, d.home, "probe")
	daemonPort := d.addr[strings.LastIndex(d.addr, ":")+1:]
	basic := base64.StdEncoding.EncodeToString([]byte("opencode:" + password))
	workdir := filepath.Join(d.home, "agents", "probe", "work")
	hostTmp := filepath.Join(os.TempDir(), fmt.Sprintf("taosagent-pwned-%d", time.Now().UnixNano()))
	targets := map[string]string{
		"token":  filepath.Join(d.home, "token"),
		"key":    filepath.Join(d.home, "keys", "leak.key"),
		"db":     filepath.Join(d.home, "taosagent.db"),
		"other":  agentConfig(d.home, "other"),
		"secret": otherSecret,
		"shadow": "/etc/shadow",
	}
	var script strings.Builder
	for name, p := range targets {
		fmt.Fprintf(&script, "if head -c1 %q >/dev/null 2>&1; then echo READ-%s; else echo DENIED-%s; fi; ", p, name, name)
	}
	writes := []string{filepath.Join(d.home, "pwned"), filepath.Join(d.home, "agents", "other", "work", "pwned"), hostTmp,
		agentConfig(d.home, "probe")}
	for i, p := range writes {
		fmt.Fprintf(&script, "if echo x >> %q 2>/dev/null; then echo WROTE-%d; else echo NOWRITE-%d; fi; ", p, i, i)
	}
	fmt.Fprintf(&script, "if kill -9 %d 2>/dev/null; then echo KILLED; else echo NOKILL; fi; ", d.cmd.Process.Pid)
	// Its own instance, with the real password: the way to answer its own
	// permission asks. And the daemon, with the real operator token.
	fmt.Fprintf(&script, "if (exec 3<>/dev/tcp/127.0.0.1/%s && printf 'GET /permission HTTP/1.0\\r\\nAuthorization: Basic %s\\r\\n\\r\\n' >&3 && head -c 12 <&3) 2>/dev/null; then echo REACHED-OPENCODE; else echo UNREACHABLE-OPENCODE; fi; ", port, basic)
	fmt.Fprintf(&script, "if (exec 3<>/dev/tcp/127.0.0.1/%s && printf 'GET /v1/approvals HTTP/1.0\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n' >&3 && head -c 12 <&3) 2>/dev/null; then echo REACHED-DAEMON; else echo UNREACHABLE-DAEMON; fi; ", daemonPort, d.c.Token)
	script.WriteString("if grep -qs OPENCODE_SERVER_PASSWORD /proc/*/environ; then echo SAW-PASSWORD; else echo NO-PASSWORD; fi; ")
	script.WriteString("env | grep -c OPENCODE; ")
	script.WriteString(`echo NPROC=$(ulimit -u) TMPMB=$(df -m /tmp | awk 'NR==2{print $2}'); `)
	script.WriteString("echo inside > inside.txt && echo WROTE-INSIDE")

	acc := d.send(ctx, "probe", "run: bash -c "+shellQuote(script.String()), "")
	evs := d.turnOf(ctx, "probe", 0, acc.Input)
	var out string
	for _, e := range evs {
		if e.Kind == "tool_result" {
			out = e.Field("output")
		}
	}
	if out == "" {
		t.Fatalf("no tool result; events %v", kinds(evs))
	}
	for name := range targets {
		if !strings.Contains(out, "DENIED-"+name) {
			t.Errorf("the tool could read %s (%s)", name, targets[name])
		}
	}
	// A write under /tmp may land in the sandbox's private /tmp; what
	// counts is the host, checked below.
	if !strings.Contains(out, "NOWRITE-3") {
		t.Errorf("the tool could rewrite its own opencode config")
	}
	for _, want := range []string{"NOKILL", "UNREACHABLE-OPENCODE", "UNREACHABLE-DAEMON", "NO-PASSWORD", "WROTE-INSIDE", "NPROC=300 TMPMB=64"} {
		if !strings.Contains(out, want) {
			t.Errorf("tool output lacks %s", want)
		}
	}
	for _, secret := range []string{password, d.c.Token, leakKey, "other-agent-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret reached the tool's output")
		}
	}
	if t.Failed() {
		t.Logf("tool output:\n%s", out)
	}

	// The host: nothing changed, and the daemon still answers.
	for _, p := range writes[:3] {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the host", p)
			os.Remove(p)
		}
	}
	if b, _ := os.ReadFile(otherSecret); string(b) != "other-agent-secret" {
		t.Errorf("the other agent's file changed: %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(workdir, "inside.txt")); err != nil || string(b) != "inside\n" {
		t.Errorf("the tool's write in its own workdir: %q, %v", b, err)
	}
	if code, _ := get(t, d.addr+"/healthz", ""); code != 200 {
		t.Errorf("daemon health %d after the probe", code)
	}
	as, err := d.c.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Status == nil || !a.Status.Confined {
			t.Errorf("agent %s is not shown confined: %+v", a.Name, a.Status)
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestDeleteLeavesNothingBehind: a deleted agent's directory (its opencode
// config holds its provider's key) is gone, a new agent of the same name
// inherits none of its events, and a deleted provider's key file is gone.
func TestDeleteLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	const key = "sk-deletetest-77aa11"
	if _, err := d.c.CreateProvider(ctx, client.Provider{ID: "gone", BaseURL: "http://127.0.0.1:9/v1",
		APIKey: key, Models: []client.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "temp", Model: "gone/m"}); err != nil {
		t.Fatal(err)
	}
	// Its turn cannot end (nothing listens at the provider); the config
	// is written once the instance is ready, and the agent is deleted
	// mid-turn.
	d.send(ctx, "temp", "hello", "")
	d.c.Stream(ctx, "temp", 0, func(e client.Event) bool {
		return !(e.Kind == "instance" && e.Field("state") == "ready")
	})
	dir := filepath.Join(d.home, "agents", "temp")
	gwKey, _ := os.ReadFile(filepath.Join(instanceDir(d.home, "temp"), "gateway.key"))
	b, err := os.ReadFile(agentConfig(d.home, "temp"))
	if err != nil || len(gwKey) == 0 || !strings.Contains(string(b), strings.TrimSpace(string(gwKey))) {
		t.Fatalf("precondition: the agent's config with its gateway key: %v", err)
	}
	if strings.Contains(string(b), key) {
		t.Fatal("the upstream's key is in the agent's config")
	}
	if err := d.c.DeleteAgent(ctx, "temp"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{dir, instanceDir(d.home, "temp")} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s survived the agent's deletion", dir)
		}
	}
	// Its gateway key ended with it.
	req, _ := http.NewRequest("GET", d.addr+"/llm/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(gwKey)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("the deleted agent's gateway key: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "temp", Model: "demo/scripted-demo"}); err != nil {
		t.Fatal(err)
	}
	if evs, err := d.c.Events(ctx, "temp", 0, 1000); err != nil || len(evs) != 0 {
		t.Errorf("the new agent temp inherited %d events (%v)", len(evs), err)
	}
	if err := d.c.DeleteAgent(ctx, "temp"); err != nil {
		t.Fatal(err)
	}
	if err := d.c.DeleteProvider(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.home, "keys", "gone.key")); err == nil {
		t.Error("the deleted provider's key file survived")
	}
}

// TestIdleAgentIsStopped: the daemon's idle stop (the runner's timer)
// stops an agent's opencode after --idle-timeout, and the next message
// starts it again.
func TestIdleAgentIsStopped(t *testing.T) {
	t.Parallel()
	d := start(t, "", "--idle-timeout", "1s")
	ctx := ctxT(t, 2*time.Minute)
	acc := d.send(ctx, "host", "hello", "")
	evs := d.turnOf(ctx, "host", 0, acc.Input)
	d.c.Stream(ctx, "host", last(evs).Seq, func(e client.Event) bool {
		return !(e.Kind == "instance" && e.Field("state") == "stopped")
	})
	if a, err := d.c.Agent(ctx, "host"); err != nil || a.Status == nil || a.Status.State != "stopped" || a.Status.PID != 0 {
		t.Fatalf("after the idle stop: %+v %v", a.Status, err)
	}
	acc = d.send(ctx, "host", "hello again", "")
	if e := last(d.turnOf(ctx, "host", 0, acc.Input)); e.Kind != "final" {
		t.Fatalf("the turn after the idle stop ended %s", e.Kind)
	}
}

// TestNoSandboxNoInstance: where bubblewrap cannot be found, the daemon
// still serves, and a turn ends with one clean error that names the fix;
// nothing runs on the host.
func TestNoSandboxNoInstance(t *testing.T) {
	t.Parallel()
	d := startEnv(t, []string{"PATH=/nonexistent"})
	ctx := ctxT(t, time.Minute)
	acc := d.send(ctx, "host", "hello", "")
	evs := d.turnOf(ctx, "host", 0, acc.Input)
	var ends []client.Event
	for _, e := range evs {
		if e.Kind == "final" || e.Kind == "error" {
			ends = append(ends, e)
		}
		if e.Kind == "instance" && e.Field("state") == "ready" {
			t.Fatal("an instance started without its sandbox")
		}
	}
	if len(ends) != 1 || ends[0].Field("code") != "instance_failed" || !strings.Contains(ends[0].Field("message"), "apt-get install -y bubblewrap") {
		t.Fatalf("want one instance_failed error naming the fix: %+v", ends)
	}
	if !strings.Contains(d.log.String(), "sandbox cannot be built") {
		t.Errorf("the daemon's log does not say the sandbox is missing:\n%s", d.log)
	}
}
