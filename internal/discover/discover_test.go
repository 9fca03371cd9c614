package discover_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/discover"
	"github.com/taosagent/taosagent/internal/hostctl"
)

// write makes the file at path (a box's path) under root.
func write(t *testing.T, root, path, content string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The layout ships as data: the file in docs/examples is the one built in.
func TestTheTaOSLayoutIsTheDocumentedFile(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/taos-layout.json")
	if err != nil {
		t.Fatal(err)
	}
	l, err := discover.ParseLayout(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Units) != 2 || l.Units[1].Provider == nil || len(discover.TaOS().Units) != 2 {
		t.Fatalf("%+v", l)
	}
	if _, err := discover.ParseLayout([]byte(`{"units":[{"match":"("}],"container_match":"x"}`)); err == nil {
		t.Fatal("a bad pattern was accepted")
	}
}

// What discover cannot tell from the box it asks, and uses the answer;
// with no one to ask it leaves the thing out and says what it would ask.
func TestDiscoverAsksWhatItCannotTell(t *testing.T) {
	root := t.TempDir()
	// A unit with no port on its command line and a config file whose
	// name tells no format; a web app in its working directory.
	write(t, root, "/etc/systemd/system/tinyagentos.service", `[Unit]
Description=taOS

[Service]
WorkingDirectory=/opt/taos
ExecStart=/usr/bin/python3 -m tinyagentos \
    --config /etc/taos/taos.cfgfile
`)
	write(t, root, "/opt/taos/desktop/package.json", `{"scripts":{"build":"vite build"}}`)
	write(t, root, "/lib/systemd/system/tinyagentos.service", "[Service]\nExecStart=/bin/false --port 1\n") // shadowed by /etc's
	current, _ := hostctl.Parse([]byte(`{"services":[]}`))

	f := &discover.Finder{Root: root, Sockets: []string{filepath.Join(root, "none.sock")}}
	p, err := f.Find(context.Background(), current)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := p.Host.Service("tinyagentos"); s.HealthURL != "" || len(s.Configs) != 1 || s.Configs[0].Path != "/etc/taos/taos.cfgfile" || s.Configs[0].Format != "none" ||
		len(p.Host.SPAs) != 0 || len(p.Unsure) != 3 || len(p.Host.Services) != 2 {
		t.Fatalf("without a person: %+v\nunsure: %q", p.Host, p.Unsure)
	}

	var asked []string
	answers := map[string]string{"health URL": "http://127.0.0.1:8000/healthz", "format": "toml", "web app": "/var/lib/taos/www"}
	f.Ask = func(q string) string {
		asked = append(asked, q)
		for k, a := range answers {
			if strings.Contains(q, k) {
				return a + "\n"
			}
		}
		return ""
	}
	p, err = f.Find(context.Background(), current)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.Host.Service("tinyagentos")
	if len(asked) != 3 || s.HealthURL != "http://127.0.0.1:8000/healthz" || s.Configs[0].Format != "toml" || len(p.Unsure) != 0 {
		t.Fatalf("asked %q: %+v, unsure %q", asked, s, p.Unsure)
	}
	if len(p.Host.SPAs) != 1 || p.Host.SPAs[0].Serve != "/var/lib/taos/www" || p.Host.SPAs[0].Source != "/opt/taos/desktop" || p.Host.SPAs[0].Service != "tinyagentos" || p.Host.SPAs[0].URL != "" {
		t.Fatalf("the web app: %+v", p.Host.SPAs)
	}
	b, _ := json.Marshal(p.Host)
	if _, err := hostctl.Parse(b); err != nil {
		t.Fatalf("the proposal does not parse: %v", err)
	}
}
