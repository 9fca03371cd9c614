package supervisor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Memory: what the instances hold is bounded twice. Each instance is
// recycled between two of its turns once it holds more than its agent's
// limits.recycle_mb (the runner does that, at a turn boundary; RecycleDefault
// is the default), and all of them together stay within the daemon's
// memory budget: a start that would take them past it, or past what the
// machine has available, waits for a slot as it would over the cap (the
// effective cap is lowered while memory is short).

// MinInstanceMemory is what a new instance is expected to hold at the
// least: an idle opencode 1.18.33 holds 300-500 MB here.
const MinInstanceMemory = 512 << 20

// memoryRecheck is how often a start that waits for memory, with nothing
// idle to stop for it, looks again.
const memoryRecheck = 5 * time.Second

// Meminfo reads the machine's total and available memory, in bytes, from
// /proc/meminfo.
func Meminfo() (total, available int64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[0]) {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			available = kb << 10
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("no MemTotal in /proc/meminfo")
	}
	return total, available, nil
}

// RecycleDefault is the default of an agent's limits.recycle_mb, in bytes:
// max(1 GiB, total / (2 × maxRunning)), so that the instances the cap lets
// run hold at most half of the machine's memory total before they are
// recycled. With no cap (maxRunning 0) it is half of total.
func RecycleDefault(total int64, maxRunning int) int64 {
	return max(1<<30, total/int64(2*max(maxRunning, 1)))
}

// MemoryBudgetDefault is the default of the daemon's memory budget: half
// of the machine's memory.
func MemoryBudgetDefault(total int64) int64 { return total / 2 }

// memoryRoom is the memory side of the cap's policy: whether one more
// instance may start beside the running ones, which hold held bytes
// together, within budget (0: none) and what the machine has available
// (0: unknown). A new instance is expected to hold what the running ones
// do on average, at least MinInstanceMemory. The first always may.
func memoryRoom(running int, held, available, budget int64) bool {
	if running == 0 {
		return true
	}
	expect := max(held/int64(running), MinInstanceMemory)
	if budget > 0 && held+expect > budget {
		return false
	}
	return available == 0 || available >= expect
}

// heldLocked is what the instances holding a slot hold together now; the
// caller holds s.mu.
func (s *Supervisor) heldLocked() int64 {
	all := processes() // one look at /proc for every instance
	page := int64(os.Getpagesize())
	var held int64
	for _, in := range s.instances {
		if in.hasSlot {
			for _, p := range treeIn(all, in.PID()) {
				held += p.rss * page
			}
		}
	}
	return held
}

// roomLocked says whether an instance may take a slot now: under the cap,
// and within the memory budget and what the machine has available. The
// caller holds s.mu.
func (s *Supervisor) roomLocked() (bool, error) {
	if s.MaxRunning > 0 && s.slots >= s.MaxRunning {
		return false, nil
	}
	if s.slots == 0 || (s.MemoryBudget <= 0 && s.Available == nil) {
		return true, nil
	}
	var available int64
	if s.Available != nil {
		available = s.Available()
	} else if _, a, err := Meminfo(); err == nil {
		available = a
	}
	held := s.heldLocked()
	if memoryRoom(s.slots, held, available, s.MemoryBudget) {
		return true, nil
	}
	return false, fmt.Errorf("memory is short: the %d running instances hold %d MiB (budget %d MiB), %d MiB available",
		s.slots, held>>20, s.MemoryBudget>>20, available>>20)
}

// admitLocked gives free slots to waiters while there is room (memory may
// have been freed); the caller holds s.mu.
func (s *Supervisor) admitLocked() {
	for len(s.waiting) > 0 {
		if ok, _ := s.roomLocked(); !ok {
			return
		}
		next := s.waiting[0]
		s.waiting = s.waiting[1:]
		s.slots++
		next.hasSlot, next.slotAt = true, time.Now()
		close(next.slot)
	}
}
