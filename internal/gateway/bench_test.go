package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
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
	prov, _ := e.gw.Log.Provider(b.Context(), "acme")
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
