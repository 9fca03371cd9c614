package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/netns"
)

// benchClient keeps its connections open, as opencode's does: the same
// client measures the direct and the gateway's path.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// timeChat sends one streamed chat and returns the time to its first
// chunk of text (not the empty one that opens a stream) and to its end.
func timeChat(b testing.TB, url, key string) (first, total time.Duration) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"model":"scripted-demo","stream":true,"messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); first == 0 && strings.Contains(l, `"content":"`) && !strings.Contains(l, `"content":""`) {
			first = time.Since(t0)
		}
	}
	return first, time.Since(t0)
}

// BenchmarkGatewayAddedLatency streams chats from the scripted model,
// directly and through the gateway, side by side in one run, at
// concurrency 1, 10 and 50. It prints the added latency of a whole
// request (p50, p99) and the ratio of the times to first token (p50). The
// model answers at once: every stream is CPU work, the worst case for a
// hop on a small machine.
func BenchmarkGatewayAddedLatency(b *testing.B) {
	e := newEnv(b)
	for b.Loop() {
		addedLatency(b, e, 40)
	}
}

// BenchmarkGatewayAddedLatencyPaced is the same against the scripted model
// paced like a real one (its first token 150 ms after the request, the
// next ones 15 ms apart): the streams wait on the model, as they do in
// use, and the figures are the gateway's own cost.
func BenchmarkGatewayAddedLatencyPaced(b *testing.B) {
	e := newEnv(b)
	e.model.Pace = 150 * time.Millisecond
	for b.Loop() {
		addedLatency(b, e, 20)
	}
}

func addedLatency(b *testing.B, e *env, per int) {
	prov, _ := e.log.Provider(b.Context(), "acme")
	upURL := prov.BaseURL + "/chat/completions"
	gwURL := e.srv.URL + "/llm/v1/chat/completions"
	go func() {
		for range e.calls {
		}
	}()
	for _, conc := range []int{1, 10, 50} {
		measure := func(url, key string) (firsts, totals []time.Duration) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						f, tt := timeChat(b, url, key)
						mu.Lock()
						firsts, totals = append(firsts, f), append(totals, tt)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			slices.Sort(firsts)
			slices.Sort(totals)
			return
		}
		df, dt := measure(upURL, upstreamKey)
		gf, gt := measure(gwURL, e.key)
		p := func(s []time.Duration, q float64) time.Duration { return s[int(float64(len(s)-1)*q)] }
		b.ReportMetric(float64((p(gt, 0.5)-p(dt, 0.5)).Microseconds())/1000, fmt.Sprintf("c%d-added-p50-ms", conc))
		b.ReportMetric(float64((p(gt, 0.99)-p(dt, 0.99)).Microseconds())/1000, fmt.Sprintf("c%d-added-p99-ms", conc))
		b.ReportMetric(float64(p(gf, 0.5))/float64(p(df, 0.5)), fmt.Sprintf("c%d-ttft-ratio", conc))
	}
}

// BenchmarkGatewayThroughTheDoor measures what a confined instance meets:
// the gateway served by its door, inside a network namespace, to a
// client whose connections are made inside it (as opencode's are). At
// concurrency 1, alternating rounds of the direct path (the scripted
// model), the gateway on the daemon's listener and the gateway through
// the door, it prints each path's added p50 over direct, and the door's
// over the listener's.
func BenchmarkGatewayThroughTheDoor(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("a network namespace needs root")
	}
	e := newEnv(b)
	ns, err := netns.New()
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	ln, err := ns.Listen(door.Addr)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: door.Routes{LLM: e.gw}.For("a")}
	go srv.Serve(ln)
	defer srv.Close()
	inside := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DialContext: ns.DialContext}}
	go func() {
		for range e.calls {
		}
	}()
	prov, _ := e.log.Provider(b.Context(), "acme")
	upURL := prov.BaseURL + "/chat/completions"
	time1 := func(c *http.Client, url, key string) time.Duration {
		saved := benchClient
		benchClient = c
		defer func() { benchClient = saved }()
		_, total := timeChat(b, url, key)
		return total
	}
	var direct, listener, viaDoor []time.Duration
	for b.Loop() {
		for range 60 {
			direct = append(direct, time1(benchClient, upURL, upstreamKey))
			listener = append(listener, time1(benchClient, e.srv.URL+"/llm/v1/chat/completions", e.key))
			viaDoor = append(viaDoor, time1(inside, door.URL+"/llm/v1/chat/completions", e.key))
		}
	}
	p50 := func(s []time.Duration) float64 {
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	d, l, g := p50(direct), p50(listener), p50(viaDoor)
	b.ReportMetric(l-d, "listener-added-p50-ms")
	b.ReportMetric(g-d, "door-added-p50-ms")
	b.ReportMetric(g-l, "door-over-listener-p50-ms")
}
