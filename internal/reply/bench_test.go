package reply

import (
	"testing"
	"time"
)

// BenchmarkCodecCaptures replays every captured stream through a fresh codec
// per stream and reports opencode events consumed per second.
func BenchmarkCodecCaptures(b *testing.B) {
	var streams [][]timedEvent
	total := 0
	for _, p := range captures(b) {
		evs := loadCapture(b, p)
		streams = append(streams, evs)
		total += len(evs)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, evs := range streams {
			c := New()
			for _, te := range evs {
				c.Feed(te.ev, te.at)
			}
			c.Tick(time.Now().Add(time.Hour))
		}
	}
	b.ReportMetric(float64(total*b.N)/time.Since(start).Seconds(), "events/s")
}
