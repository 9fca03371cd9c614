package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
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

	// An archive of an item, as tar makes one, adds as its directory does.
	cdir, cwrite := itemDir(t)
	cwrite("item.json", `{"kind":"command","name":"greet","description":"Greets."}`)
	cwrite("command.md", "Greet $ARGUMENTS.\n")
	archive := filepath.Join(t.TempDir(), "greet.tar.gz")
	if out, err := exec.Command("tar", "czf", archive, "-C", filepath.Dir(cdir), filepath.Base(cdir)).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out := run("add", archive); !strings.Contains(out, "command/greet@") || !strings.Contains(out, "added") {
		t.Fatalf("add an archive: %s", out)
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

// TestTheLibrarySyncsFromAGitRepository: a person names a git repository
// of items; a sync offers each item as a version that waits for a person
// (a bad one is named and stored nowhere), an accepted one is given to an
// agent, and a later commit's change waits again while the agent keeps
// its version. An agent cannot name a source.
func TestTheLibrarySyncsFromAGitRepository(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	put := func(p, content string) {
		t.Helper()
		f := filepath.Join(repo, p)
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	put("skills/notes/item.json", `{"kind":"skill","name":"notes","description":"Writes notes."}`)
	put("skills/notes/SKILL.md", "---\nname: notes\ndescription: Writes notes\n---\nBe brief.\n")
	put("commands/hello/item.json", `{"kind":"command","name":"hello","description":"Says hello."}`)
	put("commands/hello/command.md", "Say hello to $ARGUMENTS.\n")
	put("broken/item.json", `{"kind":"spell","name":"x","description":"Not a kind."}`)
	git("add", ".")
	git("commit", "-q", "-m", "items")

	out, errOut, code := d.run("library", "sync", repo)
	if code != 0 || !strings.Contains(out, "2 new version(s) wait for you, 0 unchanged, 1 refused") || !strings.Contains(out, "refused: broken:") {
		t.Fatalf("library sync (%d): %s %s", code, out, errOut)
	}
	if list, _, _ := d.run("library", "list"); !strings.Contains(list, "skill/notes") || strings.Contains(list, "spell") {
		t.Fatalf("library list: %s", list)
	}
	// Nothing of it is current before a person accepts it.
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/host", d.c.Token, `{"library":["skill/notes"]}`); code != 422 {
		t.Fatalf("an item synced and not accepted given: %d %s", code, body)
	}
	accept := func(ref string) string {
		t.Helper()
		diff, _, _ := d.run("library", "diff", ref)
		i := strings.Index(diff, "library accept "+ref+" ")
		if i < 0 {
			t.Fatalf("library diff %s: %s", ref, diff)
		}
		digest := strings.TrimSuffix(strings.Fields(diff[i:])[3], ")")
		if out, errOut, code := d.run("library", "accept", ref, digest); code != 0 {
			t.Fatalf("accept (%d): %s %s", code, out, errOut)
		}
		return digest
	}
	first := accept("skill/notes")
	d.agent(ctx, "noter", "")
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/noter", d.c.Token, `{"library":["skill/notes"]}`); code != 200 || !strings.Contains(body, first) {
		t.Fatalf("give the skill (%d): %s", code, body)
	}

	// A later commit: its change waits; the agent keeps its version.
	put("skills/notes/SKILL.md", "---\nname: notes\ndescription: Writes notes\n---\nBe briefer.\n")
	git("commit", "-q", "-am", "briefer")
	if out, _, code := d.run("library", "sync", repo); code != 0 || !strings.Contains(out, "1 new version(s) wait for you, 1 unchanged, 1 refused") {
		t.Fatalf("the second sync (%d): %s", code, out)
	}
	if diff, _, _ := d.run("library", "diff", "skill/notes"); !strings.Contains(diff, "+Be briefer.") {
		t.Fatalf("the change's diff: %s", diff)
	}
	if a, err := d.c.Agent(ctx, "noter"); err != nil || len(a.Library) != 1 || !strings.HasSuffix(a.Library[0], first) {
		t.Fatalf("the agent's pin moved: %+v %v", a.Library, err)
	}
	if _, body := get(t, d.addr+"/v1/library/sources", d.c.Token); !strings.Contains(body, repo) {
		t.Errorf("the sources: %s", body)
	}

	// Only a person names a source; a bad one is a 422.
	if code, body := request(t, "POST", d.addr+"/v1/library/sync", d.c.Token, `{"url":"ssh://example.com/x.git"}`); code != 422 {
		t.Errorf("an ssh source: %d %s", code, body)
	}
	if code, body := request(t, "POST", d.addr+"/v1/library/sync", d.c.Token, `{"url":"`+repo+`","ref":"--upload-pack=touch /tmp/x"}`); code != 422 {
		t.Errorf("a ref that is an option: %d %s", code, body)
	}
}
