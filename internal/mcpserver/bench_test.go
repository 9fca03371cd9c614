package mcpserver_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkReadToolRoundTrip measures a read tool (agents_list) called by
// the SDK's client over streamable HTTP with the operator token: the whole
// round trip through auth, the MCP handler and the control service. The
// baseline, measured in the same run, is the control service's own call.
// It prints p50, p99, calls/s and the ratio of the p50s.
func BenchmarkReadToolRoundTrip(b *testing.B) {
	e := newEnv(b)
	cs := e.client(b, "operator-token", nil)
	ctx := context.Background()
	const n = 2000
	measure := func(call func() error) (p50, p99 time.Duration, perSec float64) {
		lat := make([]time.Duration, n)
		start := time.Now()
		for i := range n {
			t0 := time.Now()
			if err := call(); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(t0)
		}
		total := time.Since(start)
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100], float64(n) / total.Seconds()
	}
	for b.Loop() {
		d50, _, _ := measure(func() error { _, err := e.svc.Agents(ctx); return err })
		p50, p99, rate := measure(func() error {
			r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "agents_list", Arguments: map[string]any{}})
			if err == nil && r.IsError {
				b.Fatal(text(r))
			}
			return err
		})
		b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		b.ReportMetric(rate, "calls/s")
		b.ReportMetric(float64(d50.Microseconds()), "direct-p50-µs")
		b.ReportMetric(float64(p50)/float64(d50), "p50-ratio")
	}
}
