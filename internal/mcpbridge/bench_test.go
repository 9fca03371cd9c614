package mcpbridge

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkCallThroughTheBridge measures one tool call (echo) of the test
// server two ways in the same run: straight to its stdio (the server run
// bare, the baseline), and through the bridge (streamable HTTP, the SDK
// client opencode's stands in for, forwarded to the same kind of process).
// It reports each path's time per call and the bridge's added
// microseconds and ratio.
func BenchmarkCallThroughTheBridge(b *testing.B) {
	ctx := context.Background()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MCPBRIDGE_TEST_SERVER=1")
	bare, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	f := newFixture(b)
	bridged, err := f.connect(b, "a", "echo")
	if err != nil {
		b.Fatal(err)
	}
	defer bridged.Close()
	args := map[string]any{"text": "hi"}
	timeOf := func(cs *mcp.ClientSession, n int) time.Duration {
		start := time.Now()
		for range n {
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	timeOf(bare, 20) // warm both
	timeOf(bridged, 20)
	b.ResetTimer()
	var tBare, tBridge time.Duration
	for range b.N { // the paths take turns
		tBare += timeOf(bare, 1)
		tBridge += timeOf(bridged, 1)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(tBare.Microseconds())/n, "bare-us/call")
	b.ReportMetric(float64(tBridge.Microseconds())/n, "bridged-us/call")
	b.ReportMetric(float64(tBridge-tBare)/float64(time.Microsecond)/n, "added-us/call")
	b.ReportMetric(float64(tBridge)/float64(tBare), "ratio")
	b.ReportMetric(0, "ns/op")
}
