package doctor_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkFullDoctor runs every check on a home whose daemon is down,
// with one agent and one managed service (behind the systemd stand-in),
// the opencode binary unchanged since it was verified. It prints the
// median and the slowest of 20 full runs (goal: under 500 ms).
func BenchmarkFullDoctor(b *testing.B) {
	h := home.Home{Dir: b.TempDir()}
	h.EnsureToken()
	log, err := eventlog.Open(h.DB())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	log.CreateProvider(ctx, agent.Provider{ID: "demo", BaseURL: "builtin://x", Demo: true, Models: []agent.Model{{ID: "m"}}})
	log.CreateAgent(ctx, agent.Agent{Name: "host", Model: "demo/m", Models: []string{"demo/m"}})
	log.Close()
	conf := filepath.Join(h.Dir, "app.json")
	os.WriteFile(conf, []byte(`{"a":1}`), 0o600)
	os.WriteFile(h.HostFile(), []byte(`{"services":[{"name":"app","unit":"app.service","configs":[{"path":"`+conf+`","format":"json"}]}]}`), 0o600)
	f := testenv.NewFakeSystemd(b)
	f.Unit(b, "app.service", false, "2026-11-30T08:00:00+0000 box app[1]: ok")
	bin := testenv.Opencode(b)
	opencode.WriteStamp(h.OpencodeStamp(), bin)
	for b.Loop() {
		var runs []time.Duration
		for range 20 {
			e := &doctor.Env{Home: h, Addr: "127.0.0.1:1", Opencode: bin, OpencodeStamp: h.OpencodeStamp(), Systemd: f.Systemd}
			t0 := time.Now()
			fs, err := doctor.Run(ctx, e)
			runs = append(runs, time.Since(t0))
			e.Close()
			if err != nil || len(fs) < len(doctor.Checks()) {
				b.Fatalf("%v %d findings", err, len(fs))
			}
		}
		slices.Sort(runs)
		b.ReportMetric(float64(runs[len(runs)/2].Microseconds())/1000, "median-ms")
		b.ReportMetric(float64(runs[len(runs)-1].Microseconds())/1000, "max-ms")
	}
}

// BenchmarkDoctorOfATaOSBox runs every check, the daemon down, on a home
// that declares 10 services (the systemd stand-in, each with a port and a
// config) and 10 containers (a real Podman), against the same home
// declaring nothing, alternately in one run. It prints each median and
// their ratio (goal: the declared box under 500 ms).
func BenchmarkDoctorOfATaOSBox(b *testing.B) {
	ctx := context.Background()
	bin := testenv.Opencode(b)
	f := testenv.NewFakeSystemd(b)
	p := testenv.NewPodman(b)
	mk := func(declare bool) home.Home {
		h := home.Home{Dir: b.TempDir()}
		h.EnsureToken()
		log, err := eventlog.Open(h.DB())
		if err != nil {
			b.Fatal(err)
		}
		log.CreateProvider(ctx, agent.Provider{ID: "demo", BaseURL: "builtin://x", Demo: true, Models: []agent.Model{{ID: "m"}}})
		log.CreateAgent(ctx, agent.Agent{Name: "host", Model: "demo/m", Models: []string{"demo/m"}})
		log.Close()
		opencode.WriteStamp(h.OpencodeStamp(), bin)
		host := `{"services":[]}`
		if declare {
			var svcs, ks []string
			for i := range 10 {
				conf := filepath.Join(h.Dir, fmt.Sprintf("svc%d.yaml", i))
				os.WriteFile(conf, []byte("workers: 2\n"), 0o600)
				f.Unit(b, fmt.Sprintf("svc%d.service", i), false, "2026-11-30T08:00:00+0000 box svc: ok")
				svcs = append(svcs, fmt.Sprintf(`{"name":"svc%d","unit":"svc%d.service","ports":[%d],"configs":[{"path":%q,"format":"yaml"}]}`, i, i, 41000+i, conf))
				ks = append(ks, fmt.Sprintf(`{"name":"box%d","container":"box%d","image":%q}`, i, i, p.ID))
			}
			host = `{"services":[` + strings.Join(svcs, ",") + `],"container_socket":"` + p.Socket + `","containers":[` + strings.Join(ks, ",") + `]}`
		}
		os.WriteFile(h.HostFile(), []byte(host), 0o600)
		return h
	}
	for i := range 10 {
		p.Container(b, fmt.Sprintf("box%d", i), nil, "sleep", "100000")
	}
	bare, box := mk(false), mk(true)
	run := func(h home.Home) time.Duration {
		e := &doctor.Env{Home: h, Addr: "127.0.0.1:1", Opencode: bin, OpencodeStamp: h.OpencodeStamp(), Systemd: f.Systemd}
		defer e.Close()
		t0 := time.Now()
		fs, err := doctor.Run(ctx, e)
		d := time.Since(t0)
		if err != nil || len(fs) < len(doctor.Checks()) {
			b.Fatalf("%v %d findings", err, len(fs))
		}
		return d
	}
	for b.Loop() {
		var a, c []time.Duration
		for range 20 {
			a, c = append(a, run(bare)), append(c, run(box))
		}
		slices.Sort(a)
		slices.Sort(c)
		b.ReportMetric(float64(a[len(a)/2].Microseconds())/1000, "bare-median-ms")
		b.ReportMetric(float64(c[len(c)/2].Microseconds())/1000, "box-median-ms")
		b.ReportMetric(float64(c[len(c)-1].Microseconds())/1000, "box-max-ms")
		b.ReportMetric(float64(c[len(c)/2])/float64(a[len(a)/2]), "box/bare")
	}
}
