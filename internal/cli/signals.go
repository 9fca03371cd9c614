package cli

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// stopSignals is a stop asked of the process (SIGINT, SIGTERM) as a
// context that ends when one comes.
type stopSignals struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     chan os.Signal
	quit   chan struct{}
	took   sync.WaitGroup
	once   sync.Once
	came   bool
}

func onStop() *stopSignals {
	s := &stopSignals{ch: make(chan os.Signal, 1), quit: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM)
	s.took.Go(func() {
		select {
		case <-s.ch:
			s.cancel()
		case <-s.quit:
		}
	})
	return s
}

// release stops taking the signals, and reports whether one came: from
// its return one takes its default action (the process ends). A signal
// that came before is never lost between the two (signal.Stop's promise:
// delivered to the channel, or the default action).
func (s *stopSignals) release() bool {
	s.once.Do(func() {
		signal.Stop(s.ch)
		close(s.quit)
		s.took.Wait()
		select {
		case <-s.ch:
			s.cancel()
		default:
		}
		s.came = s.ctx.Err() != nil
		s.cancel()
	})
	return s.came
}
