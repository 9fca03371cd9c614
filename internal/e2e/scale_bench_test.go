package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	taohome "github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// BenchmarkSoakAtScale runs AGENTS agents × TURNS turns each on a daemon
// capped at CAP running instances (TAOSAGENT_SCALE=AGENTSxTURNSxCAP,
// default 50x200x8), every agent at once, each sending its next message
// when its last turn has ended. Every turn must end final. Every 10 s it
// samples the daemon's resident memory and open descriptors and the
// database's and its WAL's size; it reports the first sample taken once a
// tenth of the turns had ended, the last, and the largest, with opencode
// starts per turn. After the daemon's stop no process of an instance may be
// left. Progress goes to stderr. Run with -benchtime 1x and a -timeout to
// match (50x200 takes about an hour here).
func BenchmarkSoakAtScale(b *testing.B) {
	agents, turns, capN := 50, 200, 8
	if v := os.Getenv("TAOSAGENT_SCALE"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%dx%d", &agents, &turns, &capN); err != nil {
			b.Fatalf("TAOSAGENT_SCALE=%q: want AGENTSxTURNSxCAP", v)
		}
	}
	for range b.N {
		d := start(b, "", "--max-running", fmt.Sprint(capN))
		ctx := ctxT(b, time.Duration(agents*turns)*3*time.Second+30*time.Minute)
		var names []string
		for i := range agents {
			names = append(names, fmt.Sprint("s", i))
			d.agent(ctx, names[i], "")
		}
		var ended atomic.Int64
		d.onTurnEnd = func() { ended.Add(1) }
		h := taohome.Home{Dir: d.home}
		var samples []scaleSample
		stop := make(chan struct{})
		sampled := make(chan struct{})
		t0 := time.Now()
		go func() {
			defer close(sampled)
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				s := sampleDaemon(d.cmd.Process.Pid, h.DB())
				s.ended = ended.Load()
				samples = append(samples, s)
				fmt.Fprintf(os.Stderr, "soak %4.0fs: %d/%d turns, rss %d MiB, fds %d, db %d MiB, wal %d MiB\n",
					time.Since(t0).Seconds(), s.ended, agents*turns, s.rss>>20, s.fds, s.db>>20, s.wal>>20)
			}
		}()
		bad := d.turnsEach(ctx, names, turns)
		secs := time.Since(t0).Seconds()
		close(stop)
		<-sampled
		starts := 0
		for _, name := range names {
			evs, err := d.c.Events(ctx, name, 0, 1000, "instance")
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range evs {
				if e.Field("state") == "ready" {
					starts++
				}
			}
		}
		d.stop()
		left, _ := supervisor.Leftovers(h.Run())
		for _, pid := range left {
			b.Errorf("process %d of an instance outlived the daemon's stop", pid)
		}
		stopped := time.Now()
		if err := os.RemoveAll(d.home); err != nil {
			// Something wrote into the home after the daemon's stop (once
			// seen at 50x80): say what, whose and when, and who holds it.
			b.Errorf("the home could not be removed after the daemon's stop: %v", err)
			filepath.Walk(d.home, func(p string, fi os.FileInfo, err error) error {
				if err == nil {
					st, _ := fi.Sys().(*syscall.Stat_t)
					b.Logf("left: %s uid %d, written %v after the stop", p, st.Uid, fi.ModTime().Sub(stopped))
				}
				return nil
			})
			for _, h := range holders(d.home) {
				b.Logf("held by: %s", h)
			}
		}
		first, last, most := scaleSample{}, scaleSample{}, scaleSample{}
		for _, s := range samples {
			if first.rss == 0 && s.ended*10 >= int64(agents*turns) {
				first = s
			}
			last = s
			most.rss, most.fds, most.db, most.wal = max(most.rss, s.rss), max(most.fds, s.fds), max(most.db, s.db), max(most.wal, s.wal)
		}
		b.ReportMetric(float64(agents*turns-len(bad)), "final")
		b.ReportMetric(float64(agents*turns), "turns")
		b.ReportMetric(secs, "s")
		b.ReportMetric(float64(starts)/float64(agents*turns), "starts/turn")
		b.ReportMetric(float64(first.rss>>20), "rss-first-MiB")
		b.ReportMetric(float64(last.rss>>20), "rss-last-MiB")
		b.ReportMetric(float64(most.rss>>20), "rss-max-MiB")
		b.ReportMetric(float64(first.fds), "fds-first")
		b.ReportMetric(float64(last.fds), "fds-last")
		b.ReportMetric(float64(most.fds), "fds-max")
		b.ReportMetric(float64(last.db>>20), "db-MiB")
		b.ReportMetric(float64(most.wal>>20), "wal-max-MiB")
		b.ReportMetric(float64(len(left)), "left")
		b.ReportMetric(0, "ns/op")
		if len(bad) > 0 {
			b.Errorf("%d of %d turns did not end final; the first: %v", len(bad), agents*turns, bad[:min(len(bad), 5)])
		}
	}
}

// scaleSample is one look at the daemon and its store.
type scaleSample struct {
	ended   int64 // turns ended so far
	rss     int64 // bytes
	fds     int
	db, wal int64 // bytes
}

func sampleDaemon(pid int, db string) scaleSample {
	var s scaleSample
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				s.rss = kb << 10
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd")); err == nil {
		s.fds = len(ents)
	}
	if fi, err := os.Stat(db); err == nil {
		s.db = fi.Size()
	}
	if fi, err := os.Stat(db + "-wal"); err == nil {
		s.wal = fi.Size()
	}
	return s
}

// holders lists the processes whose working directory or open files are
// under dir, with their command lines.
func holders(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		links, _ := filepath.Glob(p + "/fd/*")
		for _, l := range append(links, p+"/cwd") {
			if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, dir) {
				cmd, _ := os.ReadFile(p + "/cmdline")
				out = append(out, fmt.Sprintf("%s %s (%s)", filepath.Base(p), strings.ReplaceAll(string(cmd), "\x00", " "), t))
				break
			}
		}
	}
	return out
}
