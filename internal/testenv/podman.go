package testenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Podman is a real Podman (Debian's package) with storage of the test's
// own, serving the Docker Engine API on a socket the test started
// (`podman system service`). Its one image, Image, is busybox-static
// imported from a tarball: nothing can be pulled here.
//
// What these machines need of it: runc (crun refuses their mixed cgroup
// layout), vfs storage under a private root, cgroupfs, explicit ulimits,
// and no network for the containers.
type Podman struct {
	Dir    string // its root, run root and socket
	Socket string // the Engine API socket
	Image  string // the image's name
	ID     string // the image's id (sha256:…)
}

// PodmanImage is the name of the test image.
const PodmanImage = "localhost/taos-test:1"

// NewPodman starts a throwaway Podman for t. Without podman, runc or a
// static busybox it fails, naming the package: `make test` installs them.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	for cmd, pkg := range map[string]string{"podman": "podman", "runc": "runc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is not installed: apt-get install %s (make test does)", cmd, pkg)
		}
	}
	if f, err := elf.Open("/bin/busybox"); err != nil || hasInterp(f) {
		t.Fatal("/bin/busybox is missing or not static: apt-get install busybox-static (make test does)")
	}
	// A short path: the socket's must fit a sun_path.
	dir, err := os.MkdirTemp("", "pm")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{Dir: dir, Socket: filepath.Join(dir, "api.sock"), Image: PodmanImage}
	t.Cleanup(func() { p.close(t) })
	tarball := filepath.Join(dir, "image.tar")
	if err := busyboxImage(tarball); err != nil {
		t.Fatal(err)
	}
	p.ID = "sha256:" + strings.TrimPrefix(lastLine(p.Run(t, "import", "-q", tarball, PodmanImage)), "sha256:")

	cmd := exec.Command("podman", append(p.global(), "system", "service", "--time", "0", "unix://"+p.Socket)...)
	log, _ := os.Create(filepath.Join(dir, "service.log"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	svc := cmd.Process
	t.Cleanup(func() {
		syscall.Kill(-svc.Pid, syscall.SIGTERM)
		svc.Wait()
		log.Close()
	})
	// The service says nothing when it listens: wait until the socket
	// answers a ping.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.Socket)
	}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get("http://engine/_ping")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "service.log"))
			t.Fatalf("podman's service did not answer on %s: %v\n%s", p.Socket, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func hasInterp(f *elf.File) bool {
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func (p *Podman) global() []string {
	return []string{"--root", filepath.Join(p.Dir, "root"), "--runroot", filepath.Join(p.Dir, "run"),
		"--tmpdir", filepath.Join(p.Dir, "tmp"), "--storage-driver", "vfs", "--runtime", "runc",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--log-level", "error"}
}

// Run runs podman with the test's storage and returns its output; a
// failure fails t.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.Try(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs podman with the test's storage and returns its output and
// error.
func (p *Podman) Try(args ...string) (string, error) {
	cmd := exec.Command("podman", append(p.global(), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Container runs a detached container of the test image with no network
// and the ulimits these machines allow; opts come before the image, the
// command after. It returns the container's id.
func (p *Podman) Container(t testing.TB, name string, opts []string, command ...string) string {
	t.Helper()
	argv := p.RunArgv(name, opts, command...)
	return lastLine(p.Run(t, argv[len(p.global())+1:]...))
}

// RunArgv is the whole command line that Container runs: what a systemd
// unit that makes the container would run.
func (p *Podman) RunArgv(name string, opts []string, command ...string) []string {
	argv := append(append([]string{"podman"}, p.global()...), "run", "-d", "--name", name, "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=512:512")
	return append(append(append(argv, opts...), PodmanImage), command...)
}

func (p *Podman) close(t testing.TB) {
	p.Try("rm", "--all", "--force", "--time", "0")
	// conmon runs `podman container cleanup` after a container ends, on
	// its own: wait for every process that names this storage.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && p.busy(); {
		time.Sleep(20 * time.Millisecond)
	}
	// Podman mounts each container's /dev/shm under its run root.
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		var mounts []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) > 4 && strings.HasPrefix(fs[4], p.Dir+"/") {
				mounts = append(mounts, fs[4])
			}
		}
		f.Close()
		for i := len(mounts) - 1; i >= 0; i-- {
			syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		t.Logf("podman's directory: %v", err)
	}
}

// busy reports whether a live process names the test's storage.
func (p *Podman) busy() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(b, []byte(p.Dir)) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		return true
	}
	return false
}

// busyboxImage writes an image tarball: a root with the static busybox
// and its applets the tests use.
func busyboxImage(path string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := tar.NewWriter(f)
	now := time.Now()
	for _, d := range []string{"bin/", "tmp/", "www/", "proc/", "dev/", "sys/", "etc/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: now}); err != nil {
			return err
		}
	}
	if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: now}); err != nil {
		return err
	}
	if _, err := w.Write(bb); err != nil {
		return err
	}
	for _, a := range []string{"sh", "sleep", "echo", "cat", "touch", "test", "rm", "true", "false", "httpd", "kill", "mkdir", "ls"} {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", ModTime: now}); err != nil {
			return err
		}
	}
	return w.Close()
}
