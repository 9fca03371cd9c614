package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// procRecord identifies one process taosagent started, so that after a crash
// of the daemon the next start can kill exactly its leftovers. A pid alone
// is not enough (pids are reused), so the record keeps the kernel's boot id
// and the process's start time in clock ticks since boot.
//
// opencode starts each tool in a process group of its own, so a group does
// not hold everything an instance started. What does: the environment. Each
// instance process gets a random token in TAOSAGENT_INSTANCE, which every
// process it starts inherits.
//
// The record also holds what a new daemon needs to adopt the process
// (Adopt): where it listens, its password, the release it runs, and the
// sum of the spec it was started with. The file is the daemon's own, mode
// 0600, outside every agent's tree.
type procRecord struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"` // also the process group id: instances lead their group
	Start  uint64 `json:"start"`
	BootID string `json:"boot_id"`
	Token  string `json:"token"`

	Password string `json:"password,omitempty"`
	Port     int    `json:"port,omitempty"`  // opencode's, on loopback (inside its namespace with Doors)
	Doors    bool   `json:"doors,omitempty"` // in a namespace of its own (Doors)
	Version  string `json:"version,omitempty"`
	Spec     string `json:"spec,omitempty"` // Spec.sum of what it was started with
	Dir      string `json:"dir,omitempty"`
	RunDir   string `json:"run_dir,omitempty"`
	Workdir  string `json:"workdir,omitempty"`
}

// tokenVar carries an instance's token in the environment of everything it
// runs.
const tokenVar = "TAOSAGENT_INSTANCE"

// pidFile is the durable list of live instances' processes.
type pidFile struct {
	mu   sync.Mutex // guards the file
	path string
}

func (p *pidFile) load() ([]procRecord, error) {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []procRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("pid record %s is corrupt: %w", p.path, err)
	}
	return recs, nil
}

func (p *pidFile) save(recs []procRecord) error {
	if recs == nil {
		recs = []procRecord{}
	}
	b, _ := json.Marshal(recs)
	return atomicfile.Write(p.path, b, 0o600)
}

// add records a started process before anything else can happen to it.
func (p *pidFile) add(r procRecord) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		recs = nil
	}
	return p.save(append(recs, r))
}

// update replaces the record of r's process with r.
func (p *pidFile) update(r procRecord) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return err
	}
	for k := range recs {
		if recs[k].PID == r.PID {
			recs[k] = r
		}
	}
	return p.save(recs)
}

// remove forgets a process that has been reaped.
func (p *pidFile) remove(pid int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return p.save(nil)
	}
	out := recs[:0]
	for _, r := range recs {
		if r.PID != pid {
			out = append(out, r)
		}
	}
	return p.save(out)
}

// sweep kills what is left of every recorded instance — the opencode
// process, its group, and every process carrying its token — and empties
// the record. A pid reused by an unrelated program is never touched: a
// group is killed only while its leader matches its recorded boot and
// start time, and anything else must carry the token. It returns the pids
// killed.
func (p *pidFile) sweep() ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		// A corrupt record cannot say what is ours: kill nothing.
		p.save(nil)
		return nil, err
	}
	var killed []int
	for _, r := range recs {
		killed = append(killed, sweepRecord(r)...)
	}
	return killed, p.save(nil)
}

// leads reports whether r's process still leads its group as the very
// process recorded: same boot, same start time. A leader that is gone or
// different means the group id may be a stranger's now.
func (r procRecord) leads() bool {
	leader, alive := readStat(r.PID)
	return alive && r.BootID == bootID() && leader.start == r.Start && leader.pgrp == r.PID
}

// sweepRecord kills what is left of the recorded instance r and returns
// the pids killed (see sweep).
func sweepRecord(r procRecord) []int {
	var killed []int
	if r.leads() {
		for _, pr := range processesInGroup(r.PID) {
			if pr.start >= r.Start && syscall.Kill(pr.pid, syscall.SIGKILL) == nil {
				killed = append(killed, pr.pid)
			}
		}
	}
	return append(killed, killTagged(r.Token)...)
}

// Leftovers lists the live processes of the instances recorded in
// stateDir — what a daemon that died left running — without touching them:
// exactly what the next start's sweep would kill.
func Leftovers(stateDir string) ([]int, error) {
	recs, err := (&pidFile{path: filepath.Join(stateDir, "instances.json")}).load()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var out []int
	add := func(pid int) {
		if !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	for _, r := range recs {
		if r.leads() {
			for _, pr := range processesInGroup(r.PID) {
				if pr.start >= r.Start {
					add(pr.pid)
				}
			}
		}
		if r.Token != "" {
			for _, pid := range taggedProcesses(r.Token) {
				add(pid)
			}
		}
	}
	return out, nil
}

// Sweep kills what the instances recorded in stateDir left running, as a
// daemon's start does (Supervisor.Sweep); for the recovery tools, which
// run without a daemon.
func Sweep(stateDir string) ([]int, error) {
	return (&pidFile{path: filepath.Join(stateDir, "instances.json")}).sweep()
}

// killTagged kills every process whose environment carries token, and
// returns their pids.
func killTagged(token string) []int {
	if token == "" {
		return nil
	}
	var killed []int
	for _, pid := range taggedProcesses(token) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// taggedProcesses lists the live processes whose environment carries token.
func taggedProcesses(token string) []int {
	want := []byte(tokenVar + "=" + token + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if _, alive := readStat(pid); alive {
			out = append(out, pid)
		}
	}
	return out
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

type procInfo struct {
	pid   int
	ppid  int
	pgrp  int
	start uint64
	cpu   uint64 // utime + stime, clock ticks
	rss   int64  // resident pages
}

// readStat parses /proc/PID/stat: the fields after the command's closing
// parenthesis are state, ppid, pgrp, … and starttime is field 22.
func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procInfo{}, false
	}
	if f[0] == "Z" {
		return procInfo{}, false // a zombie is already dead
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return procInfo{pid: pid, ppid: ppid, pgrp: pgrp, start: start, cpu: ut + st, rss: rss}, true
}

// processes reads every live process of the machine.
func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pi, ok := readStat(pid); ok {
			out = append(out, pi)
		}
	}
	return out
}

func processesInGroup(pgid int) []procInfo {
	var out []procInfo
	for _, pi := range processes() {
		if pi.pgrp == pgid {
			out = append(out, pi)
		}
	}
	return out
}

// processTree returns process root and all its descendants, alive now.
// A confined instance's processes are all below its root: the sandbox's
// own init reaps what is orphaned inside it, and what it runs may lead
// groups and sessions of its own.
func processTree(root int) []procInfo { return treeIn(processes(), root) }

// treeIn returns process root and all its descendants among all.
func treeIn(all []procInfo, root int) []procInfo {
	children := map[int][]procInfo{}
	var out []procInfo
	for _, pi := range all {
		if pi.pid == root {
			out = append(out, pi)
		} else {
			children[pi.ppid] = append(children[pi.ppid], pi)
		}
	}
	if len(out) == 0 {
		return nil
	}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i].pid]...)
	}
	return out
}
