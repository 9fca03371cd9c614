package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/taosagent/taosagent/internal/hostctl"
)

var fakeBuild struct {
	once sync.Once
	bin  string
	err  error
	out  []byte
}

// FakeSystemd is a systemd stand-in (internal/hostctl/fakesystemd), built
// once per test binary, with a state directory of the test's own.
type FakeSystemd struct {
	Dir     string
	Systemd hostctl.Systemd
}

// NewFakeSystemd builds the stand-in (once) and gives t a fresh state.
func NewFakeSystemd(t testing.TB) *FakeSystemd {
	t.Helper()
	fakeBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "fakesystemd")
		if err != nil {
			fakeBuild.err = err
			return
		}
		fakeBuild.bin = filepath.Join(dir, "fakesystemd")
		cmd := exec.Command("go", "build", "-o", fakeBuild.bin, "github.com/taosagent/taosagent/internal/hostctl/fakesystemd")
		fakeBuild.out, fakeBuild.err = cmd.CombinedOutput()
	})
	if fakeBuild.err != nil {
		t.Fatalf("build fakesystemd: %v\n%s", fakeBuild.err, fakeBuild.out)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "units"), 0o700)
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	for _, n := range []string{"systemctl", "journalctl"} {
		if err := os.Symlink(fakeBuild.bin, filepath.Join(bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	return &FakeSystemd{Dir: dir, Systemd: hostctl.Systemd{Systemctl: filepath.Join(bin, "systemctl"),
		Journalctl: filepath.Join(bin, "journalctl"), Env: []string{"FAKE_SYSTEMD_DIR=" + dir}}}
}

// Unit declares unit, active and running, with journal lines.
func (f *FakeSystemd) Unit(t testing.TB, unit string, failRestart bool, journal ...string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"active": "active", "sub": "running", "pid": 100, "restarts": 0,
		"since": "Mon 2026-11-30 08:00:00 UTC", "fail_restart": failRestart})
	if err := os.WriteFile(filepath.Join(f.Dir, "units", unit), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(journal) > 0 {
		os.MkdirAll(filepath.Join(f.Dir, "journal"), 0o700)
		os.WriteFile(filepath.Join(f.Dir, "journal", unit), []byte(strings.Join(journal, "\n")+"\n"), 0o600)
	}
}

// ExecUnit declares unit, inactive, whose start runs argv (detached): a
// unit whose process is a real program.
func (f *FakeSystemd) ExecUnit(t testing.TB, unit string, argv ...string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"active": "inactive", "sub": "dead", "exec": argv})
	if err := os.WriteFile(filepath.Join(f.Dir, "units", unit), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Calls returns every command the stand-in was run with, in order.
func (f *FakeSystemd) Calls() []string {
	b, _ := os.ReadFile(filepath.Join(f.Dir, "calls"))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
