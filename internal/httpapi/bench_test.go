package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/reply"
	"github.com/taosagent/taosagent/internal/testenv"
)

func benchServer(b *testing.B, agents int) (*eventlog.Log, *httptest.Server) {
	l, err := eventlog.Open(filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range agents {
		l.CreateAgent(context.Background(), agent.Agent{Name: fmt.Sprint("a", i), Model: "p/m"})
	}
	srv := httptest.NewServer((&Server{Log: l, Token: "t", Control: &control.Service{Log: l}}).Handler())
	b.Cleanup(func() { srv.Close(); l.Close() })
	return l, srv
}

func openStream(b *testing.B, ctx context.Context, url string) *bufio.Reader {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("stream: %v %v", resp, err)
	}
	b.Cleanup(func() { resp.Body.Close() })
	return bufio.NewReaderSize(resp.Body, 256<<10)
}

// BenchmarkAddedLatency measures, at 1,000 events/s on each of 10 agents,
// the time from reading an upstream frame (decode, normalize, commit,
// fan out) to an SSE client reading it. Run with -benchtime 1x.
func BenchmarkAddedLatency(b *testing.B) {
	const agents, rate = 10, 1000
	duration := 5 * time.Second
	for range b.N {
		l, srv := benchServer(b, agents)
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var lat []time.Duration
		var readers sync.WaitGroup
		for a := range agents {
			r := openStream(b, ctx, fmt.Sprintf("%s/v1/agents/a%d/events/stream?kinds=delta", srv.URL, a))
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if !strings.HasPrefix(string(line), "data: ") {
						continue
					}
					now := time.Now()
					// The delta's text is its read time in ns; cut out by hand
					// to keep the clients' own CPU off the 2 cores measured.
					_, text, _ := bytes.Cut(line, []byte(`"text":"`))
					text, _, _ = bytes.Cut(text, []byte(`"`))
					ns, err := strconv.ParseInt(string(text), 10, 64)
					if err != nil {
						b.Errorf("unexpected frame %s", line)
						return
					}
					mu.Lock()
					lat = append(lat, now.Sub(time.Unix(0, ns)))
					mu.Unlock()
				}
			}()
		}
		b.ResetTimer()
		steal0, total0 := cpuSteal()
		var producers sync.WaitGroup
		var produced atomic.Int64
		for a := range agents {
			producers.Add(1)
			go func() {
				defer producers.Done()
				session := fmt.Sprint("ses_", a)
				name := fmt.Sprint("a", a)
				codec := reply.New()
				feed := func(evs []event.Event) {
					for i := range evs {
						evs[i].Agent = name
					}
					if len(evs) > 0 {
						l.AppendAsync(evs, nil)
					}
				}
				feed(codec.Begin(session, time.Now()))
				for _, f := range testenv.DeltaFrames(session, 0) {
					ev, _ := opencode.DecodeEvent(f)
					feed(codec.Feed(ev, time.Now()))
				}
				tick := time.NewTicker(time.Second / rate)
				defer tick.Stop()
				end := time.Now().Add(duration)
				for time.Now().Before(end) {
					<-tick.C
					t0 := time.Now()
					f := testenv.DeltaFrame(session, strconv.FormatInt(t0.UnixNano(), 10))
					ev, err := opencode.DecodeEvent(f)
					if err != nil {
						b.Error(err)
						return
					}
					feed(codec.Feed(ev, t0))
					produced.Add(1)
				}
			}()
		}
		producers.Wait()
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := int64(len(lat))
			mu.Unlock()
			if n >= produced.Load() || time.Now().After(end) {
				break
			}
		}
		cancel()
		readers.Wait()
		b.StopTimer()
		if steal1, total1 := cpuSteal(); total1 > total0 {
			// Time the hypervisor gave to others: the figures move with it.
			b.ReportMetric(100*float64(steal1-steal0)/float64(total1-total0), "steal-%")
		}
		if int64(len(lat)) != produced.Load() {
			b.Fatalf("%d of %d events reached the clients", len(lat), produced.Load())
		}
		slices.Sort(lat)
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(p(0.50), "p50-ms")
		b.ReportMetric(p(0.99), "p99-ms")
		b.ReportMetric(p(1), "max-ms")
		b.ReportMetric(float64(len(lat)), "events")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkReplay reads 1,000,000 stored events from cursor 0 through the
// SSE endpoint. Run with -benchtime 1x.
func BenchmarkReplay(b *testing.B) {
	const total = 1_000_000
	for range b.N {
		l, srv := benchServer(b, 1)
		batch := make([]event.Event, 0, 5000)
		for i := range total {
			e := event.New("ses_0", event.Delta, time.Now(), event.DeltaData{Text: fmt.Sprint("word ", i, " ")})
			e.Agent, e.Turn = "a0", "turn_0123456789abcdef"
			batch = append(batch, e)
			if len(batch) == cap(batch) {
				if _, err := l.Append(context.Background(), batch...); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.ResetTimer()
		start := time.Now()
		r := openStream(b, ctx, srv.URL+"/v1/agents/a0/events/stream?after=0")
		n, bytes := 0, 0
		for n < total {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			bytes += len(line)
			if len(line) > 4 && string(line[:4]) == "id: " {
				n++
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(bytes)/elapsed.Seconds()/1e6, "MB/s")
		b.ReportMetric(0, "ns/op")
	}
}

// cpuSteal reads the machine's stolen and total CPU time (in ticks) from
// /proc/stat; zeros where it cannot.
func cpuSteal() (steal, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return steal, total
}
