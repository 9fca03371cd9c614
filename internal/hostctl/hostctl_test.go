package hostctl_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/testenv"
)

// The parser reads systemctl show as systemd prints it (systemd 252's
// format, transcribed into testdata).
func TestParseShow(t *testing.T) {
	b, _ := os.ReadFile("testdata/systemctl-show-litellm.txt")
	st := hostctl.ParseShow(b)
	want := hostctl.UnitStatus{Unit: "litellm.service", LoadState: "loaded", ActiveState: "active", SubState: "running",
		MainPID: 41877, Restarts: 2, Since: time.Date(2026, 11, 29, 7, 12, 45, 0, time.UTC), MemoryBytes: 318767104,
		ControlGroup: "/system.slice/litellm.service", ExecPath: "/opt/litellm/venv/bin/litellm",
		ExecArgv: "/opt/litellm/venv/bin/litellm --config /etc/litellm/config.yaml --port 4000", WorkingDirectory: "/opt/litellm"}
	if !slices.Equal(st.EnvironmentFiles, []string{"/etc/litellm/litellm.env"}) {
		t.Errorf("environment files: %q", st.EnvironmentFiles)
	}
	st.EnvironmentFiles = nil
	if !reflect.DeepEqual(st, want) {
		t.Errorf("got %+v\nwant %+v", st, want)
	}
	b, _ = os.ReadFile("testdata/systemctl-show-missing.txt")
	if st := hostctl.ParseShow(b); st.LoadState != "not-found" || st.MemoryBytes != 0 || !st.Since.IsZero() {
		t.Errorf("missing unit: %+v", st)
	}
}

func TestStatusRestartAndJournalThroughSystemd(t *testing.T) {
	f := testenv.NewFakeSystemd(t)
	f.Unit(t, "litellm.service", false, "2026-11-30T08:00:00+0000 h litellm[1]: ready", "2026-11-30T08:01:00+0000 h litellm[1]: ERROR upstream 502")
	f.Unit(t, "broken.service", true)
	s, ctx := f.Systemd, t.Context()
	st, err := s.Status(ctx, "litellm.service")
	if err != nil || st.ActiveState != "active" || st.MainPID != 100 {
		t.Fatalf("status %+v %v", st, err)
	}
	st, err = s.Restart(ctx, "litellm.service")
	if err != nil || st.Restarts != 0 || st.MainPID != 101 {
		t.Fatalf("restart %+v %v", st, err)
	}
	lines, err := s.Journal(ctx, "litellm.service", 10, time.Time{}, "ERROR")
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "upstream 502") {
		t.Fatalf("journal %q %v", lines, err)
	}
	if _, err := s.Restart(ctx, "broken.service"); err == nil || !strings.Contains(err.Error(), "failed because the control process exited") {
		t.Errorf("a failed restart reports %v", err)
	}
	if _, err := s.Restart(ctx, "x.service; rm -rf /"); err == nil {
		t.Error("a bad unit name reached systemctl")
	}
	if calls := f.Calls(); slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "rm -rf") }) {
		t.Errorf("calls: %q", calls)
	}
	none := hostctl.Systemd{Systemctl: filepath.Join(t.TempDir(), "systemctl")}
	if _, err := none.Status(ctx, "a.service"); err == nil {
		t.Error("a missing systemctl gave no error")
	}
}

func TestParseManagedHost(t *testing.T) {
	c, err := hostctl.Parse([]byte(`{"services":[{"name":"litellm","unit":"litellm.service","health_url":"http://127.0.0.1:4000/health",
		"configs":[{"path":"/etc/litellm/config.yaml","format":"yaml"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Service("taosagent"); !ok {
		t.Error("taosagent itself is not managed")
	}
	if s, f, ok := c.ConfigFile("/etc/litellm/config.yaml"); !ok || s.Name != "litellm" || f.Format != "yaml" {
		t.Errorf("config file lookup: %v %v %v", s, f, ok)
	}
	for _, bad := range []string{
		`{"services":[{"name":"x","unit":"x.service","health_url":"http://10.0.0.1/"}]}`,
		`{"services":[{"name":"x","unit":"x.timer"}]}`,
		`{"services":[{"name":"x","unit":"x.service","configs":[{"path":"rel.conf","format":"json"}]}]}`,
		`{"services":[{"name":"x","unit":"x.service","configs":[{"path":"/a/../b","format":"json"}]}]}`,
		`{"services":[{"name":"x","unit":"x.service","configs":[{"path":"/a","format":"xml"}]}]}`,
		`{"services":[{"name":"x","unit":"x.service"},{"name":"x","unit":"y.service"}]}`,
		`{"services":[],"extra":1}`,
	} {
		if _, err := hostctl.Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if c, err := hostctl.Load(filepath.Join(t.TempDir(), "none.json")); err != nil || len(c.Services) != 1 {
		t.Errorf("missing file: %+v %v", c, err)
	}
}

func TestValidate(t *testing.T) {
	good := map[string]string{"json": `{"a":1}`, "yaml": "a: 1\nb: [x]\n", "toml": "a = 1\n[s]\nb = 'x'\n", "ini": "[s]\na = 1\n; c\n", "none": "\x00"}
	bad := map[string]string{"json": `{"a":1`, "yaml": "a: [1\n", "toml": "a = \n", "ini": "just words\n"}
	for f, s := range good {
		if err := hostctl.Validate(f, []byte(s)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for f, s := range bad {
		if err := hostctl.Validate(f, []byte(s)); err == nil {
			t.Errorf("%s: %q accepted", f, s)
		}
	}
}

// A container is declared by exact name or by label, never as "any";
// each fault is named.
func TestParseManagedContainers(t *testing.T) {
	pin := "sha256:" + strings.Repeat("ab", 32)
	c, err := hostctl.Parse([]byte(`{"services":[],"container_socket":"/run/podman/podman.sock","containers":[
		{"name":"web","label":"taos.role=web","image":"` + pin + `"},
		{"name":"api","container":"taos-api","unit":"taos-api.service","remove_leftover":true,"stop_seconds":3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := c.Container("api"); !ok || k.Selector().Name != "taos-api" || k.StopGrace() != 3*time.Second || c.Runtime().Socket != "/run/podman/podman.sock" {
		t.Fatalf("%+v", c)
	}
	if k, _ := c.Container("web"); k.StopGrace() != 10*time.Second || k.Selector().Label != "taos.role=web" {
		t.Fatalf("%+v", k)
	}
	for doc, want := range map[string]string{
		`{"name":"web"}`: "exactly one of container",
		`{"name":"web","container":"a","label":"k=v"}`:                   "exactly one of container",
		`{"name":"web","container":"a b"}`:                               "not a container name",
		`{"name":"web","label":"k"}`:                                     "want key=value",
		`{"name":"web","container":"a","image":"busybox:latest"}`:        "want an image id",
		`{"name":"web","container":"a","remove_leftover":true}`:          "needs the unit",
		`{"name":"web","container":"a","unit":"x"}`:                      "not a systemd service unit",
		`{"name":"web","container":"a","stop_seconds":-1}`:               "stop_seconds",
		`{"name":"web","container":"a","health_url":"http://10.0.0.1/"}`: "not a loopback",
		`{"name":"Web","container":"a"}`:                                 "lower-case",
		`{"name":"web","container":"a","privileged":true}`:               "unknown field",
	} {
		if _, err := hostctl.Parse([]byte(`{"services":[],"containers":[` + doc + `]}`)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
	if _, err := hostctl.Parse([]byte(`{"services":[],"containers":[{"name":"a","container":"a"},{"name":"a","container":"b"}]}`)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("twice: %v", err)
	}
	if _, err := hostctl.Parse([]byte(`{"services":[],"container_socket":"run/docker.sock"}`)); err == nil {
		t.Error("a relative socket was accepted")
	}
}

// A web app's declaration: its directories apart, its output inside its
// source, its service declared.
func TestParseManagedSPAs(t *testing.T) {
	ok := `{"name":"web","source":"/opt/taos/web","build":["npm","run","build"],"output":"dist","serve":"/var/lib/taos/www","service":"taos","url":"http://127.0.0.1:8080/"}`
	svc := `{"name":"taos","unit":"taos.service"}`
	if c, err := hostctl.Parse([]byte(`{"services":[` + svc + `],"spas":[` + ok + `]}`)); err != nil {
		t.Fatal(err)
	} else if a, found := c.SPA("web"); !found || a.Output != "dist" {
		t.Fatalf("%+v", c.SPAs)
	}
	for bad, want := range map[string]string{
		`"serve":"/var/lib/taos/www"`:    `"serve":"/opt/taos/web/dist"`,
		`"output":"dist"`:                `"output":"../dist"`,
		`"build":["npm","run","build"]`:  `"build":[]`,
		`"service":"taos"`:               `"service":"nginx"`,
		`"source":"/opt/taos/web"`:       `"source":"opt/web"`,
		`"url":"http://127.0.0.1:8080/"`: `"url":"http://example.com/"`,
	} {
		doc := strings.Replace(ok, bad, want, 1)
		if _, err := hostctl.Parse([]byte(`{"services":[` + svc + `],"spas":[` + doc + `]}`)); err == nil {
			t.Errorf("accepted: %s", doc)
		}
	}
	if _, err := hostctl.Parse([]byte(`{"services":[` + svc + `],"spas":[` + strings.Replace(ok, `"/var/lib/taos/www"`, `"/www"`, 1) + `]}`)); err == nil {
		t.Error("a served directory one level down was accepted")
	}
}
