package testenv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/reply"
)

// IngestLog is what Ingest drives: an event log's appends.
type IngestLog interface {
	Append(ctx context.Context, evs ...event.Event) ([]event.Event, error)
	AppendAsync(evs []event.Event, then func([]event.Event, error))
}

// Ingest drives l as the runners do under load: agents at once (named
// agent0, agent1, …), each opening a turn with Append and then feeding
// perAgent upstream delta frames through the codec, each batch of events
// it makes appended with AppendAsync. It returns, once every append has
// committed, the time from the first append (the frames are made before).
func Ingest(tb testing.TB, l IngestLog, agents, perAgent int) time.Duration {
	input := make([][][]byte, agents)
	for a := range agents {
		input[a] = DeltaFrames(fmt.Sprint("ses_", a), perAgent)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for a := range agents {
		wg.Go(func() {
			codec := reply.New()
			name := fmt.Sprint("agent", a)
			var done sync.WaitGroup
			begin := codec.Begin(fmt.Sprint("ses_", a), time.Now())
			for i := range begin {
				begin[i].Agent = name
			}
			if _, err := l.Append(context.Background(), begin...); err != nil {
				tb.Error(err)
				return
			}
			for _, f := range input[a] {
				ev, err := opencode.DecodeEvent(f)
				if err != nil {
					tb.Error(err)
					return
				}
				evs := codec.Feed(ev, time.Now())
				for i := range evs {
					evs[i].Agent = name
				}
				if len(evs) > 0 {
					done.Add(1)
					l.AppendAsync(evs, func(_ []event.Event, err error) {
						if err != nil {
							tb.Error(err)
						}
						done.Done()
					})
				}
			}
			done.Wait()
		})
	}
	wg.Wait()
	return time.Since(start)
}
