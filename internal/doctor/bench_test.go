package doctor_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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
