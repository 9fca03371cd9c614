package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The two servers no one here wrote, from the npm registry, at the
// versions the Library pins.
const (
	memoryServer = "@modelcontextprotocol/server-memory@2026.8.31"
	filesServer  = "@modelcontextprotocol/server-filesystem@2026.8.31"
)

// TestAnAgentsOwnMCPServersRunConfined: an agent given two local MCP
// servers of the Library (npm's server-memory, and server-filesystem on
// the agent's workspace, read-only) calls their tools through the real
// opencode; the daemon runs each in a sandbox of its own (its own uid, no
// network, no sight of opencode's process or its password) and bridges it
// at the agent's door. A server whose secret is not set is an event, not a
// silent absence; once a person sets it, the secret is in that server's
// environment and in no file of the agent, no config and no event.
func TestAnAgentsOwnMCPServersRunConfined(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	add := func(manifest, lock string) {
		t.Helper()
		dir, write := itemDir(t)
		write("item.json", manifest)
		if lock != "" {
			write("package-lock.json", lock)
		}
		if out, errOut, code := d.run("library", "add", dir); code != 0 {
			t.Fatalf("library add (%d): %s %s", code, out, errOut)
		}
	}
	// The memory server comes with its lockfile: the daemon installs
	// exactly that tree (npm ci).
	lockDir := t.TempDir()
	npm := exec.Command("npm", "install", "--package-lock-only", "--ignore-scripts", "--prefer-offline", "--save-exact", "--no-audit", "--no-fund", memoryServer)
	npm.Dir = lockDir
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm: %v: %s", err, out)
	}
	lock, err := os.ReadFile(filepath.Join(lockDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	add(`{"kind":"mcp","name":"memory","description":"A knowledge graph kept between turns.","mcp":{"package":"`+memoryServer+
		`","environment":{"MEMORY_FILE_PATH":"{state}/memory.jsonl"},"env":["MEMORY_TOKEN"]}}`, string(lock))
	add(`{"kind":"mcp","name":"files","description":"The agent's workspace, read-only.","mcp":{"package":"`+filesServer+
		`","args":["{workspace}"],"workspace":"ro"}}`, "")
	if installs, _ := filepath.Glob(filepath.Join(d.home, "packages", "*", "package-lock.json")); len(installs) != 1 {
		t.Errorf("the memory server was not installed from its lockfile: %v", installs)
	}
	d.agent(ctx, "keeper", `{"*":"allow"}`)
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/keeper", d.c.Token, `{"library":["mcp/memory","mcp/files"]}`); code != 200 {
		t.Fatalf("give the servers (%d): %s", code, body)
	}
	work := filepath.Join(d.home, "agents", "keeper", "work")

	// call sends one scripted tool call and returns its result.
	call := func(tool, args string) (string, string) {
		t.Helper()
		acc := d.send(ctx, "keeper", "call "+tool+" "+args, "")
		evs := d.turnOf(ctx, "keeper", 0, acc.Input)
		for _, e := range evs {
			if e.Kind == "tool_result" && e.Field("tool") == tool {
				return e.Field("output"), e.Field("error")
			}
		}
		t.Fatalf("%s: no result: %v (last: %s)", tool, kinds(evs), last(evs).Data)
		return "", ""
	}
	// Its secret is not set: the server does not start, and the agent's
	// log says why.
	acc := d.send(ctx, "keeper", "call memory_read_graph {}", "")
	d.turnOf(ctx, "keeper", 0, acc.Input)
	evs, err := d.c.Events(ctx, "keeper", 0, 1000, "instance")
	if err != nil {
		t.Fatal(err)
	}
	told := false
	for _, e := range evs {
		told = told || e.Field("state") == "mcp_failed" && strings.Contains(e.Field("message"), "MEMORY_TOKEN")
	}
	if !told {
		t.Fatalf("no event of the server that could not start: %v", evs)
	}
	if show, _, _ := d.run("library", "show", "mcp/memory"); !strings.Contains(show, "secret MEMORY_TOKEN: NOT SET") {
		t.Fatalf("library show: %s", show)
	}
	if out, _, code := d.run("doctor", "mcp-servers"); code == 0 || !strings.Contains(out, "secret MEMORY_TOKEN is not set") {
		t.Fatalf("doctor (%d) does not find the server that cannot start: %s", code, out)
	}
	const token = "mem-7f3a9c1e5b2d8046"
	if out, errOut, code := d.runWith(token+"\n", "library", "secret", "mcp/memory", "MEMORY_TOKEN"); code != 0 {
		t.Fatalf("library secret (%d): %s %s", code, out, errOut)
	}

	if out, errOut, code := d.run("doctor", "mcp-servers"); code != 0 || !strings.Contains(out, "2 MCP servers given to agents can start") {
		t.Fatalf("doctor (%d) after the secret: %s %s", code, out, errOut)
	}
	if out, errText := call("memory_create_entities", `{"entities":[{"name":"Ada","entityType":"person","observations":["wrote the first program"]}]}`); errText != "" || !strings.Contains(out, "Ada") {
		t.Fatalf("create_entities: %q %q", out, errText)
	}
	if out, errText := call("memory_read_graph", `{}`); errText != "" || !strings.Contains(out, "wrote the first program") {
		t.Fatalf("read_graph: %q %q", out, errText)
	}

	// The agent writes a file; the files server reads it, and cannot write.
	acc = d.send(ctx, "keeper", `call write {"filePath":"`+work+`/notes.txt","content":"the key is under the mat"}`, "")
	if e := last(d.turnOf(ctx, "keeper", 0, acc.Input)); e.Kind != "final" {
		t.Fatalf("write: %s %s", e.Kind, e.Data)
	}
	if out, errText := call("files_read_text_file", `{"path":"`+work+`/notes.txt"}`); !strings.Contains(out, "under the mat") {
		t.Fatalf("read_text_file: %q %q", out, errText)
	}
	out, errText := call("files_write_file", `{"path":"`+work+`/planted.txt","content":"x"}`)
	if _, err := os.Stat(filepath.Join(work, "planted.txt")); err == nil {
		t.Fatalf("the read-only workspace was written through the server: %q %q", out, errText)
	}

	// Each server is a process of its own, confined.
	oc := 0
	if a, err := d.c.Agent(ctx, "keeper"); err == nil {
		oc = opencodeIn(a.Status.PID)
	}
	agentUID := ownerOf(t, work)
	for _, name := range []string{"server-memory", "server-filesystem"} {
		pid := processWith(t, name+"/dist/index.js")
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		uid := statusField(string(status), "Uid")
		if uid == "0" || uid == strconv.Itoa(agentUID) || uid == "" {
			t.Errorf("%s runs as uid %q (the agent's: %d): want one of its own", name, uid, agentUID)
		}
		if statusField(string(status), "NoNewPrivs") != "1" || statusField(string(status), "CapEff") != "0000000000000000" {
			t.Errorf("%s: privileges left: %s", name, status)
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "OPENCODE_SERVER_PASSWORD") {
			t.Errorf("%s has opencode's password in its environment", name)
		}
		if has := strings.Contains(string(env), "MEMORY_TOKEN="+token); has != (name == "server-memory") {
			t.Errorf("%s: its secret in its environment: %v", name, has)
		}
		dev, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
		for _, line := range strings.Split(string(dev), "\n")[2:] {
			if f := strings.Fields(line); len(f) > 0 && f[0] != "lo:" {
				t.Errorf("%s has a network interface: %s", name, line)
			}
		}
		if link(t, pid, "ns/mnt") == link(t, os.Getpid(), "ns/mnt") || (oc != 0 && link(t, pid, "ns/pid") == link(t, oc, "ns/pid")) {
			t.Errorf("%s shares the host's mounts or opencode's processes", name)
		}
	}

	// The secret is in no file of the agent, its instance's config, or any
	// event.
	for _, dir := range []string{filepath.Join(d.home, "agents", "keeper"), filepath.Join(d.home, "instances", "keeper")} {
		filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				if b, _ := os.ReadFile(p); strings.Contains(string(b), token) {
					t.Errorf("the secret is in %s", p)
				}
			}
			return nil
		})
	}
	if _, body := get(t, d.addr+"/v1/agents/keeper/events?limit=5000", d.c.Token); strings.Contains(body, token) || !strings.Contains(body, "wrote the first program") {
		t.Errorf("the secret is in the agent's events, or the events are not all there")
	}
}

// processWith is the node process whose command line holds s.
func processWith(t *testing.T, s string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(comm)) == "node" && strings.Contains(string(cmd), s) {
			return pid
		}
	}
	t.Fatalf("no process runs %s", s)
	return 0
}

// statusField is the first value of field in a /proc/PID/status.
func statusField(status, field string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

func link(t *testing.T, pid int, name string) string {
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatalf("%d %s: %v", pid, name, err)
	}
	return s
}

func ownerOf(t *testing.T, path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}
