package e2e

import (
	"bufio"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/npmpkg"
	"github.com/taosagent/taosagent/internal/testenv"
)

// everythingServer is an MCP server no one here wrote, from the npm
// registry, served over streamable HTTP: the remote server of the test.
const everythingServer = "@modelcontextprotocol/server-everything@2026.8.31"

// TestAnAgentReachesARemoteMCPServerThroughItsPolicy: a remote MCP server
// of the Library (npm's server-everything over streamable HTTP, on a
// "public" machine of a test network, behind a host that wants a bearer
// token) is reached by the daemon for the agent, through the agent's
// egress policy, with the token a person set, and bridged at the agent's
// door: the real opencode calls its tools. An agent whose policy does not
// name the host gets an event, and the host sees nothing. The token is in
// no file of the agent, no config and no event.
func TestAnAgentReachesARemoteMCPServerThroughItsPolicy(t *testing.T) {
	t.Parallel()
	nw := testenv.NewNetwork(t)
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)

	// The remote machine: server-everything on its loopback, and in front
	// of it, on its public address, a host that wants a token.
	pkg, err := (&npmpkg.Installer{Root: t.TempDir()}).Ensure(ctx, everythingServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(node, pkg.Bin, "streamableHttp")
	srv.Env = append(os.Environ(), "PORT=3001")
	stderr, _ := srv.StderrPipe()
	if err := nw.NS.Do(srv.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on port") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	const token = "Bearer remote-secret-7d1f0c"
	var authed, refused atomic.Int32
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "127.0.0.1:3001"}) },
		Transport: &http.Transport{DialContext: nw.NS.DialContext}, FlushInterval: -1}
	ln, err := nw.NS.Listen(nw.Public.String() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != token {
			refused.Add(1)
			http.Error(w, "a token is wanted", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		rp.ServeHTTP(w, r)
	})}
	go front.Serve(ln)
	t.Cleanup(func() { front.Close() })

	dir, write := itemDir(t)
	write("item.json", `{"kind":"mcp","name":"everything","description":"A remote server.","mcp":{"url":"http://`+ln.Addr().String()+`/mcp","headers":["Authorization"]}}`)
	if out, errOut, code := d.run("library", "add", dir); code != 0 {
		t.Fatalf("library add (%d): %s %s", code, out, errOut)
	}
	if out, errOut, code := d.runWith(token+"\n", "library", "secret", "mcp/everything", "Authorization"); code != 0 {
		t.Fatalf("library secret (%d): %s %s", code, out, errOut)
	}
	give := func(name, egress string) {
		t.Helper()
		d.agent(ctx, name, `{"*":"allow"}`)
		if code, body := request(t, "PATCH", d.addr+"/v1/agents/"+name, d.c.Token, `{"library":["mcp/everything"],"egress":`+egress+`}`); code != 200 {
			t.Fatalf("give the server (%d): %s", code, body)
		}
	}
	give("far", `{"mode":"hosts","hosts":["`+nw.Public.String()+`"]}`)
	give("near", `{"mode":"none"}`)

	acc := d.send(ctx, "far", `call everything_echo {"message":"hello from far"}`, "")
	evs := d.turnOf(ctx, "far", 0, acc.Input)
	var out string
	for _, e := range evs {
		if e.Kind == "tool_result" && e.Field("tool") == "everything_echo" {
			out = e.Field("output") + e.Field("error")
		}
	}
	if !strings.Contains(out, "hello from far") || authed.Load() == 0 || refused.Load() != 0 {
		t.Fatalf("the remote tool: %q (authed %d, refused %d; %v, last %s)", out, authed.Load(), refused.Load(), kinds(evs), last(evs).Data)
	}

	// near's policy names no host: its turn goes on without the server,
	// its log says why, and the remote machine sees nothing more.
	before := authed.Load()
	acc = d.send(ctx, "near", `call everything_echo {"message":"hello from near"}`, "")
	d.turnOf(ctx, "near", 0, acc.Input)
	evs, err = d.c.Events(ctx, "near", 0, 1000, "instance")
	if err != nil {
		t.Fatal(err)
	}
	told := false
	for _, e := range evs {
		told = told || e.Field("state") == "mcp_failed" && strings.Contains(e.Field("message"), "refused")
	}
	if !told || authed.Load() != before || refused.Load() != 0 {
		t.Errorf("near reached the remote server, or was not told: told %v, authed %d → %d, refused %d", told, before, authed.Load(), refused.Load())
	}

	// The token is the daemon's alone.
	for _, name := range []string{"far", "near"} {
		for _, dir := range []string{filepath.Join(d.home, "agents", name), filepath.Join(d.home, "instances", name)} {
			filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.Type().IsRegular() {
					if b, _ := os.ReadFile(p); strings.Contains(string(b), "remote-secret") {
						t.Errorf("the token is in %s", p)
					}
				}
				return nil
			})
		}
		if _, body := get(t, d.addr+"/v1/agents/"+name+"/events?limit=5000", d.c.Token); strings.Contains(body, "remote-secret") {
			t.Errorf("the token is in %s's events", name)
		}
	}
}
