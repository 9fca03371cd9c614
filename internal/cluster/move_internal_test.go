package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/home"
)

// A move's archive is read as data: an entry out of place, through a
// link, or a hard link is refused, leaving what the daemon had of the
// agent as it was; a set-id bit is never restored.
func TestUnpackingAMoveNeverFollowsItsArchive(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
		mode       int64
	}
	archive := func(es ...entry) *bytes.Buffer {
		var b bytes.Buffer
		gz := gzip.NewWriter(&b)
		tw := tar.NewWriter(gz)
		for _, e := range es {
			body := ""
			if e.typ == tar.TypeReg {
				body = "x"
			}
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(body))
		}
		tw.Close()
		gz.Close()
		return &b
	}
	outside := t.TempDir()
	for _, c := range []struct {
		why     string
		entries []entry
		refused string
	}{
		{"a name leading out", []entry{{name: "agent/", typ: tar.TypeDir, mode: 0o755}, {name: "agent/../../x", typ: tar.TypeReg, mode: 0o644}}, "out of place"},
		{"a part no move carries", []entry{{name: "keys/k", typ: tar.TypeReg, mode: 0o600}}, "out of place"},
		{"an absolute name", []entry{{name: "/etc/x", typ: tar.TypeReg, mode: 0o600}}, "out of place"},
		{"a file through a link out", []entry{{name: "agent/", typ: tar.TypeDir, mode: 0o755}, {name: "agent/l", link: outside, typ: tar.TypeSymlink}, {name: "agent/l/evil", typ: tar.TypeReg, mode: 0o644}}, "unpack agent/l/evil"},
		{"a hard link", []entry{{name: "agent/", typ: tar.TypeDir, mode: 0o755}, {name: "agent/h", link: "/etc/shadow", typ: tar.TypeLink}}, "not a file"},
	} {
		t.Run(c.why, func(t *testing.T) {
			h := home.Home{Dir: t.TempDir()}
			old := filepath.Join(h.Agent("a"), "old.txt")
			os.MkdirAll(filepath.Dir(old), 0o755)
			os.WriteFile(old, []byte("kept"), 0o600)
			k := &Keeper{Home: h}
			err := k.unpack("a", archive(c.entries...))
			if err == nil || !strings.Contains(err.Error(), c.refused) {
				t.Fatalf("unpacked: %v, want %q", err, c.refused)
			}
			if b, err := os.ReadFile(old); err != nil || string(b) != "kept" {
				t.Fatalf("the agent's files after a refused archive: %q %v", b, err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("written outside: %v", ents)
			}
		})
	}

	h := home.Home{Dir: t.TempDir()}
	k := &Keeper{Home: h}
	if err := k.unpack("a", archive(entry{name: "agent/", typ: tar.TypeDir, mode: 0o755}, entry{name: "agent/run", typ: tar.TypeReg, mode: 0o4755})); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(h.Agent("a"), "run")); err != nil || fi.Mode() != 0o755 {
		t.Fatalf("a set-uid file unpacked: %v %v, want -rwxr-xr-x", fi.Mode(), err)
	}
}
