package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/hostid"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/testenv"
)

// BenchmarkSpawnToReady compares exec-to-ready of a supervised, confined
// instance (config written, isolated dirs, the sandbox built, as root: its
// own network namespace and door, its own host uid and its tree handed to
// it; readiness line, version check through the forwarder) with a bare `opencode serve` started the same way
// and timed to its listening line, alternating the two, and reports the
// medians and their ratio.
func BenchmarkSpawnToReady(b *testing.B) {
	bin := testenv.Opencode(b)
	_, modelURL := testenv.Model(b)
	sb := sandbox.New()
	if err := sb.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	const rounds = 7
	var sup, shared, bare []float64
	for r := 0; r < rounds; r++ {
		bare = append(bare, bareSpawn(b, bin))
		sup = append(sup, supervisedSpawn(b, bin, modelURL, sb, true))
		shared = append(shared, supervisedSpawn(b, bin, modelURL, sb, false))
	}
	ms, mh, mb := median(sup), median(shared), median(bare)
	b.ReportMetric(ms, "confined-ms")
	b.ReportMetric(mb, "bare-ms")
	b.ReportMetric(ms/mb, "ratio")
	// The same sandbox without its own namespace and uid (the host's
	// network, uid 65534): what those two cost.
	b.ReportMetric(mh/mb, "ratio-shared-net")
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// supervisedSpawn times one confined instance to ready; own gives it its
// own network namespace and host uid (as root).
func supervisedSpawn(b *testing.B, bin, modelURL string, sb *sandbox.Sandbox, own bool) float64 {
	s, err := New(bin, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s.Sandbox = sb
	spec := Spec{Name: "bench", Dir: b.TempDir(), Config: testenv.Config(modelURL, "")}
	if os.Geteuid() == 0 && own {
		s.Doors = &Doors{Handler: func(string) http.Handler { return http.NotFoundHandler() }, DaemonURL: "http://127.0.0.1:1"}
		spec.UID, spec.GID = hostid.DefaultBase+7, hostid.DefaultBase+7
	}
	defer s.Close()
	start := time.Now()
	in, err := s.Ensure(spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := in.Client(ctx); err != nil {
		b.Fatal(err)
	}
	return float64(time.Since(start).Microseconds()) / 1000
}

func bareSpawn(b *testing.B, bin string) float64 {
	dir := b.TempDir()
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(dir, "work"), 0o700)
	cmd := exec.Command(bin, "serve", "--hostname", "127.0.0.1", "--port", "0")
	cmd.Dir = filepath.Join(dir, "work")
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "OPENCODE_SERVER_PASSWORD=x",
		"XDG_CONFIG_HOME=" + home + "/.config", "XDG_DATA_HOME=" + home + "/.local/share",
		"XDG_CACHE_HOME=" + home + "/.cache", "XDG_STATE_HOME=" + home + "/.local/state",
		"OPENCODE_DISABLE_MODELS_FETCH=1", "npm_config_registry=http://127.0.0.1:9/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := cmd.StdoutPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening on") {
			return float64(time.Since(start).Microseconds()) / 1000
		}
	}
	b.Fatal("bare opencode never listened")
	return 0
}

// BenchmarkCrashToReady kills a confined instance's opencode (kill -9)
// KILLS times (TAOSAGENT_KILLS, default 20), each once it is ready again,
// and times each kill to the replacement's readiness; it reports the
// median, the slowest, the growth (the last two against the first two)
// and the median's ratio to a bare opencode's start in the same run.
func BenchmarkCrashToReady(b *testing.B) {
	bin := testenv.Opencode(b)
	_, modelURL := testenv.Model(b)
	sb := sandbox.New()
	if err := sb.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	kills := 20
	if v := os.Getenv("TAOSAGENT_KILLS"); v != "" {
		if _, err := fmt.Sscan(v, &kills); err != nil || kills < 4 {
			b.Fatalf("TAOSAGENT_KILLS=%q: want a number, at least 4", v)
		}
	}
	s, err := New(bin, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s.Sandbox = sb
	spec := Spec{Name: "bench", Dir: b.TempDir(), Config: testenv.Config(modelURL, "")}
	if os.Geteuid() == 0 {
		s.Doors = &Doors{Handler: func(string) http.Handler { return http.NotFoundHandler() }, DaemonURL: "http://127.0.0.1:1"}
		spec.UID, spec.GID = hostid.DefaultBase+8, hostid.DefaultBase+8
	}
	defer s.Close()
	in, err := s.Ensure(spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var times, bare []float64
	for k := 0; k < kills; k++ {
		if _, err := in.Client(ctx); err != nil {
			b.Fatal(err)
		}
		_, gone, err := in.Current(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		syscall.Kill(in.PID(), syscall.SIGKILL)
		<-gone
		if _, err := in.Client(ctx); err != nil {
			b.Fatal(err)
		}
		times = append(times, float64(time.Since(start).Microseconds())/1000)
		if k%5 == 0 {
			bare = append(bare, bareSpawn(b, bin))
		}
	}
	growth := (times[len(times)-1] + times[len(times)-2]) / (times[0] + times[1])
	slowest := slices.Max(times)
	med := median(append([]float64(nil), times...))
	b.ReportMetric(med, "kill-to-ready-ms")
	b.ReportMetric(slowest, "slowest-ms")
	b.ReportMetric(growth, "last2/first2")
	b.ReportMetric(med/median(bare), "ratio-to-bare-start")
	b.ReportMetric(0, "ns/op")
}
