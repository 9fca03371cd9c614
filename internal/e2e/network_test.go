package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/netns"
	"github.com/taosagent/taosagent/internal/testenv"
)

// instancePID is the host pid of agent's opencode (the `opencode serve`
// whose HOME is its instance's, not the sandbox around it), 0 if none
// runs.
func instancePID(home, agent string) int {
	wantHome := []byte("HOME=" + filepath.Join(instanceDir(home, agent), "home") + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, wantHome) {
			continue
		}
		args, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if a := bytes.Split(args, []byte{0}); len(a) > 1 && bytes.HasSuffix(a[0], []byte("/opencode")) && string(a[1]) == "serve" {
			return pid
		}
	}
	return 0
}

// instanceHTTP is a client whose connections are made inside the network
// namespace of agent's running instance (on the host's network when the
// daemon gives it none): how a test reaches opencode's own port.
func instanceHTTP(t *testing.T, home, agent string) *http.Client {
	t.Helper()
	pid := instancePID(home, agent)
	if pid == 0 {
		t.Fatalf("%s's opencode is not running", agent)
	}
	if os.Geteuid() != 0 {
		return http.DefaultClient
	}
	ns, err := netns.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}}
}

// procUID is the real uid of process pid.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// TestAnInstanceReachesOnlyItsDoor runs agents on the real opencode and
// has them try, with opencode's own webfetch (which runs in opencode's
// process) and with a tool, what a prompt-injected model would: the
// daemon's API, another loopback service, a machine on the LAN (a private
// address in a network namespace the test makes) and one on the internet
// (a public address routed into that namespace only). Only the door's
// routes and what the agent's egress policy allows are reached.
func TestAnInstanceReachesOnlyItsDoor(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a network namespace per instance needs the daemon to run as root")
	}
	nw := testenv.NewNetwork(t)
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	privURL, privHits := nw.Serve(t, nw.Private)
	pubURL, pubHits := nw.Serve(t, nw.Public)
	var localHits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localHits.Add(1)
		io.WriteString(w, "a loopback service of the host")
	}))
	t.Cleanup(local.Close)
	// The host reaches both machines of the test network: what the agent
	// cannot reach is there.
	for _, u := range []string{privURL, pubURL} {
		resp, err := http.Get(u + "/")
		if err != nil {
			t.Fatalf("the host cannot reach the test network at %s: %v", u, err)
		}
		resp.Body.Close()
	}
	privHits.Store(0)
	pubHits.Store(0)

	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "web", Model: "demo/scripted-demo",
		Permission: []byte(`{"webfetch":"allow","bash":"allow"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "other", Model: "demo/scripted-demo",
		Tools: map[string]bool{"taos": true}}); err != nil {
		t.Fatal(err)
	}
	fetch := func(urls ...string) []string {
		t.Helper()
		var calls []any
		for _, u := range urls {
			calls = append(calls, "webfetch", map[string]any{"url": u, "format": "text"})
		}
		calls = append(calls, "bash", map[string]any{"description": "reach out", "command": fmt.Sprintf(
			"for u in %s; do curl -s -m 5 -o /dev/null -w 'curl %%{http_code} ' $u || echo unreachable; done", strings.Join(urls, " "))})
		acc := d.send(ctx, "web", steps(calls...), "")
		evs := d.turnOf(ctx, "web", 0, acc.Input)
		if e := last(evs); e.Kind != "final" {
			t.Fatalf("web's turn ended %s: %s", e.Kind, e.Data)
		}
		var out []string
		for i := range len(urls) + 1 {
			_, o := resultOf(t, evs, i)
			out = append(out, o)
		}
		return out
	}
	daemonURL := d.addr + "/v1/agents"
	// https goes to the proxy as a CONNECT (HTTPS_PROXY): refused under
	// none before anything is dialled.
	httpsURL := "https://" + nw.Public.String() + ":8443/"
	out := fetch(daemonURL, local.URL+"/", privURL+"/", pubURL+"/", httpsURL)
	for i, o := range out {
		if strings.Contains(o, "page of the test network") || strings.Contains(o, "loopback service") || strings.Contains(o, `"agents"`) ||
			strings.Contains(o, "Unauthorized") || strings.Contains(o, "curl 200") || strings.Contains(o, "curl 401") {
			t.Errorf("call %d reached its target from inside the instance: %s", i, o)
		}
	}
	if privHits.Load()+pubHits.Load()+localHits.Load() != 0 {
		t.Fatalf("hits from inside the instance: private %d, public %d, loopback %d", privHits.Load(), pubHits.Load(), localHits.Load())
	}

	// The namespace itself, as any code in opencode's process would meet
	// it, whatever the proxy variables say: only the door is there.
	pid := instancePID(d.home, "web")
	if pid == 0 {
		t.Fatal("web's opencode is not running")
	}
	ns, err := netns.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for _, target := range []string{strings.TrimPrefix(d.addr, "http://"), strings.TrimPrefix(local.URL, "http://"),
		strings.TrimPrefix(privURL, "http://"), strings.TrimPrefix(pubURL, "http://")} {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := ns.DialContext(dctx, "tcp", target)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s is reachable from the instance's namespace", target)
		}
	}
	inside := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}}
	doorGet := func(path, key string) (int, string) {
		req, _ := http.NewRequest("GET", door.URL+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := inside.Do(req)
		if err != nil {
			t.Fatalf("the door: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := doorGet("/v1/agents", d.c.Token); code != 404 {
		t.Errorf("the door served the daemon's API with the operator's token: %d %s", code, body)
	}
	if code, body := doorGet("/healthz", ""); code != 404 {
		t.Errorf("the door served /healthz: %d %s", code, body)
	}

	// The door names its agent: the gateway takes web's key through web's
	// door, and no other agent's.
	acc := d.send(ctx, "other", "call taos_status {}", "")
	evs := d.turnOf(ctx, "other", 0, acc.Input)
	if e := last(evs); e.Kind != "final" {
		t.Fatalf("other's turn ended %s: %s", e.Kind, e.Data)
	}
	if _, o := resultOf(t, evs, 0); !strings.Contains(o, "version") {
		t.Errorf("taosagent's MCP tools through other's door: %s", o)
	}
	// Each instance runs as a host uid of its own: a process of one
	// agent's uid reads its own instance's /proc, never the other's.
	otherPID := instancePID(d.home, "other")
	webUID, otherUID := procUID(t, pid), procUID(t, otherPID)
	if webUID == otherUID || webUID < hostid.DefaultBase || otherUID < hostid.DefaultBase {
		t.Errorf("the instances' host uids: web %d, other %d", webUID, otherUID)
	}
	for _, c := range []struct {
		pid  int
		want bool
	}{{pid, true}, {otherPID, false}} {
		err := exec.Command("setpriv", "--reuid", strconv.Itoa(webUID), "--regid", strconv.Itoa(webUID), "--clear-groups",
			"cat", fmt.Sprintf("/proc/%d/environ", c.pid)).Run()
		if (err == nil) != c.want {
			t.Errorf("as web's uid, reading /proc/%d/environ: %v (want read: %v)", c.pid, err, c.want)
		}
	}
	for _, dir := range []string{filepath.Join(d.home, "agents", "web"), filepath.Join(d.home, "agents", "web", "work")} {
		if fi, err := os.Stat(dir); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != webUID {
			t.Errorf("%s does not belong to web's uid %d", dir, webUID)
		}
	}
	key := func(name string) string {
		b, err := os.ReadFile(filepath.Join(instanceDir(d.home, name), "gateway.key"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if code, body := doorGet("/llm/v1/models", key("web")); code != 200 {
		t.Errorf("web's key at web's door: %d %s", code, body)
	}
	if code, body := doorGet("/llm/v1/models", key("other")); code != 403 || !strings.Contains(body, "wrong_door") {
		t.Errorf("other's key at web's door: %d %s", code, body)
	}

	// public: the public machine through the proxy, and nothing local.
	patch := func(egress string) {
		t.Helper()
		if code, body := request(t, "PATCH", d.addr+"/v1/agents/web", d.c.Token, `{"egress":`+egress+`}`); code != 200 {
			t.Fatalf("PATCH egress %s: %d %s", egress, code, body)
		}
	}
	patch(`{"mode":"public"}`)
	// Loopback by another name than NO_PROXY's: asked of the proxy.
	localLoop := strings.Replace(local.URL, "127.0.0.1", "[::1]", 1)
	out = fetch(pubURL+"/", localLoop+"/", privURL+"/")
	// opencode's webfetch and the tool's curl, each through the proxy.
	if !strings.Contains(out[0], "page of the test network at "+nw.Public.String()) || pubHits.Load() != 2 {
		t.Errorf("public: the public machine was not reached through the proxy (%d hits): %s", pubHits.Load(), out[0])
	}
	if localHits.Load()+privHits.Load() != 0 || !strings.Contains(out[1], "403") || !strings.Contains(out[2], "403") {
		t.Errorf("public: loopback (%d hits) or private (%d hits) reached: %q %q", localHits.Load(), privHits.Load(), out[1], out[2])
	}
	// The tool's one way out is the same proxy, through its relay.
	if out[3] != "curl 200 curl 403 curl 403 " {
		t.Errorf("public: the tool reached %q, want the public machine alone", out[3])
	}
	// A list of hosts: the LAN machine a person named.
	patch(fmt.Sprintf(`{"mode":"hosts","hosts":[%q]}`, nw.Private.String()))
	out = fetch(privURL+"/", pubURL+"/")
	if !strings.Contains(out[0], "page of the test network at "+nw.Private.String()) || !strings.Contains(out[1], "403") || pubHits.Load() != 2 {
		t.Errorf("hosts: %q %q (public hits %d)", out[0], out[1], pubHits.Load())
	}
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/host", d.c.Token, `{"egress":{"mode":"public"}}`); code != 422 {
		t.Errorf("the host agent given egress: %d %s", code, body)
	}

	// Every destination is in web's events, refusals too.
	var allowed, refused []string
	err = d.c.Stream(ctx, "web", 0, func(e client.Event) bool {
		if e.Kind == "egress" {
			dest := e.Field("method") + " " + e.Field("host") + ":" + e.Field("port")
			if e.Field("allowed") == "true" {
				allowed = append(allowed, dest)
			} else {
				refused = append(refused, dest)
			}
		}
		all := strings.Join(allowed, " ")
		return !strings.Contains(all, nw.Public.String()) || !strings.Contains(all, nw.Private.String()) || len(refused) < 6
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(allowed, " "), nw.Public.String()) || !strings.Contains(strings.Join(allowed, " "), nw.Private.String()) ||
		!strings.Contains(strings.Join(refused, " "), "::1") || !strings.Contains(strings.Join(refused, " "), "CONNECT "+nw.Public.String()+":8443") {
		t.Errorf("egress events: allowed %v, refused %v", allowed, refused)
	}
}
