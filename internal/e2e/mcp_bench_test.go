package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFirstTurnWithMCPServers measures an instance's start and first
// turn for two agents on one daemon, in turns: one given three local MCP
// servers of the Library (server-memory twice, server-filesystem; opencode
// connects to each at its first turn), one given none (the baseline). Each
// round changes both agents' persona (a fresh start) and times a message
// from its sending to its final. It reports the medians, the ratio, and the
// first round apart (the servers' own first start). ROUNDS:
// TAOSAGENT_ROUNDS (default 10). Run with -benchtime 1x.
func BenchmarkFirstTurnWithMCPServers(b *testing.B) {
	rounds := 10
	if n, err := strconv.Atoi(os.Getenv("TAOSAGENT_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	for range b.N {
		d := start(b, "")
		ctx := ctxT(b, time.Duration(rounds+2)*2*time.Minute)
		for _, m := range []string{
			`{"kind":"mcp","name":"memory","description":"m","mcp":{"package":"` + memoryServer + `","environment":{"MEMORY_FILE_PATH":"{state}/m.jsonl"}}}`,
			`{"kind":"mcp","name":"notes","description":"n","mcp":{"package":"` + memoryServer + `","environment":{"MEMORY_FILE_PATH":"{state}/n.jsonl"}}}`,
			`{"kind":"mcp","name":"files","description":"f","mcp":{"package":"` + filesServer + `","args":["{workspace}"],"workspace":"ro"}}`,
		} {
			dir := b.TempDir()
			os.WriteFile(dir+"/item.json", []byte(m), 0o644)
			if out, errOut, code := d.run("library", "add", dir); code != 0 {
				b.Fatalf("library add (%d): %s %s", code, out, errOut)
			}
		}
		d.agent(ctx, "bare", `{"*":"allow"}`)
		d.agent(ctx, "served", `{"*":"allow"}`)
		if code, body := request(b, "PATCH", d.addr+"/v1/agents/served", d.c.Token, `{"library":["mcp/memory","mcp/notes","mcp/files"]}`); code != 200 {
			b.Fatalf("give the servers (%d): %s", code, body)
		}
		turn := func(name string, i int) float64 {
			if code, body := request(b, "PATCH", d.addr+"/v1/agents/"+name, d.c.Token, fmt.Sprintf(`{"prompt":"round %d"}`, i)); code != 200 {
				b.Fatalf("restart %s (%d): %s", name, code, body)
			}
			t0 := time.Now()
			acc := d.send(ctx, name, "hello", "")
			if e := last(d.turnOf(ctx, name, 0, acc.Input)); e.Kind != "final" {
				b.Fatalf("%s round %d ended %s", name, i, e.Kind)
			}
			return time.Since(t0).Seconds()
		}
		var bare, served []float64
		var first float64
		for i := range rounds {
			if i%2 == 0 {
				bare = append(bare, turn("bare", i))
				served = append(served, turn("served", i))
			} else {
				served = append(served, turn("served", i))
				bare = append(bare, turn("bare", i))
			}
			if i == 0 {
				first = served[0]
			}
		}
		// The servers' tools reached the model: a call through one.
		acc := d.send(ctx, "served", `call memory_read_graph {}`, "")
		if e := last(d.turnOf(ctx, "served", 0, acc.Input)); e.Kind != "final" {
			b.Fatalf("a call through the bridge ended %s", e.Kind)
		}
		b.ReportMetric(median(bare[1:]), "bare-s")
		b.ReportMetric(median(served[1:]), "served-s")
		b.ReportMetric(median(served[1:])/median(bare[1:]), "ratio")
		b.ReportMetric(first, "first-served-s")
		b.ReportMetric(slices.Max(served[1:]), "served-max-s")
		b.ReportMetric(0, "ns/op")
		b.Logf("bare (s): %v", round(bare))
		b.Logf("served (s): %v", round(served))
	}
}
