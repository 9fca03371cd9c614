package doctor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/testenv"
)

func freePortNumber(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func findings(t *testing.T, e *doctor.Env) []doctor.Finding {
	t.Helper()
	fs, err := doctor.Run(context.Background(), e.Fresh(), "ports")
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// doctor says who holds each declared port: the service's own process,
// a stale process of it, or a stranger (named); free-port frees the
// stale one's and refuses the stranger's and an undeclared port.
func TestDoctorSaysWhoHoldsEachDeclaredPort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sysd := testenv.NewFakeSystemd(t)
	h := home.Home{Dir: t.TempDir()}
	own, taken := freePortNumber(t), freePortNumber(t)
	// The stranger runs the service's program, with other arguments.
	stranger := exec.Command("/bin/busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", taken), "-h", t.TempDir())
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer stranger.Process.Kill()
	os.WriteFile(h.HostFile(), fmt.Appendf(nil, `{"services":[{"name":"web","unit":"web.service","ports":[%d,%d]}]}`, own, taken), 0o600)
	www := t.TempDir()
	sysd.ExecUnit(t, "web.service", "/bin/busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", own), "-h", www)
	if _, err := sysd.Systemd.Start(ctx, "web.service"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, a := doctor.Listener(own)
		if _, b := doctor.Listener(taken); a && b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two httpd never listened")
		}
		time.Sleep(20 * time.Millisecond) // httpd says nothing when it listens
	}
	e := &doctor.Env{Home: h, Systemd: sysd.Systemd}
	fx := &doctor.Fixer{Env: e, Confirm: func(doctor.Recipe, string, []string) bool { return true }}

	// Its own port is its own; the other is a stranger's, named, not freed.
	fs := findings(t, e)
	if len(fs) != 1 || fs[0].Severity != doctor.Error || !strings.Contains(fs[0].Summary, fmt.Sprintf("port %d of service web is held by another program", taken)) ||
		fs[0].Recipe != "" || !strings.Contains(fs[0].Details, fmt.Sprintf("pid %d", stranger.Process.Pid)) {
		t.Fatalf("%+v", fs)
	}
	if err := fx.Apply(ctx, fmt.Sprintf("free-port:%d", taken), false); err == nil || !strings.Contains(err.Error(), "never stops it") {
		t.Fatalf("a stranger's port freed: %v", err)
	}
	if err := fx.Apply(ctx, fmt.Sprintf("free-port:%d", own), false); err == nil || !strings.Contains(err.Error(), "not stale") {
		t.Fatalf("the service's own port freed: %v", err)
	}
	if err := fx.Apply(ctx, "free-port:9", false); err == nil || !strings.Contains(err.Error(), "not declared") {
		t.Fatalf("an undeclared port: %v", err)
	}
	stranger.Process.Kill()
	stranger.Wait()

	// The unit failed and its process lives on: stale, freed.
	unit := filepath.Join(sysd.Dir, "units", "web.service")
	var u map[string]any
	b, _ := os.ReadFile(unit)
	json.Unmarshal(b, &u)
	httpd := int(u["proc"].(float64))
	u["active"], u["sub"], u["pid"] = "failed", "failed", 0
	b, _ = json.Marshal(u)
	os.WriteFile(unit, b, 0o600)
	fs = findings(t, e)
	if len(fs) != 1 || fs[0].Recipe != fmt.Sprintf("free-port:%d", own) || !strings.Contains(fs[0].Summary, "stale process") || !strings.Contains(fs[0].Details, "web.service is failed") {
		t.Fatalf("stale: %+v", fs)
	}
	if err := fx.Apply(ctx, fs[0].Recipe, false); err != nil {
		t.Fatal(err)
	}
	if _, held := doctor.Listener(own); held {
		t.Fatal("the port is still held")
	}
	if _, err := os.FindProcess(httpd); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", httpd)); strings.Contains(string(b), "httpd") {
			t.Fatalf("httpd (pid %d) still runs", httpd)
		}
	}
	if fs := findings(t, e); len(fs) != 1 || fs[0].Severity != doctor.OK {
		t.Fatalf("after the fix: %+v", fs)
	}
	audit, _ := os.ReadFile(h.RecoveryAudit())
	if !strings.Contains(string(audit), `"action":"fix.free-port"`) || !strings.Contains(string(audit), fmt.Sprintf(`"target":"%d"`, own)) {
		t.Fatalf("audit: %s", audit)
	}
}
