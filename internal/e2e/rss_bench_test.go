package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleRSS reports the daemon's resident memory with 20 agents
// defined and idle (their opencode instances start on first use only).
// Run with -benchtime 1x.
func BenchmarkIdleRSS(b *testing.B) {
	for range b.N {
		d := start(b, "")
		ctx := ctxT(b, time.Minute)
		for i := range 20 {
			d.agent(ctx, fmt.Sprint("idle", i), "")
		}
		if as, err := d.c.Agents(ctx); err != nil || len(as) != 21 {
			b.Fatalf("agents: %d %v", len(as), err)
		}
		time.Sleep(2 * time.Second)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, "RSS-MB")
			}
		}
		b.ReportMetric(0, "ns/op")
	}
}
