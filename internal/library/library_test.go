package library

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func skill(body string) map[string][]byte {
	return map[string][]byte{
		ManifestFile:       []byte(`{"kind":"skill","name":"release-notes","description":"Writes release notes from the git log."}`),
		"SKILL.md":         []byte("---\nname: release-notes\ndescription: Writes release notes\n---\n" + body),
		"templates/set.md": []byte("## Changes\n"),
	}
}

// A good item is its files and a digest of them; a bad one is refused
// with every problem named, and nothing of it is kept.
func TestAnItemIsCheckedBeforeAnyoneIsAsked(t *testing.T) {
	it, err := Check(skill("Read the log.\n"))
	if err != nil || it.Ref() != "skill/release-notes" || len(it.Digest) != 64 || len(it.Paths) != 3 {
		t.Fatalf("a good skill: %+v %v", it, err)
	}
	again, _ := Check(skill("Read the log.\n"))
	other, _ := Check(skill("Read the log twice.\n"))
	if again.Digest != it.Digest || other.Digest == it.Digest {
		t.Errorf("digests: the same files must give the same, others another")
	}
	with := func(change func(map[string][]byte)) map[string][]byte {
		f := skill("x\n")
		change(f)
		return f
	}
	for _, c := range []struct {
		name  string
		files map[string][]byte
		rule  string
	}{
		{"no manifest", with(func(f map[string][]byte) { delete(f, ManifestFile) }), "manifest.missing"},
		{"bad JSON", with(func(f map[string][]byte) { f[ManifestFile] = []byte(`{"kind":`) }), "manifest.json"},
		{"unknown field", with(func(f map[string][]byte) {
			f[ManifestFile] = []byte(`{"kind":"skill","name":"a","description":"d","run":"x"}`)
		}), "manifest.json"},
		{"unknown kind", with(func(f map[string][]byte) { f[ManifestFile] = []byte(`{"kind":"plugin","name":"a","description":"d"}`) }), "manifest.kind"},
		{"bad name", with(func(f map[string][]byte) {
			f[ManifestFile] = []byte(`{"kind":"skill","name":"../x","description":"d"}`)
		}), "manifest.name"},
		{"no description", with(func(f map[string][]byte) { f[ManifestFile] = []byte(`{"kind":"skill","name":"a","description":" "}`) }), "manifest.description"},
		{"no main file", with(func(f map[string][]byte) { delete(f, "SKILL.md") }), "item.main"},
		{"a path out", with(func(f map[string][]byte) { f["../escape.md"] = []byte("x") }), "item.path"},
		{"an absolute path", with(func(f map[string][]byte) { f["/etc/x"] = []byte("x") }), "item.path"},
		{"binary", with(func(f map[string][]byte) { f["a.bin"] = []byte{0, 1, 2} }), "item.binary"},
		{"a secret", with(func(f map[string][]byte) { f["notes.md"] = []byte("token ghp_0123456789abcdefghijABCDEFGHIJ012345") }), "secret.api-key"},
		{"too big", with(func(f map[string][]byte) { f["big.md"] = []byte(strings.Repeat("x", MaxBytes)) }), "item.size"},
		{"an mcp without a server", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d"}`)}, "manifest.mcp"},
		{"a server in a skill", with(func(f map[string][]byte) {
			f[ManifestFile] = []byte(`{"kind":"skill","name":"a","description":"d","mcp":{"url":"https://x"}}`)
		}), "manifest.mcp"},
		{"a secret's value where its name goes", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"x@1.0.0","env":["TOKEN=abc"]}}`)}, "manifest.mcp"},
		{"a package at no exact version", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"@modelcontextprotocol/server-memory@latest"}}`)}, "manifest.mcp"},
		{"a package and a url", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"x@1.0.0","url":"https://x"}}`)}, "manifest.mcp"},
		{"a workspace mode that is not one", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"x@1.0.0","workspace":"all"}}`)}, "manifest.mcp"},
		{"a lockfile of another package", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"x@1.0.0"}}`),
			LockFile: []byte(`{"lockfileVersion":3,"packages":{"":{"dependencies":{"y":"1.0.0"}}}}`)}, "mcp.lock"},
		{"a lockfile of npm 6", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"package":"x@1.0.0"}}`),
			LockFile: []byte(`{"lockfileVersion":1,"dependencies":{"x":{"version":"1.0.0"}}}`)}, "mcp.lock"},
		{"a lockfile in a remote server's item", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"url":"https://x"}}`),
			LockFile: []byte(`{"lockfileVersion":3,"packages":{"":{"dependencies":{"x":"1.0.0"}}}}`)}, "mcp.lock"},
		{"a command instead of a package", map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"m","description":"d","mcp":{"command":["npx","-y","x"]}}`)}, "manifest.json"},
	} {
		_, err := Check(c.files)
		var inv *Invalid
		if !errors.As(err, &inv) {
			t.Errorf("%s: %v, want refused", c.name, err)
			continue
		}
		found := false
		for _, f := range inv.Findings {
			found = found || f.Rule == c.rule
		}
		if !found {
			t.Errorf("%s: %v, want a %s finding", c.name, err, c.rule)
		}
		if strings.Contains(err.Error(), "0123456789abcdefghij") {
			t.Errorf("%s: the refusal repeats the secret", c.name)
		}
	}
	if _, err := Check(map[string][]byte{ManifestFile: []byte(`{"kind":"mcp","name":"memory","description":"d","mcp":{"package":"@modelcontextprotocol/server-memory@2026.8.31","environment":{"MEMORY_FILE_PATH":"{state}/memory.jsonl"},"env":["API_TOKEN"]}}`)}); err != nil {
		t.Errorf("a good mcp item: %v", err)
	}
}

// A new item is current at once; a new version of it waits for a person
// and the current one stays until it is accepted; a version on disk that
// was changed behind the store's back is refused when read.
func TestAnUpdateWaitsForAPerson(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	v1, _ := Check(skill("one\n"))
	v2, _ := Check(skill("one\ntwo\n"))
	if created, current, err := s.Add(v1); err != nil || !created || !current {
		t.Fatalf("first add: %v %v %v", created, current, err)
	}
	if created, _, err := s.Add(v1); err != nil || created {
		t.Fatalf("the same again stores nothing: %v %v", created, err)
	}
	if created, current, err := s.Add(v2); err != nil || !created || current {
		t.Fatalf("an update: %v %v %v", created, current, err)
	}
	if got, _ := s.Get(Skill, "release-notes"); got.Digest != v1.Digest {
		t.Fatalf("the current version changed before a person accepted: %.12s", got.Digest)
	}
	es, err := s.List()
	if err != nil || len(es) != 1 || es[0].Digest != v1.Digest || len(es[0].Pending) != 1 || es[0].Pending[0] != v2.Digest {
		t.Fatalf("list: %+v %v", es, err)
	}
	d := Diff(v1, v2)
	if !strings.Contains(d, "changed SKILL.md") || !strings.Contains(d, "\n one\n") || !strings.Contains(d, "\n+two\n") {
		t.Errorf("diff:\n%s", d)
	}
	if err := s.Accept(Skill, "release-notes", strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Errorf("accepting a version that does not exist: %v", err)
	}
	if err := s.Accept(Skill, "release-notes", v2.Digest); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(Skill, "release-notes"); got.Digest != v2.Digest || string(got.Files["SKILL.md"]) != string(v2.Files["SKILL.md"]) {
		t.Fatalf("after accepting: %.12s", got.Digest)
	}
	// Tampered on disk: refused when read.
	if err := os.WriteFile(filepath.Join(s.Dir, "skill", "release-notes", v2.Digest, "SKILL.md"), []byte("---\nname: x\n---\nchanged\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(Skill, "release-notes"); err == nil || !strings.Contains(err.Error(), "other content") {
		t.Errorf("a changed version: %v", err)
	}
	if err := s.Remove(Skill, "release-notes"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(Skill, "release-notes"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after remove: %v", err)
	}
	if err := s.Remove(Skill, "../../etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove of a name out of the store: %v", err)
	}
}

// Read takes plain files only: a link in an item is refused by name.
func TestReadRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	for p, b := range skill("x\n") {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), b, 0o644)
	}
	files, err := Read(dir)
	if err != nil || len(files) != 3 {
		t.Fatalf("read: %d files, %v", len(files), err)
	}
	if _, err := Check(files); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "templates", "shadow.md")); err != nil {
		t.Fatal(err)
	}
	_, err = Read(dir)
	var inv *Invalid
	if !errors.As(err, &inv) || inv.Findings[0].Rule != "item.link" || inv.Findings[0].Path != "templates/shadow.md" {
		t.Fatalf("a link: %v", err)
	}
}

// An agent names an item by kind/name, pinned to a version: Resolve pins
// an unpinned ref to the current version, and refuses a version the
// Library does not hold or a kind agents are not given; Render lays the
// version out as opencode loads it.
func TestAPinNamesOneVersion(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	v1, _ := Check(skill("one\n"))
	v2, _ := Check(skill("one\ntwo\n"))
	s.Add(v1)
	s.Add(v2) // waits
	p, err := s.Resolve("skill/release-notes")
	if err != nil || p.Digest != v1.Digest || p.String() != "skill/release-notes@"+v1.Digest {
		t.Fatalf("an unpinned ref: %v %v; want the current version", p, err)
	}
	if p, err := s.Resolve("skill/release-notes@" + v2.Digest); err != nil || p.Digest != v2.Digest {
		t.Fatalf("a pin to a version that waits: %v %v", p, err)
	}
	for _, bad := range []string{"skill/other", "skill/release-notes@" + strings.Repeat("0", 64), "rule/release-notes",
		"skill/release-notes@abc", "skill/../etc", "release-notes", ""} {
		if _, err := s.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) succeeded", bad)
		}
	}
	files, err := Render(v2)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || string(files["skills/release-notes/SKILL.md"]) != string(v2.Files["SKILL.md"]) || files["skills/release-notes/templates/set.md"] == nil {
		t.Errorf("a skill rendered: %q", files)
	}
	cmd, err := Check(map[string][]byte{ManifestFile: []byte(`{"kind":"command","name":"summarize","description":"Sums up."}`),
		"command.md": []byte("---\ndescription: Sums up\n---\nSum up $ARGUMENTS.\n")})
	if err != nil {
		t.Fatal(err)
	}
	if files, err := Render(cmd); err != nil || len(files) != 1 || string(files["commands/summarize.md"]) != string(cmd.Files["command.md"]) {
		t.Errorf("a command rendered: %q %v", files, err)
	}
}

// What an agent proposes waits for a person, a new item too: no version
// of it is current, and a person's accept makes it so.
func TestAProposalWaits(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	v1, _ := Check(skill("one\n"))
	if created, err := s.Propose(v1, "host"); err != nil || !created {
		t.Fatalf("propose: %v %v", created, err)
	}
	if _, err := s.Get(Skill, "release-notes"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a proposed item is current: %v", err)
	}
	if _, err := s.Resolve("skill/release-notes"); err == nil {
		t.Fatal("an unpinned ref resolved to a proposal")
	}
	es, err := s.List()
	if err != nil || len(es) != 1 || es[0].Digest != "" || len(es[0].Pending) != 1 || es[0].Pending[0] != v1.Digest {
		t.Fatalf("list: %+v %v", es, err)
	}
	if err := s.Accept(Skill, "release-notes", v1.Digest); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(Skill, "release-notes"); err != nil || got.Digest != v1.Digest {
		t.Fatalf("accepted: %v %v", got.Digest, err)
	}
	// An update proposed waits like one a person added.
	v2, _ := Check(skill("one\ntwo\n"))
	s.Propose(v2, "host")
	if e, _ := s.Entry(Skill, "release-notes"); e.Digest != v1.Digest || len(e.Pending) != 1 {
		t.Errorf("after a proposed update: %+v", e)
	}
}

// One proposer leaves at most MaxProposals versions waiting: one more is
// refused, stores nothing, and is taken again once a person has accepted
// one; proposing again what waits already is not one more; another
// proposer is not held back.
func TestProposalsWaitingAreBoundedPerProposer(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	var first Item
	for i := range MaxProposals {
		it, err := Check(skill(fmt.Sprintf("version %d\n", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = it
		}
		if _, err := s.Propose(it, "eager"); err != nil {
			t.Fatalf("proposal %d: %v", i, err)
		}
	}
	if _, err := s.Propose(first, "eager"); err != nil {
		t.Errorf("proposing again what waits: %v", err)
	}
	extra, _ := Check(skill("one too many\n"))
	if _, err := s.Propose(extra, "eager"); !errors.Is(err, ErrTooManyProposals) {
		t.Fatalf("proposal past the bound: %v", err)
	}
	if _, err := s.Version(Skill, "release-notes", extra.Digest); err == nil {
		t.Error("the refused proposal was stored")
	}
	if _, err := s.Propose(extra, "other"); err != nil {
		t.Errorf("another proposer: %v", err)
	}
	if err := s.Accept(Skill, "release-notes", first.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Propose(extra, "eager"); err != nil {
		t.Errorf("after a person accepted one: %v", err)
	}
}

// TestAnItemIsReadFromAnArchive: a tar.gz of an item's directory (its one
// top directory its root) reads as the directory does; a link in one is
// refused by name.
func TestAnItemIsReadFromAnArchive(t *testing.T) {
	write := func(entries func(tw *tar.Writer)) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "item.tar.gz")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		gz := gzip.NewWriter(f)
		tw := tar.NewWriter(gz)
		entries(tw)
		tw.Close()
		gz.Close()
		f.Close()
		return p
	}
	file := func(tw *tar.Writer, name, content string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
	}
	good := write(func(tw *tar.Writer) {
		tw.WriteHeader(&tar.Header{Name: "notes/", Mode: 0o755, Typeflag: tar.TypeDir})
		file(tw, "notes/item.json", `{"kind":"command","name":"notes","description":"d"}`)
		file(tw, "notes/command.md", "Take notes.\n")
	})
	files, err := ReadArchive(good)
	if err != nil {
		t.Fatal(err)
	}
	if it, err := Check(files); err != nil || it.Ref() != "command/notes" {
		t.Fatalf("%v %v (files %v)", it.Ref(), err, len(files))
	}
	bad := write(func(tw *tar.Writer) {
		file(tw, "item.json", `{"kind":"command","name":"notes","description":"d"}`)
		tw.WriteHeader(&tar.Header{Name: "command.md", Linkname: "/etc/shadow", Typeflag: tar.TypeSymlink})
	})
	var inv *Invalid
	if _, err := ReadArchive(bad); !errors.As(err, &inv) || !strings.Contains(err.Error(), "command.md") {
		t.Fatalf("a link: %v", err)
	}
	out := write(func(tw *tar.Writer) { file(tw, "../x/item.json", "{}") })
	if _, err := ReadArchive(out); !errors.As(err, &inv) {
		t.Fatalf("a path out of it: %v", err)
	}
}
