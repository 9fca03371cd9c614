package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestABindIsWorkedOnAsItsOwner: a service given a person's directories
// (one of uid 1000, one of root's, read-write; one read-only) writes in
// the first two as their owners under its own uid, changes no existing
// file's owner or mode, cannot write the third, and can set no set-ID
// bit; its tools see the same; the staged mounts are gone once it runs.
func TestABindIsWorkedOnAsItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("idmapped binds are made by root")
	}
	s := newSandbox(t)
	s.StageDir = filepath.Join(t.TempDir(), "binds")
	t.Cleanup(func() {
		if err := s.SweepBinds(); err != nil {
			t.Error(err)
		}
	})
	mk := func(name string, uid int) string {
		d := filepath.Join(base, name+strings.ReplaceAll(t.Name(), "/", "-"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.WriteFile(filepath.Join(d, "old"), []byte("old\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{d, filepath.Join(d, "old")} {
			if err := os.Chown(p, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	user, rootOwned, ro := mk("user", 1000), mk("root", 0), mk("ro", 1000)
	dir := filepath.Join(base, "svc"+t.Name())
	if err := os.MkdirAll(filepath.Join(dir, "w"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const uid = 61234
	if err := s.OwnDir(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	script := `
for w in /ws/user /ws/root; do
	echo more >> $w/old && echo "appended $w"
	echo new > $w/new && echo "created $w"
	chmod u+s $w/new 2>/dev/null && echo "SETUID $w"
	chmod g+s $w/new 2>/dev/null && echo "SETGID $w"
	install -m 4755 /dev/null $w/suid 2>/dev/null && echo "INSTALLED $w"
done
$SHELL -c 'echo tool > /ws/user/tool && echo "tool wrote"; echo x > /ws/ro/x 2>/dev/null && echo "TOOL WROTE RO"'
echo x > /ws/ro/x 2>/dev/null && echo "WROTE RO"
cat /ws/ro/old
stat -c '%u %n' /ws/user/old /ws/root/old
id -u
`
	cmd, err := s.Command(context.Background(), Service{Command: []string{"/bin/sh", "-c", script}, Dir: dir, Workdir: "/ws/user",
		Binds: []Bind{{Src: user, Dst: "/ws/user", RW: true}, {Src: rootOwned, Dst: "/ws/root", RW: true}, {Src: ro, Dst: "/ws/ro"}},
		Env:   []string{"PATH=/usr/bin:/bin"}, UID: uid, GID: uid})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Start()
	CloseFiles(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"appended /ws/user", "created /ws/user", "appended /ws/root", "created /ws/root", "tool wrote", "old\n",
		// Inside, the owners are the service's own uid (1000 in its namespace).
		"1000 /ws/user/old\n1000 /ws/root/old\n1000\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"SETUID", "SETGID", "INSTALLED", "WROTE RO", "TOOL WROTE RO"} {
		if strings.Contains(got, bad) {
			t.Errorf("output has %q:\n%s", bad, got)
		}
	}
	owner := func(p string) (int, os.FileMode) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode()
	}
	for _, c := range []struct {
		path string
		uid  int
	}{{user + "/new", 1000}, {user + "/tool", 1000}, {rootOwned + "/new", 0}, {user + "/old", 1000}, {rootOwned + "/old", 0}} {
		u, mode := owner(c.path)
		if u != c.uid || mode&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("%s: owner %d mode %v, want owner %d and no set-ID bit", c.path, u, mode, c.uid)
		}
	}
	if _, mode := owner(user + "/old"); mode.Perm() != 0o640 {
		t.Errorf("an existing file's mode changed: %v", mode)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("the read-only bind was written")
	}
	// The staged mounts go once the sandbox is built.
	for deadline := time.Now().Add(10 * time.Second); ; {
		ents, _ := os.ReadDir(s.StageDir)
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if len(ents) == 0 && !strings.Contains(string(mounts), s.StageDir+"/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staged mounts left: %v", ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestABindThroughALinkIsRefused: a bind whose path leads through a link
// anywhere (one an agent could have put inside another workspace) is
// refused, and nothing is staged.
func TestABindThroughALinkIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("idmapped binds are made by root")
	}
	s := newSandbox(t)
	s.StageDir = filepath.Join(t.TempDir(), "binds")
	t.Cleanup(func() { s.SweepBinds() })
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "elsewhere", "ssl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(base, "proj")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := s.Command(context.Background(), Service{Command: []string{"/bin/true"}, Dir: dir, Workdir: dir,
		Binds: []Bind{{Src: filepath.Join(base, "proj", "ssl"), Dst: "/ws/ssl", RW: true}}, UID: 61235, GID: 61235})
	if err == nil || !strings.Contains(err.Error(), "no link") {
		t.Fatalf("a bind through a link: %v", err)
	}
	if ents, _ := os.ReadDir(s.StageDir); len(ents) != 0 {
		t.Fatalf("staged: %v", ents)
	}
}
