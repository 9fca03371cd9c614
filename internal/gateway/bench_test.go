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

// timeChat sends one streamed chat and returns the time to its first
// content chunk and to its end.
func timeChat(b testing.TB, url, key string) (first, total time.Duration) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"model":"scripted-demo","stream":true,"messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if first == 0 && strings.Contains(sc.Text(), `"content"`) {
			first = time.Since(t0)
		}
	}
	return first, time.Since(t0)
}

// BenchmarkGatewayAddedLatency streams chats from the scripted model,
// directly and through the gateway, side by side in one run, at
// concurrency 1, 10 and 50. It prints the added latency of a whole
// request (p50, p99) and the ratio of the times to first token (p50).
func BenchmarkGatewayAddedLatency(b *testing.B) {
	e := newEnv(b)
	e.mu.Lock()
	e.mu.Unlock()
	upURL := ""
	// The upstream the gateway uses, called directly with the upstream key.
	prov, _ := e.gw.Log.Provider(b.Context(), "acme")
	upURL = prov.BaseURL + "/chat/completions"
	gwURL := e.srv.URL + "/llm/v1/chat/completions"
	go func() {
		for range e.calls {
		}
	}()
	for b.Loop() {
		for _, conc := range []int{1, 10, 50} {
			const per = 40
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
}
