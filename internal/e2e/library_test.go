package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTheLibraryInTheCLI: a person adds an item from a directory, sees it
// listed, offers a new version that waits (its diff shown), accepts it,
// removes the item; a directory holding a link or a credential is refused
// with the problem named, and nothing is stored.
func TestTheLibraryInTheCLI(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	dir, write := itemDir(t)
	write("item.json", `{"kind":"skill","name":"release-notes","description":"Writes release notes from the git log."}`)
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes\n---\nRead the log.\n")
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := d.run(append([]string{"library"}, args...)...)
		if code != 0 {
			t.Fatalf("taosagent library %v (%d): %s %s", args, code, out, errOut)
		}
		return out
	}
	if out := run("add", dir); !strings.Contains(out, "skill/release-notes@") || !strings.Contains(out, "added") {
		t.Fatalf("add: %s", out)
	}
	if out := run("list"); !strings.Contains(out, "skill/release-notes") || strings.Contains(out, "waiting") {
		t.Fatalf("list: %s", out)
	}
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes\n---\nRead the log.\nGroup by type.\n")
	out := run("add", dir)
	if !strings.Contains(out, "waits for you") {
		t.Fatalf("an update: %s", out)
	}
	digest := strings.Fields(out[strings.Index(out, "library accept"):])[3]
	if show := run("show", "skill/release-notes"); !strings.Contains(show, "+Group by type.") || strings.Count(show, "Group by type.") != 1 {
		t.Fatalf("show, before accepting: %s", show)
	}
	run("accept", "skill/release-notes", digest)
	if show := run("show", "skill/release-notes"); !strings.Contains(show, "Group by type.") || strings.Contains(show, "waiting") {
		t.Fatalf("show, after accepting: %s", show)
	}
	// Refused: a link, then a credential.
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd.md")); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := d.run("library", "add", dir); code == 0 || !strings.Contains(errOut, "passwd.md") || !strings.Contains(errOut, "item.link") {
		t.Fatalf("an item with a link (%d): %s %s", code, out, errOut)
	}
	os.Remove(filepath.Join(dir, "passwd.md"))
	write("SKILL.md", "---\nname: release-notes\ndescription: x\n---\npush with ghp_0123456789abcdefghijABCDEFGHIJ012345\n")
	if out, errOut, code := d.run("library", "add", dir); code == 0 || !strings.Contains(errOut, "secret.api-key") || strings.Contains(errOut, "0123456789abcdefghij") {
		t.Fatalf("an item with a credential (%d): %s %s", code, out, errOut)
	}
	if out := run("list"); strings.Contains(out, "waiting") {
		t.Fatalf("a refused item was stored: %s", out)
	}
	run("rm", "skill/release-notes")
	if out := run("list"); !strings.Contains(out, "empty") {
		t.Fatalf("after rm: %s", out)
	}
}

// An agent given a skill from the Library loads it through opencode's own
// skill tool, at the version it is pinned to: an update waits for a
// person, and the agent keeps the old version until its pin is moved. A
// rule it is given is in the system prompt of its turns.
func TestAnAgentUsesASkillFromTheLibrary(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	dir, write := itemDir(t)
	write("item.json", `{"kind":"skill","name":"release-notes","description":"Writes release notes from the git log."}`)
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes from the git log\n---\nRead the log since the last tag.\n")
	if out, errOut, code := d.run("library", "add", dir); code != 0 {
		t.Fatalf("library add (%d): %s %s", code, out, errOut)
	}
	d.agent(ctx, "writer", `{"*":"allow"}`)
	patch := func(body string) (int, string) {
		return request(t, "PATCH", d.addr+"/v1/agents/writer", d.c.Token, body)
	}
	if code, body := patch(`{"library":["skill/release-notes"]}`); code != 200 || !strings.Contains(body, `"skill/release-notes@`) {
		t.Fatalf("give the skill (%d): %s", code, body)
	}
	skill := func() string {
		t.Helper()
		acc := d.send(ctx, "writer", `call skill {"name":"release-notes"}`, "")
		evs := d.turnOf(ctx, "writer", 0, acc.Input)
		for _, e := range evs {
			if e.Kind == "tool_result" && e.Field("tool") == "skill" {
				return e.Field("output") + e.Field("error")
			}
		}
		t.Fatalf("no skill tool result: %v", kinds(evs))
		return ""
	}
	if out := skill(); !strings.Contains(out, "Read the log since the last tag.") {
		t.Fatalf("the skill as loaded: %q", out)
	}

	// An update waits for a person; the agent keeps what it has.
	write("SKILL.md", "---\nname: release-notes\ndescription: Writes release notes from the git log\n---\nRead the log since the last tag.\nGroup the changes by type.\n")
	out, errOut, code := d.run("library", "add", dir)
	if code != 0 || !strings.Contains(out, "waits for you") {
		t.Fatalf("an update (%d): %s %s", code, out, errOut)
	}
	if out := skill(); strings.Contains(out, "Group the changes") {
		t.Fatalf("an update no one accepted reached the agent: %q", out)
	}
	digest := strings.Fields(out[strings.Index(out, "library accept"):])[3]
	if out, errOut, code := d.run("library", "accept", "skill/release-notes", digest); code != 0 {
		t.Fatalf("accept (%d): %s %s", code, out, errOut)
	}
	if code, body := patch(`{"library":["skill/release-notes@` + digest + `"]}`); code != 200 {
		t.Fatalf("move the pin (%d): %s", code, body)
	}
	if out := skill(); !strings.Contains(out, "Group the changes by type.") {
		t.Fatalf("the skill after the pin moved: %q", out)
	}

	// Refused, and nothing changes: an item the Library does not have, a
	// kind not given to agents yet, a version it does not hold.
	for _, bad := range []string{`["skill/nope"]`, `["tool/format"]`, `["skill/release-notes@` + strings.Repeat("0", 64) + `"]`} {
		if code, body := patch(`{"library":` + bad + `}`); code != 422 || !strings.Contains(body, "library[0]") {
			t.Errorf("library %s: %d %s, want 422 naming the field", bad, code, body)
		}
	}
	if code, body := get(t, d.addr+"/v1/agents/writer", d.c.Token); code != 200 || !strings.Contains(body, digest) {
		t.Errorf("after the refusals: %d %s", code, body)
	}

	// A rule is in the system prompt of every turn (opencode's
	// instructions), once the agent is given it.
	rules := func() string {
		t.Helper()
		acc := d.send(ctx, "writer", "which rules apply?", "")
		return last(d.turnOf(ctx, "writer", 0, acc.Input)).Field("text")
	}
	if got := rules(); strings.Contains(got, "RULE") {
		t.Fatalf("rules before any was given: %q", got)
	}
	rdir, rwrite := itemDir(t)
	rwrite("item.json", `{"kind":"rule","name":"house-style","description":"How we write."}`)
	rwrite("rule.md", "# House style\n\nRULE Cite the file you read.\n")
	if out, errOut, code := d.run("library", "add", rdir); code != 0 {
		t.Fatalf("library add the rule (%d): %s %s", code, out, errOut)
	}
	if code, body := patch(`{"library":["skill/release-notes@` + digest + `","rule/house-style"]}`); code != 200 {
		t.Fatalf("give the rule (%d): %s", code, body)
	}
	if got := rules(); !strings.Contains(got, "RULE Cite the file you read.") {
		t.Fatalf("the rule is not in the system prompt: %q", got)
	}
}

// What an agent proposes through its tools waits for a person, a new item
// too: it is in the Library's list as waiting, with no version current,
// until a person accepts it.
func TestAnAgentsProposalWaitsForAPerson(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	files, _ := json.Marshal(map[string]any{"files": map[string]string{
		"item.json":  `{"kind":"command","name":"summarize","description":"Sums up a file."}`,
		"command.md": "---\ndescription: Sums up a file\n---\nSum up $ARGUMENTS in three lines.\n",
	}})
	acc := d.send(ctx, "host", "call taos_library_propose "+string(files), "")
	var out string
	for _, e := range d.turnOf(ctx, "host", 0, acc.Input) {
		if e.Kind == "tool_result" && e.Field("tool") == "taos_library_propose" {
			out = e.Field("output") + e.Field("error")
		}
	}
	if !strings.Contains(out, `"waiting":true`) || !strings.Contains(out, "command/summarize") {
		t.Fatalf("the proposal: %q", out)
	}
	list, errOut, code := d.run("library", "list")
	if code != 0 || !strings.Contains(list, "command/summarize") || !strings.Contains(list, "waiting") {
		t.Fatalf("library list (%d): %s %s", code, list, errOut)
	}
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/host", d.c.Token, `{"library":["command/summarize"]}`); code != 422 {
		t.Fatalf("an agent given a proposal no one accepted: %d %s", code, body)
	}
	show, _, _ := d.run("library", "show", "command/summarize")
	if !strings.Contains(show, "+Sum up $ARGUMENTS in three lines.") {
		t.Fatalf("library show: %s", show)
	}
	digest := strings.TrimSuffix(strings.Fields(show[strings.Index(show, "library accept"):])[3], ")")
	if diff, _, code := d.run("library", "diff", "command/summarize"); code != 0 || !strings.Contains(diff, "+Sum up $ARGUMENTS in three lines.") ||
		!strings.Contains(diff, "command/summarize@"+digest) {
		t.Fatalf("library diff (%d): %s", code, diff)
	}
	if out, errOut, code := d.run("library", "accept", "command/summarize", digest); code != 0 {
		t.Fatalf("accept (%d): %s %s", code, out, errOut)
	}
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/host", d.c.Token, `{"library":["command/summarize"]}`); code != 200 || !strings.Contains(body, digest) {
		t.Fatalf("after a person accepted it: %d %s", code, body)
	}
}

// itemDir is a new directory for a Library item, and a function that
// writes one of its files.
func itemDir(t *testing.T) (string, func(name, content string)) {
	dir := t.TempDir()
	return dir, func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnAgentUsesAToolFromTheLibrary: a tool item (opencode's own tool
// format, importing @opencode-ai/plugin) given to an agent is loaded by
// the real opencode from its read-only config directory and called by the
// model; its note (it runs inside opencode's process) is shown before a
// person gives it. A program it runs with $SHELL runs in the tool sandbox.
func TestAnAgentUsesAToolFromTheLibrary(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	dir, write := itemDir(t)
	write("item.json", `{"kind":"tool","name":"sum","description":"Adds two numbers, and says where its program ran."}`)
	write("tool.ts", `import { tool } from "@opencode-ai/plugin"
import { execFileSync } from "node:child_process"

export default tool({
  description: "Adds two numbers",
  args: { a: tool.schema.number(), b: tool.schema.number() },
  async execute(args) {
    // A program a tool runs goes through the tool sandbox: $SHELL -c.
    const host = execFileSync(process.env.SHELL!, ["-c", "echo processes: $(cat /proc/[0-9]*/comm | sort -u); echo password=$OPENCODE_SERVER_PASSWORD"]).toString().trim()
    return "sum=" + (args.a + args.b) + " ran in: " + host
  },
})
`)
	if out, errOut, code := d.run("library", "add", dir); code != 0 {
		t.Fatalf("library add (%d): %s %s", code, out, errOut)
	}
	if show, _, _ := d.run("library", "show", "tool/sum"); !strings.Contains(show, "NOTE: A tool runs inside the agent's opencode process") {
		t.Errorf("library show says nothing of where a tool runs: %s", show)
	}
	d.agent(ctx, "adder", `{"*":"allow"}`)
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/adder", d.c.Token, `{"library":["tool/sum"]}`); code != 200 {
		t.Fatalf("give the tool (%d): %s", code, body)
	}
	acc := d.send(ctx, "adder", `call sum {"a":2,"b":3}`, "")
	evs := d.turnOf(ctx, "adder", 0, acc.Input)
	var out string
	for _, e := range evs {
		if e.Kind == "tool_result" && e.Field("tool") == "sum" {
			out = e.Field("output") + e.Field("error")
		}
	}
	// In the tool sandbox, opencode's process and its password are out of
	// sight.
	if !strings.Contains(out, "sum=5 ran in: processes: ") || !strings.Contains(out, "bwrap") || strings.Contains(out, "opencode") ||
		!strings.HasSuffix(strings.TrimSpace(out), "password=") {
		t.Fatalf("the tool's result: %q (%v, last %s)", out, kinds(evs), last(evs).Data)
	}
}
