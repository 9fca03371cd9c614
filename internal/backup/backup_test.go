package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
)

// TestABackupComesBackWhole: a backup taken while the log is open and
// being written holds a consistent copy of it, the keys and token at
// 0600, an agent's files and its links (as links, never followed); it
// restores into an empty home, and only there; the archive is 0600.
func TestABackupComesBackWhole(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	l, err := eventlog.Open(h.DB())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}}})
	l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}})
	for i := range 50 {
		e := event.New("s", event.Delta, time.Now(), event.DeltaData{Text: strings.Repeat("x", i)})
		e.Agent = "a"
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		f := filepath.Join(h.Dir, p)
		os.MkdirAll(filepath.Dir(f), 0o700)
		if err := os.WriteFile(f, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("token", "operator-token", 0o600)
	write("keys/p.key", "provider-key", 0o600)
	write("agents/a/work/notes.md", "the agent's notes", 0o644)
	write("instances/a/opencode.log", "left out", 0o600)
	if err := os.Symlink("/etc/shadow", filepath.Join(h.Dir, "agents/a/work/shadow")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "home.tar.gz")
	m, err := Make(ctx, h, file, "test")
	if err != nil {
		t.Fatal(err)
	}
	if m.Head != 50 || m.Schema != eventlog.SchemaVersion {
		t.Fatalf("manifest %+v", m)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the archive: %v %v", fi, err)
	}
	if _, err := Make(ctx, h, file, "test"); err == nil {
		t.Fatal("a backup over an existing file")
	}
	if last, lm, ok := Last(h); !ok || last != file || lm.Head != 50 {
		t.Fatalf("last backup: %q %+v %v", last, lm, ok)
	}

	if _, _, err := Restore(ctx, file, h); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a restore over a home: %v", err)
	}
	to := home.Home{Dir: filepath.Join(t.TempDir(), "restored")}
	if _, moved, err := Restore(ctx, file, to); err != nil || !moved {
		t.Fatal(moved, err)
	}
	for p, want := range map[string]string{"token": "operator-token", "keys/p.key": "provider-key", "agents/a/work/notes.md": "the agent's notes"} {
		b, err := os.ReadFile(filepath.Join(to.Dir, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(to.Dir, "keys/p.key")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a key restored as %v", fi)
	}
	if target, err := os.Readlink(filepath.Join(to.Dir, "agents/a/work/shadow")); err != nil || target != "/etc/shadow" {
		t.Errorf("the link: %q %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(to.Dir, "instances")); err == nil {
		t.Error("an instance's run directory was restored")
	}
	r, _, err := eventlog.OpenReadOnly(to.DB())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if as, err := r.Agents(ctx); err != nil || len(as) != 1 || r.Head() != 50 {
		t.Fatalf("the restored log: %v %v head %d", as, err, r.Head())
	}
}

// TestAnArchiveOfANewerSchemaIsRefused: nothing is written from an
// archive whose event log is newer than this build knows, or that is not
// a backup at all.
func TestAnArchiveOfANewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk := func(name string, first string, body []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		gz := gzip.NewWriter(f)
		tw := tar.NewWriter(gz)
		tw.WriteHeader(&tar.Header{Name: first, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write(body)
		tw.WriteHeader(&tar.Header{Name: "token", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		gz.Close()
		f.Close()
		return p
	}
	newer, _ := json.Marshal(Manifest{Format: Format, Schema: eventlog.SchemaVersion + 1})
	for file, want := range map[string]string{
		mk("newer.tar.gz", ManifestName, newer):               "newer than this taosagent knows",
		mk("other.tar.gz", "token", []byte("not a manifest")): "not a taosagent backup",
	} {
		to := home.Home{Dir: filepath.Join(t.TempDir(), "h")}
		if _, _, err := Restore(ctx, file, to); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", filepath.Base(file), err, want)
		}
		if _, err := os.Stat(filepath.Join(to.Dir, "token")); err == nil {
			t.Errorf("%s: a file was written", filepath.Base(file))
		}
	}
}
