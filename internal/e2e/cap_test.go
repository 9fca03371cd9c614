package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// Over the running-instance cap, agents take turns with the slots: each
// agent sends its next message as soon as its previous turn ends, and every
// turn ends final. The instance stopped to make room is often the one whose
// turn just ended; its agent's next message must wait for a slot, not be
// handed to the stopping instance (half the turns failed so).
func TestTurnsOverTheCapAllEndFinal(t *testing.T) {
	t.Parallel()
	const agents, turns, capN = 3, 2, 2
	d := start(t, "", "--max-running", fmt.Sprint(capN))
	ctx := ctxT(t, 8*time.Minute)
	for i := range agents {
		d.agent(ctx, fmt.Sprint("cap", i), "")
	}
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("cap", i)
			for j := range turns {
				acc, err := d.c.Send(ctx, name, client.Message{Text: fmt.Sprintf("hello %d", j)})
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s turn %d: send: %v", name, j, err))
					mu.Unlock()
					return
				}
				evs := d.turnOf(ctx, name, acc.Seq-1, acc.Input)
				if e := last(evs); e.Kind != "final" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s turn %d: %s %s: %s", name, j, e.Kind, e.Field("code"), e.Field("message")))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d of %d turns did not end final:\n%v", len(bad), agents*turns, bad)
	}
}
