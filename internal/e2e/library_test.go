package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTheLibraryInTheCLI: a person adds an item from a directory, sees it
// listed, offers a new version that waits (its diff shown), accepts it,
// removes the item; a directory holding a link or a credential is refused
// with the problem named, and nothing is stored.
func TestTheLibraryInTheCLI(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
