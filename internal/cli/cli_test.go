package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/testenv"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	if code, _, errs := run("frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, errs)
	}
	if code, _, errs := run("setup", "--no-such-flag"); code != 2 || !strings.Contains(errs, "no-such-flag") {
		t.Errorf("bad flag: %d %q", code, errs)
	}
	if code, _, _ := run(); code != 2 {
		t.Errorf("no command: %d", code)
	}
}

func TestSetupRefusesWrongBinary(t *testing.T) {
	home := t.TempDir()
	fake := filepath.Join(t.TempDir(), "opencode")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 0.9.0\n"), 0o755)
	code, _, errs := run("setup", "--home", home, "--opencode-bin", fake)
	if code != 1 || !strings.Contains(errs, "wrong version") || !strings.Contains(errs, "1.18.33") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(home, "opencode-binary")); err == nil {
		t.Error("a refused binary was recorded")
	}
	// One that says it is the pinned version, but whose bytes are not.
	os.WriteFile(fake, []byte("#!/bin/sh\necho 1.18.33\n"), 0o755)
	code, _, errs = run("setup", "--home", home, "--opencode-bin", fake)
	if code != 1 || !strings.Contains(errs, "substituted") {
		t.Fatalf("a substituted binary: code %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(home, "opencode-binary")); err == nil {
		t.Error("a substituted binary was recorded")
	}
	// demo without a usable opencode says how to fix it.
	t.Setenv("TAOSAGENT_OPENCODE", "") // no explicit binary either
	code, _, errs = run("demo", "--home", home)
	if code != 1 || !strings.Contains(errs, "taosagent setup") {
		t.Errorf("demo without opencode: %d %q", code, errs)
	}
}

func TestSetupAdoptsBinaryAndDemoRunsATurn(t *testing.T) {
	bin := testenv.Opencode(t)
	home := t.TempDir()
	code, out, errs := run("setup", "--home", home, "--opencode-bin", bin, "--quiet")
	if code != 0 || strings.TrimSpace(out) != bin {
		t.Fatalf("setup: %d %q %q", code, out, errs)
	}
	// Idempotent.
	if code, out2, _ := run("setup", "--home", home, "--opencode-bin", bin, "--quiet"); code != 0 || out2 != out {
		t.Fatalf("second setup: %d %q", code, out2)
	}
	code, out, errs = run("demo", "--home", home, "Please use a tool to say hi")
	if code != 0 {
		t.Fatalf("demo: %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{`tool bash {"command":"echo hi"`, `done in`, `answer: The tool finished.`, `final (`} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "not an AI") {
		t.Errorf("demo does not say its model is a stand-in: %q", errs)
	}
	code, out, _ = run("demo", "--home", home, "please fail401")
	if code != 1 || !strings.Contains(out, "error provider_auth") {
		t.Errorf("failing demo: %d %q", code, out)
	}
}

// A relative --home means the directory it names from where the command
// was typed: the daemon hands paths under it to opencode and its sandbox,
// which run in other directories (`serve --home .cache/home` could not run
// opencode). install's --home stays inside its --root.
func TestRelativeHomeIsTakenFromTheWorkingDirectory(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "doctor", "agents"} {
		fs := flags(cmd, &bytes.Buffer{})
		home := fs.String("home", "", "")
		if err := parse(fs, []string{"--home", ".cache/home"}); err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(wd, ".cache", "home"); *home != want {
			t.Errorf("%s --home .cache/home: %q, want %q", cmd, *home, want)
		}
	}
	fs := flags("install", &bytes.Buffer{})
	home := fs.String("home", "", "")
	if err := parse(fs, []string{"--home", "var/lib/taosagent"}); err != nil || *home != "var/lib/taosagent" {
		t.Errorf("install --home: %q %v", *home, err)
	}
}

// --home and --addr work before the command too, in both spellings; other
// flags there are refused with the reason.
func TestGlobalFlagsBeforeTheCommand(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No daemon listens on port 1: the command tried the address it was given.
	for _, args := range [][]string{
		{"--home", home, "--addr", "127.0.0.1:1", "agents"},
		{"--home=" + home, "-addr=127.0.0.1:1", "agents", "--json"},
	} {
		code, _, errs := run(args...)
		if code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
			t.Errorf("%v: exit %d, stderr %q; want the daemon at 127.0.0.1:1 tried", args, code, errs)
		}
	}
	// serve and doctor name the daemon's address --listen; --addr is it.
	if code, _, errs := run("--home", home, "--addr", "127.0.0.1:1", "doctor", "--list"); code != 0 {
		t.Errorf("doctor with --addr: exit %d, %q", code, errs)
	}
	if code, _, errs := run("--json", "agents"); code != 2 || !strings.Contains(errs, "after the command") {
		t.Errorf("--json before the command: exit %d, %q", code, errs)
	}
	if code, _, errs := run("--home"); code != 2 || !strings.Contains(errs, "needs a value") {
		t.Errorf("--home without a value: exit %d, %q", code, errs)
	}
}

// A home whose store is in PostgreSQL is not backed up as if its SQLite
// file were the store: the backup is refused, saying how, and no file is
// written.
func TestABackupOfAStoreInPostgreSQLIsRefused(t *testing.T) {
	home, out := t.TempDir(), filepath.Join(t.TempDir(), "b.tar")
	t.Setenv("TAOSAGENT_DB", "")
	code, _, errs := run("backup", "--home", home, "--db", "postgres:///taosagent", out)
	if code != 1 || !strings.Contains(errs, "pg_dump") {
		t.Fatalf("backup with --db: %d %q", code, errs)
	}
	t.Setenv("TAOSAGENT_DB", "host=/run/postgresql dbname=taosagent")
	if code, _, errs = run("backup", "--home", home, out); code != 1 || !strings.Contains(errs, "pg_dump") {
		t.Fatalf("backup with TAOSAGENT_DB: %d %q", code, errs)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused backup wrote %s: %v", out, err)
	}
}
