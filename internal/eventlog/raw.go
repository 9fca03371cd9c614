package eventlog

import (
	"context"
	"sync"
	"time"
)

// Raw events are a best-effort diagnostic record, kept so that
// normalization can be replayed. They never take a commit (and its fsync)
// of their own ahead of the events clients wait for: AddRaw holds them in
// memory, and the writer stores them with the next commit it makes, or
// after rawDelay when none comes. A crash of the daemon loses at most that
// much of them; a full buffer drops new ones (counted by RawDropped).
const (
	rawFlushAt = 1024  // pending raw events that start a commit at once
	rawMax     = 16384 // pending raw events beyond which new ones are dropped
)

// rawDelay is how long raw events wait for a commit to carry them; a
// variable for tests.
var rawDelay = 200 * time.Millisecond

// rawBuffer holds raw events until the writer's next commit.
type rawBuffer struct {
	mu      sync.Mutex
	pending []Raw
	spare   []Raw // the slice the writer gave back, reused
	armed   bool  // a flush is scheduled or running
	dropped int64
	timer   *time.Timer
}

// AddRaw queues raw opencode events for storage with the writer's next
// commit. It never blocks on the database.
func (l *Log) AddRaw(raws ...Raw) {
	if l.readOnly {
		return
	}
	b := &l.raws
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := rawMax - len(b.pending); len(raws) > room {
		b.dropped += int64(len(raws) - room)
		raws = raws[:room]
	}
	if b.pending == nil {
		b.pending = b.spare[:0]
		b.spare = nil
	}
	b.pending = append(b.pending, raws...)
	if !b.armed {
		b.armed = true
		if len(b.pending) >= rawFlushAt {
			go l.flushRaw()
		} else {
			b.timer = time.AfterFunc(rawDelay, l.flushRaw)
		}
	} else if len(b.pending) >= rawFlushAt && b.timer != nil && b.timer.Stop() {
		b.timer = nil // due later: a commit now instead
		go l.flushRaw()
	}
}

// RawDropped is how many raw events were dropped because storage fell
// behind.
func (l *Log) RawDropped() int64 {
	l.raws.mu.Lock()
	defer l.raws.mu.Unlock()
	return l.raws.dropped
}

// flushRaw makes a commit that carries the pending raw events (an empty
// request does: the writer adds them to every commit).
func (l *Log) flushRaw() {
	l.send(context.Background(), &request{})
}

// take hands the writer the pending raw events and disarms the flush:
// this commit carries them.
func (b *rawBuffer) take() []Raw {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	b.pending = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.armed = false
	return p
}

// giveBack returns the slice take handed out, for reuse.
func (b *rawBuffer) giveBack(p []Raw) {
	clear(p)
	b.mu.Lock()
	b.spare = p[:0]
	b.mu.Unlock()
}
