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
	"github.com/taosagent/taosagent/internal/testenv"
)

// What discover cannot tell from the box it asks, and uses the answer;
// with no one to ask it leaves the thing out and says what it would ask.
func TestDiscoverAsksWhatItCannotTell(t *testing.T) {
	sysd := testenv.NewFakeSystemd(t)
	opt := t.TempDir()
	os.MkdirAll(filepath.Join(opt, "desktop"), 0o755)
	os.WriteFile(filepath.Join(opt, "desktop", "package.json"), []byte(`{"scripts":{"build":"vite build"}}`), 0o644)
	conf := filepath.Join(opt, "taos.cfgfile")
	b, _ := json.Marshal(map[string]any{"active": "active", "sub": "running", "workdir": opt,
		"exec": []string{"/usr/bin/python3", "-m", "tinyagentos", "--config", conf}}) // no port on its command line
	os.WriteFile(filepath.Join(sysd.Dir, "units", "tinyagentos.service"), b, 0o600)
	current, _ := hostctl.Parse([]byte(`{"services":[]}`))

	f := &discover.Finder{Systemd: sysd.Systemd, Sockets: []string{filepath.Join(opt, "none.sock")}}
	p, err := f.Find(context.Background(), current)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := p.Host.Service("tinyagentos"); s.HealthURL != "" || len(s.Configs) != 1 || s.Configs[0].Format != "none" || len(p.Host.SPAs) != 0 || len(p.Unsure) != 3 {
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
	if len(p.Host.SPAs) != 1 || p.Host.SPAs[0].Serve != "/var/lib/taos/www" || p.Host.SPAs[0].Source != filepath.Join(opt, "desktop") || p.Host.SPAs[0].Service != "tinyagentos" {
		t.Fatalf("the web app: %+v", p.Host.SPAs)
	}
	b, _ = json.Marshal(p.Host)
	if _, err := hostctl.Parse(b); err != nil {
		t.Fatalf("the proposal does not parse: %v", err)
	}
}
