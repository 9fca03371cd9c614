package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// TestAnAgentWorksInItsWorkspaces: a person gives an agent three host
// directories: root's project read-write (its working directory), a user's
// project (uid 1000) read-write and a read-only one. Through the real
// opencode (its write tool), its tools (bash) and its MCP server (npm's
// server-filesystem), the agent writes in the first two as their owners
// under its own uid (the server under its own), changes no existing file's
// owner or mode, cannot write the third, and can set no set-ID bit. A
// workspace that is missing, a link, a system directory or taosagent's
// home is refused with a 422 that names it, and changes nothing.
func TestAnAgentWorksInItsWorkspaces(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("workspaces are bound as their owner's by a daemon running as root")
	}
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	base := t.TempDir()
	project := func(name string, uid int, file, content string) string {
		t.Helper()
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, filepath.Join(dir, file)} {
			if err := os.Chown(p, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	app := project("app", 0, "README", "root's project\n")
	user := project("user", 1000, "notes.txt", "notes\n")
	docs := project("docs", 1000, "guide.txt", "the guide\n")
	link := filepath.Join(base, "link")
	if err := os.Symlink(app, link); err != nil {
		t.Fatal(err)
	}

	d.agent(ctx, "worker", `{"*":"allow"}`)
	url := d.addr + "/v1/agents/worker"
	for _, c := range []struct{ body, says string }{
		{`{"workspaces":[{"name":"x","path":"` + base + `/missing","mode":"rw"}]}`, "missing"},
		{`{"workspaces":[{"name":"x","path":"` + d.home + `","mode":"rw"}]}`, "taosagent's home"},
		{`{"workspaces":[{"name":"x","path":"/etc/ssl","mode":"ro"}]}`, "system directory"},
		{`{"workspaces":[{"name":"x","path":"` + link + `","mode":"ro"}]}`, "symbolic link"},
		{`{"workspaces":[{"name":"x","path":"` + app + `","mode":"all"}]}`, "ro or rw"},
		{`{"workspaces":[{"name":"x","path":"` + app + `"}],"workdir":"y"}`, "is not one of its workspaces"},
	} {
		if code, body := request(t, "PATCH", url, d.c.Token, c.body); code != 422 || !strings.Contains(body, c.says) {
			t.Errorf("PATCH %s: %d %s, want 422 saying %q", c.body, code, body, c.says)
		}
	}
	if _, body := get(t, url, d.c.Token); strings.Contains(body, "workspaces") {
		t.Fatalf("a refused change changed the agent: %s", body)
	}

	give, _ := json.Marshal(map[string]any{"workdir": "app", "workspaces": []map[string]string{
		{"name": "app", "path": app, "mode": "rw"}, {"name": "user", "path": user, "mode": "rw"}, {"name": "docs", "path": docs}}})
	if code, body := request(t, "PATCH", url, d.c.Token, string(give)); code != 200 {
		t.Fatalf("give the workspaces (%d): %s", code, body)
	}
	var shown struct {
		Workdir    string
		Workspaces []struct{ Name, Path, Mode string }
	}
	_, body := get(t, url, d.c.Token)
	json.Unmarshal([]byte(body), &shown)
	if shown.Workdir != "app" || len(shown.Workspaces) != 3 || shown.Workspaces[2].Mode != "ro" {
		t.Fatalf("the agent as shown: %s", body)
	}
	if out, _, _ := d.run("agents"); !strings.Contains(out, "/workspaces/app = "+app+" (rw, workdir)") || !strings.Contains(out, "/workspaces/docs = "+docs+" (ro)") {
		t.Errorf("taosagent agents does not show the workspaces:\n%s", out)
	}

	// opencode's own write tool, in its working directory.
	acc := d.send(ctx, "worker", "write a file", "")
	if evs := d.turnOf(ctx, "worker", 0, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("write a file: %v %s", kinds(evs), last(evs).Data)
	}
	// Its tools, everywhere.
	acc = d.send(ctx, "worker", "run: pwd; echo made > new.txt; echo more >> /workspaces/user/notes.txt; echo x > /workspaces/user/made.txt; "+
		"(echo y > /workspaces/docs/z) 2>/dev/null || echo DOCS-REFUSED; chmod u+s new.txt 2>/dev/null || echo SETUID-REFUSED; "+
		"cat /workspaces/docs/guide.txt; stat -c '%u %a' new.txt", "")
	evs := d.turnOf(ctx, "worker", 0, acc.Input)
	var out string
	for _, e := range evs {
		if e.Kind == "tool_result" {
			out = e.Field("output") + e.Field("error")
		}
	}
	for _, want := range []string{"/workspaces/app\n", "DOCS-REFUSED", "SETUID-REFUSED", "the guide", "1000 644"} {
		if !strings.Contains(out, want) {
			t.Errorf("the tool's output lacks %q: %q (%v)", want, out, kinds(evs))
		}
	}

	// On the host: each file the agent made is its directory's owner's,
	// and what was there keeps its owner and mode.
	for _, c := range []struct {
		path, content string
		uid           uint32
		mode          os.FileMode
	}{
		{filepath.Join(app, "out.txt"), "written by the scripted model\n", 0, 0},
		{filepath.Join(app, "new.txt"), "made\n", 0, 0o644},
		{filepath.Join(app, "README"), "root's project\n", 0, 0o640},
		{filepath.Join(user, "made.txt"), "x\n", 1000, 0},
		{filepath.Join(user, "notes.txt"), "notes\nmore\n", 1000, 0o640},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		b, _ := os.ReadFile(c.path)
		st := fi.Sys().(*syscall.Stat_t)
		if string(b) != c.content || st.Uid != c.uid || st.Gid != c.uid || (c.mode != 0 && fi.Mode() != c.mode) {
			t.Errorf("%s: %q, owner %d:%d, mode %v; want %q, owner %d, mode %v", c.path, b, st.Uid, st.Gid, fi.Mode(), c.content, c.uid, c.mode)
		}
	}
	if _, err := os.Lstat(filepath.Join(docs, "z")); err == nil {
		t.Error("the read-only workspace was written")
	}

	// Its MCP server (npm's server-filesystem) sees the workspaces as the
	// agent does ("rw"), under its own uid, and writes as their owner.
	dir, write := itemDir(t)
	write("item.json", `{"kind":"mcp","name":"files","description":"The agent's workspaces.","mcp":{"package":"`+filesServer+
		`","args":["/workspaces/user","/workspaces/docs"],"workspace":"rw"}}`)
	if out, errOut, code := d.run("library", "add", dir); code != 0 {
		t.Fatalf("library add (%d): %s %s", code, out, errOut)
	}
	if code, body := request(t, "PATCH", url, d.c.Token, `{"library":["mcp/files"]}`); code != 200 {
		t.Fatalf("give the server (%d): %s", code, body)
	}
	call := func(tool, args string) string {
		t.Helper()
		acc := d.send(ctx, "worker", "call "+tool+" "+args, "")
		evs := d.turnOf(ctx, "worker", 0, acc.Input)
		for _, e := range evs {
			if e.Kind == "tool_result" && e.Field("tool") == tool {
				return e.Field("output") + e.Field("error")
			}
		}
		t.Fatalf("%s: no result: %v (last: %s)", tool, kinds(evs), last(evs).Data)
		return ""
	}
	call("files_write_file", `{"path":"/workspaces/user/by-mcp.txt","content":"from the server\n"}`)
	if fi, err := os.Lstat(filepath.Join(user, "by-mcp.txt")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("the server's file: %v %v, want it uid 1000's", fi, err)
	}
	if out := call("files_write_file", `{"path":"/workspaces/docs/by-mcp.txt","content":"x"}`); !strings.Contains(strings.ToLower(out), "read-only") {
		t.Errorf("the server wrote the read-only workspace: %q", out)
	}
	if _, err := os.Lstat(filepath.Join(docs, "by-mcp.txt")); err == nil {
		t.Error("the read-only workspace was written by the server")
	}

	// A workspace that goes away is a finding of doctor's.
	if out, _, code := d.run("doctor", "workspaces"); code != 0 || !strings.Contains(out, "3 workspaces given to agents are there") {
		t.Errorf("doctor workspaces (%d): %s", code, out)
	}
	if err := os.Rename(docs, docs+"-moved"); err != nil {
		t.Fatal(err)
	}
	if out, _, code := d.run("doctor", "workspaces"); code == 0 || !strings.Contains(out, "agent worker's workspace docs ("+docs+") is gone") {
		t.Errorf("doctor workspaces, one gone (%d): %s", code, out)
	}
}

// TestAToolsInstallsStayAndGoOutThroughTheProxy: an agent whose egress
// policy allows the npm registry installs a package with its bash tool
// (npm install -g, from the real registry, through the daemon's egress
// proxy: the tool's sandbox has no other way out); the package is still
// there at the next turn, in the agent's own toolchain home. The tool's
// request is an egress event, and one to a host the policy does not name
// is refused. (The agent's long name makes its proxy socket's path longer
// than a socket's address holds: the daemon binds it all the same.)
func TestAToolsInstallsStayAndGoOutThroughTheProxy(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the tools' proxy is the door's, which needs root")
	}
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "toolchain-builder-with-long-name", `{"*":"allow"}`)
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/toolchain-builder-with-long-name", d.c.Token, `{"egress":{"mode":"hosts","hosts":["registry.npmjs.org"]}}`); code != 200 {
		t.Fatalf("PATCH egress: %d %s", code, body)
	}
	run := func(cmd string) string {
		t.Helper()
		acc := d.send(ctx, "toolchain-builder-with-long-name", "run: "+cmd, "")
		evs := d.turnOf(ctx, "toolchain-builder-with-long-name", 0, acc.Input)
		for _, e := range evs {
			if e.Kind == "tool_result" {
				return e.Field("output") + e.Field("error")
			}
		}
		t.Fatalf("%s: no tool result: %v %s", cmd, kinds(evs), last(evs).Data)
		return ""
	}
	out := run("npm install -g --no-audit --no-fund is-number@7.0.0 2>&1; echo HOME=$HOME; " +
		"npm view left-pad version --registry https://example.com/ 2>&1 | grep -c -i -E 'refused|403|ECONNRESET|E[A-Z]+' || true")
	if !strings.Contains(out, "HOME="+filepath.Join(d.home, "agents", "toolchain-builder-with-long-name", "toolhome")) || !strings.Contains(out, "added 1 package") {
		t.Fatalf("npm install -g: %q", out)
	}
	if out := run("npm ls -g --depth=0"); !strings.Contains(out, "is-number@7.0.0") {
		t.Fatalf("the package did not stay: %q", out)
	}
	var allowed, refused bool
	err := d.c.Stream(ctx, "toolchain-builder-with-long-name", 0, func(e client.Event) bool {
		if e.Kind == "egress" {
			allowed = allowed || e.Field("host") == "registry.npmjs.org" && e.Field("allowed") == "true"
			refused = refused || e.Field("host") == "example.com" && e.Field("allowed") != "true"
		}
		return !allowed || !refused
	})
	if err != nil {
		t.Fatal(err)
	}
}
