package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkNextTurnAfterKill kills an agent's opencode with SIGKILL after
// a healthy turn, KILLS times (TAOSAGENT_KILLS, default 20), and measures
// from the kill to the instance back (its "restarted" event) and to the
// end of the next turn sent right after the kill; the healthy turns'
// time, in the same run, is the baseline. It reports the medians, the
// spread, and last-two / first-two of the next-turn time (recovery must
// not slow down). Run with -benchtime 1x.
func BenchmarkNextTurnAfterKill(b *testing.B) {
	kills := 20
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_KILLS")); err == nil && n > 0 {
		kills = n
	}
	for range b.N {
		d := start(b, "")
		ctx := ctxT(b, time.Duration(kills)*time.Minute)
		d.agent(ctx, "k", "")
		var warm, back, next []float64
		for i := range kills {
			t0 := time.Now()
			acc := d.send(ctx, "k", fmt.Sprint("healthy ", i), "")
			if e := last(d.turnOf(ctx, "k", acc.Seq-1, acc.Input)); e.Kind != "final" {
				b.Fatalf("healthy turn %d ended %s", i, e.Kind)
			}
			if i > 0 { // the first one includes the instance's start
				warm = append(warm, time.Since(t0).Seconds())
			}
			a, err := d.c.Agent(ctx, "k")
			if err != nil {
				b.Fatal(err)
			}
			oc := opencodeIn(a.Status.PID)
			if oc == 0 {
				b.Fatalf("no opencode process under %d", a.Status.PID)
			}
			killed := time.Now()
			syscall.Kill(oc, syscall.SIGKILL)
			acc = d.send(ctx, "k", fmt.Sprint("after kill ", i), "")
			evs := d.turnOf(ctx, "k", acc.Seq-1, acc.Input)
			if last(evs).Kind != "final" {
				b.Fatalf("the turn after kill %d ended %s: %s", i, last(evs).Kind, last(evs).Field("message"))
			}
			next = append(next, time.Since(killed).Seconds())
			all, err := d.c.Events(ctx, "k", max(0, acc.Seq-200), 1000, "instance")
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range all {
				if e.Field("state") == "restarted" && e.Time.After(killed) {
					back = append(back, e.Time.Sub(killed).Seconds())
					break
				}
			}
		}
		growth := (next[kills-1] + next[kills-2]) / (next[0] + next[1])
		b.ReportMetric(median(next), "next-turn-s")
		b.ReportMetric(slices.Min(next), "next-min-s")
		b.ReportMetric(slices.Max(next), "next-max-s")
		b.ReportMetric(median(back), "back-s")
		b.ReportMetric(median(warm), "warm-turn-s")
		b.ReportMetric(growth, "last2/first2")
		b.ReportMetric(0, "ns/op")
		b.Logf("next turn after a kill (s): %v", round(next))
		b.Logf("instance back after a kill (s): %v", round(back))
	}
}

// opencodeIn is the opencode process in the tree under root (the
// sandbox's layers above it), 0 if none.
func opencodeIn(root int) int {
	parent := map[int]int{}
	comm := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < l {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
			comm[pid] = s[l+1 : r]
		}
	}
	for pid, c := range comm {
		if c != "opencode" {
			continue
		}
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				return pid
			}
		}
	}
	return 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func round(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(int(x*100)) / 100
	}
	return out
}
