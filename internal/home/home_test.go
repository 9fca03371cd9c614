package home

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLockRunningAndToken(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if h.Running() {
		t.Fatal("running before any lock")
	}
	unlock, err := h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if !h.Running() {
		t.Error("not running while locked")
	}
	if _, err := h.Lock(); !errors.Is(err, ErrRunning) {
		t.Errorf("second lock: %v", err)
	}
	unlock()
	if h.Running() {
		t.Error("running after unlock")
	}
	tok, err := h.EnsureToken()
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q %v", tok, err)
	}
	if again, _ := h.EnsureToken(); again != tok {
		t.Error("the token changed")
	}
	if st, _ := os.Stat(h.TokenFile()); st.Mode().Perm() != 0o600 {
		t.Errorf("token mode %v", st.Mode().Perm())
	}
	if _, ok := h.Recorded(); ok {
		t.Error("a daemon recorded from nothing")
	}
	h.Record(Daemon{PID: 42, Addr: "127.0.0.1:1"})
	if d, ok := h.Recorded(); !ok || d.PID != 42 || d.Addr != "127.0.0.1:1" {
		t.Errorf("recorded %+v", d)
	}
}

// Probes at once never take each other for a daemon (doctor runs its
// checks concurrently, each asking); a daemon's lock is seen by all.
func TestRunningProbesDoNotCollide(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	unlock, err := h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	var wg sync.WaitGroup
	var seen atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if h.Running() {
					seen.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := seen.Load(); n != 0 {
		t.Fatalf("%d probes saw a daemon where none runs", n)
	}
	unlock, _ = h.Lock()
	defer unlock()
	if !h.Running() {
		t.Fatal("the daemon's lock is not seen")
	}
}
