package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteThenRestoreBringsBackContentsAndMode(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: filepath.Join(dir, "snapshots")}
	f := filepath.Join(dir, "app.conf")
	os.WriteFile(f, []byte("port = 1\n"), 0o640)
	sn, err := s.Write(f, []byte("port = 2\n"), "before config_write")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "port = 2\n" {
		t.Fatalf("after write: %q", b)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o640 {
		t.Errorf("write changed the mode to %v", st.Mode().Perm())
	}
	before, err := s.Restore(sn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "port = 1\n" {
		t.Fatalf("after restore: %q", b)
	}
	// The restore itself can be undone.
	if got, _ := s.Content(before); string(got) != "port = 2\n" {
		t.Errorf("the snapshot taken before the restore holds %q", got)
	}
	list, _ := s.List(f)
	if len(list) != 2 || list[0].ID != before.ID {
		t.Errorf("list = %+v, want 2, newest first", list)
	}
	if st, _ := os.Stat(filepath.Join(s.Dir, "objects", sn.SHA256)); st.Mode().Perm() != 0o600 {
		t.Errorf("object mode %v, want 0600", st.Mode().Perm())
	}
}

func TestRestoreOfAnAbsentFileRemovesIt(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: filepath.Join(dir, "s")}
	f := filepath.Join(dir, "new.json")
	sn, err := s.Write(f, []byte("{}"), "")
	if err != nil || sn.Exists {
		t.Fatalf("%+v %v", sn, err)
	}
	if _, err := s.Restore(sn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still there: %v", err)
	}
}

func TestDamagedAndUnknownSnapshotsAreRefused(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: filepath.Join(dir, "s")}
	f := filepath.Join(dir, "a")
	os.WriteFile(f, []byte("one"), 0o600)
	sn, _ := s.Take(f, "")
	os.WriteFile(filepath.Join(s.Dir, "objects", sn.SHA256), []byte("two"), 0o600)
	if _, err := s.Restore(sn.ID); err == nil {
		t.Error("a damaged object was restored")
	}
	if b, _ := os.ReadFile(f); string(b) != "one" {
		t.Errorf("the file changed: %q", b)
	}
	for _, id := range []string{"../../etc/passwd", "snap-x", ""} {
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want not found", id, err)
		}
	}
	if _, err := s.Take("relative/path", ""); err == nil {
		t.Error("a relative path was taken")
	}
}
