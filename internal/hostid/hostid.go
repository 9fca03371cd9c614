// Package hostid gives confined processes host ids of their own: each
// agent's instance a uid (and the gid of the same number) for good, each
// build one for the length of its run. The ids come from ranges well above
// ordinary users (/etc/passwd, /etc/group) and the subordinate ranges of
// user namespaces (/etc/subuid, /etc/subgid), which Check verifies: a
// process of an agent must never share its uid with anyone else's.
package hostid

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// DefaultBase is the first id of the agents' range: 2^30, far above the
// ids Debian gives users (1000 up) and subordinate ranges (100000 up, by
// 65536 a user).
const DefaultBase = 1 << 30

// AgentCount is how many agents a home can ever have had (ids are never
// reused); BuildCount is how many builds run at once.
const (
	AgentCount = 1 << 16
	BuildCount = 1 << 12
)

// Range is Count ids from First.
type Range struct {
	First, Count int
}

// Agents is the agents' range from base; Builds the builds', right after.
func Agents(base int) Range { return Range{base, AgentCount} }

// Builds is the builds' range of base.
func Builds(base int) Range { return Range{base + AgentCount, BuildCount} }

// DaemonBuilds is the part of Builds the daemon's builds take: all but
// the last id, which is RecoveryBuilds', so that a build of the recovery
// CLI (taosagent fix, the daemon running or not) never shares a uid with
// one of the daemon's.
func DaemonBuilds(base int) Range { return Range{base + AgentCount, BuildCount - 1} }

// RecoveryBuilds is the last id of Builds: the recovery CLI's builds, one
// at a time.
func RecoveryBuilds(base int) Range { return Range{base + AgentCount + BuildCount - 1, 1} }

// Contains reports whether id is in r.
func (r Range) Contains(id int) bool { return id >= r.First && id < r.First+r.Count }

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.First, r.First+r.Count-1) }

// Files are the id databases Check reads (variables: a test points them
// elsewhere).
var (
	Passwd = "/etc/passwd"
	Group  = "/etc/group"
	SubUID = "/etc/subuid"
	SubGID = "/etc/subgid"
)

// Check returns an error naming the first entry of /etc/passwd,
// /etc/group, /etc/subuid or /etc/subgid whose ids overlap r, or r's
// going past the largest uid. A file that does not exist holds nothing.
func (r Range) Check() error {
	if r.First <= 0 || r.Count <= 0 || int64(r.First)+int64(r.Count) > 1<<32-2 {
		return fmt.Errorf("hostid: range %s is not within the host's uids", r)
	}
	for _, f := range []struct {
		path  string
		ids   func(fields []string) (Range, bool)
		label string
	}{
		{Passwd, func(f []string) (Range, bool) { return one(f, 2) }, "user"},
		{Passwd, func(f []string) (Range, bool) { return one(f, 3) }, "user's group"},
		{Group, func(f []string) (Range, bool) { return one(f, 2) }, "group"},
		{SubUID, sub, "subordinate uids"},
		{SubGID, sub, "subordinate gids"},
	} {
		fh, err := os.Open(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("hostid: %w", err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Split(line, ":")
			ids, ok := f.ids(fields)
			if ok && ids.First < r.First+r.Count && r.First < ids.First+ids.Count {
				fh.Close()
				return fmt.Errorf("hostid: the ids %s overlap the %s %s of %q in %s", r, f.label, ids, fields[0], f.path)
			}
		}
		fh.Close()
	}
	return nil
}

func one(fields []string, i int) (Range, bool) {
	if len(fields) <= i {
		return Range{}, false
	}
	n, err := strconv.Atoi(fields[i])
	return Range{n, 1}, err == nil
}

func sub(fields []string) (Range, bool) {
	if len(fields) < 3 {
		return Range{}, false
	}
	first, err1 := strconv.Atoi(fields[1])
	count, err2 := strconv.Atoi(fields[2])
	return Range{first, count}, err1 == nil && err2 == nil
}

// Pool hands out the ids of a Range one run at a time. Its methods are
// safe for concurrent use.
type Pool struct {
	Range Range

	mu   sync.Mutex
	used map[int]bool
	next int
}

// ErrExhausted: every id of the pool is in use.
var ErrExhausted = errors.New("hostid: every build id is in use")

// Acquire returns an id no run holds. Release it with keep false when
// nothing it owns is left on the host, true to never hand it out again.
func (p *Pool) Acquire() (id int, release func(keep bool), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range p.Range.Count {
		id := p.Range.First + p.next
		p.next = (p.next + 1) % p.Range.Count
		if !p.used[id] {
			p.used[id] = true
			return id, func(keep bool) {
				if !keep {
					p.mu.Lock()
					delete(p.used, id)
					p.mu.Unlock()
				}
			}, nil
		}
	}
	return 0, nil, ErrExhausted
}
