package hostid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckRefusesARangeThatOverlapsAnyone(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	Passwd = write("passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nodd:x:1073741900:100::/:/bin/sh\n")
	Group = write("group", "root:x:0:\n")
	SubUID = write("subuid", "alice:100000:65536\n")
	SubGID = write("subgid", "# none\n")
	t.Cleanup(func() { Passwd, Group, SubUID, SubGID = "/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid" })

	if err := Agents(DefaultBase).Check(); err == nil || !strings.Contains(err.Error(), `"odd"`) {
		t.Fatalf("a user inside the range: %v", err)
	}
	if err := (Range{150000, 10}).Check(); err == nil || !strings.Contains(err.Error(), "subordinate uids") {
		t.Fatalf("a subordinate range: %v", err)
	}
	if err := (Range{1 << 31, AgentCount}).Check(); err != nil {
		t.Fatalf("a free range: %v", err)
	}
	if err := (Range{1<<32 - 10, AgentCount}).Check(); err == nil {
		t.Fatal("a range past the largest uid")
	}
	SubGID = write("subgid", "bob:2147483648:65536\n")
	if err := (Range{1 << 31, AgentCount}).Check(); err == nil || !strings.Contains(err.Error(), `"bob"`) {
		t.Fatalf("a subordinate gid range: %v", err)
	}
}

func TestAPoolNeverHandsOutAnIdInUse(t *testing.T) {
	p := &Pool{Range: Range{First: 5000, Count: 2}}
	a, relA, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	b, relB, err := p.Acquire()
	if err != nil || a == b || !p.Range.Contains(a) || !p.Range.Contains(b) {
		t.Fatalf("ids %d %d: %v", a, b, err)
	}
	if _, _, err := p.Acquire(); err != ErrExhausted {
		t.Fatalf("a third id of two: %v", err)
	}
	relA(true) // something it owned is left: never again
	relB(false)
	for range 4 {
		c, rel, err := p.Acquire()
		if err != nil || c != b {
			t.Fatalf("after the releases: %d %v (want %d)", c, err, b)
		}
		rel(false)
	}
}
