package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// An instance's config files are what its spec says, nothing left of an
// earlier start, and nothing written out of the directories opencode
// loads them from.
func TestConfigFilesReplaceWhatWasThere(t *testing.T) {
	dir := t.TempDir()
	if err := writeConfigFiles(nil, dir, map[string][]byte{"skills/old/SKILL.md": []byte("old"), "commands/old.md": []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := writeConfigFiles(nil, dir, map[string][]byte{"skills/new/SKILL.md": []byte("new"), "skills/new/ref/a.md": []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "skills", "new", "ref", "a.md")); err != nil || string(b) != "a" {
		t.Fatalf("a file of the spec: %q %v", b, err)
	}
	for _, gone := range []string{"skills/old", "commands/old.md"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left from the earlier start: %v", gone, err)
		}
	}
	for _, bad := range []string{"../x", "opencode.json", "/etc/x", "skills/../../x"} {
		if err := writeConfigFiles(nil, dir, map[string][]byte{bad: []byte("x")}); err == nil {
			t.Errorf("%q written", bad)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "opencode.json")); !os.IsNotExist(err) {
		t.Error("opencode.json written through Files")
	}
}
