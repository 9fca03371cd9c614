package supervisor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/taosagent/taosagent/internal/door"
	"github.com/taosagent/taosagent/internal/sandbox"
)

// Instances outlive the daemon: they run detached (no parent-death signal,
// their output in their log file, not in a pipe to the daemon), and each
// is recorded with what a new daemon needs to take it over (procRecord).
// A daemon that starts adopts every recorded process that is still ours
// and kills the rest; an agent's turns then go on on the same process,
// without a cold start.

// sum identifies what sp starts on s: its config as the process gets it
// (with Doors, its URLs under the door's, which do not change when the
// daemon's address does) and everything else it is started with. An
// adopted process is kept only for an Ensure of the same sum.
func (s *Supervisor) sum(sp Spec) string {
	if s.Sandbox != nil && s.Doors != nil {
		sp.Config = rebase(sp.Config, s.Doors.DaemonURL, door.URL)
	}
	cfg, _ := sp.Config.ConfigJSON()
	b, _ := json.Marshal(struct {
		Config               json.RawMessage
		Files                map[string][]byte
		Instructions         []string
		Limits               any
		UID, GID             int
		Dir, RunDir, Workdir string
		// Only when set: a spec without keeps the sum it had before
		// workspaces were.
		Binds   []sandbox.Bind `json:",omitempty"`
		Modules string         `json:",omitempty"`
	}{cfg, sp.Files, sp.Instructions, sp.Limits, sp.UID, sp.GID, sp.Dir, sp.RunDir, sp.Workdir, sp.Binds, sp.Modules})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// take gives an adopted instance the whole of spec, if spec is what its
// process was started with, and reports whether the instance runs spec
// (always, for an instance that was not adopted: Ensure keeps the spec an
// instance was started with).
func (i *Instance) take(spec Spec) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.partial {
		return true
	}
	if i.sup.sum(spec) != i.adoptSum {
		return false
	}
	i.ensured, i.partial = &spec, false
	return true
}

// takeSpec makes the spec an Ensure gave an adopted instance the one its
// next process starts with. Only the run loop reads those fields.
func (i *Instance) takeSpec() {
	i.mu.Lock()
	e := i.ensured
	i.ensured = nil
	i.mu.Unlock()
	if e != nil {
		i.spec.Config, i.spec.Limits, i.spec.UID, i.spec.GID = e.Config, e.Limits, e.UID, e.GID
	}
}

// restartable says whether the instance can start a process of its own:
// not an adopted one whose spec no Ensure has given yet.
func (i *Instance) restartable() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return !i.partial
}

// Adopt takes over the instances an earlier daemon left running, as
// recorded: each process still ours (same boot, start time and process
// group, its token in its environment), and of this daemon's kind of
// network, becomes an Instance again, ready once it answers as its
// release (state Adopted); every other one is killed, as Sweep does. It
// returns the agents adopted and the pids killed. Call it instead of
// Sweep, before the first Ensure. An adopted instance holds a slot (over
// the cap if it must); until an Ensure of the spec it was started with
// (Spec.sum) reaches it, it is not restarted when it exits, and an Ensure
// of another spec replaces it.
func (s *Supervisor) Adopt() (adopted []string, killed []int, err error) {
	recs, err := s.pids.load()
	if err != nil {
		killed, _ = s.pids.sweep()
		return nil, killed, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaults()
	doors := s.Sandbox != nil && s.Doors != nil
	for _, r := range recs {
		if r.Password == "" || r.Port == 0 || r.Doors != doors || s.instances[r.Name] != nil || !stillOurs(r) {
			killed = append(killed, sweepRecord(r)...)
			s.pids.remove(r.PID)
			continue
		}
		in := &Instance{sup: s, spec: Spec{Name: r.Name, Dir: r.Dir, RunDir: r.RunDir, Workdir: r.Workdir},
			ready: make(chan struct{}), lastUsed: time.Now(), version: r.Version,
			stopCh: make(chan struct{}), done: make(chan struct{}), slot: make(chan struct{}),
			adopted: &r, partial: true, adoptSum: r.Spec, hasSlot: true, slotAt: time.Now()}
		close(in.slot)
		s.instances[r.Name] = in
		s.slots++
		go in.run()
		adopted = append(adopted, r.Name)
	}
	return adopted, killed, nil
}

// stillOurs reports whether r's process is the very one recorded: the
// same boot and start time, leading its group, its token in its
// environment.
func stillOurs(r procRecord) bool {
	if !r.leads() {
		return false
	}
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(r.PID), "environ"))
	return err == nil && bytes.Contains(env, []byte(tokenVar+"="+r.Token+"\x00"))
}

// adoptOnce takes over the recorded process rec and follows it until it
// exits, as runOnce does one it started.
func (i *Instance) adoptOnce(rec procRecord) (exit error, err error) {
	i.newProcess()
	fail := func(err error) (error, error) {
		sweepRecord(rec)
		i.sup.pids.remove(rec.PID)
		return nil, fmt.Errorf("adopt the running opencode: %w", err)
	}
	fd, err := unix.PidfdOpen(rec.PID, 0)
	if err != nil {
		return fail(err)
	}
	if !stillOurs(rec) { // the pid was reused before it was pinned
		unix.Close(fd)
		return fail(errors.New("the process is gone"))
	}
	var nw *instanceNet
	if rec.Doors {
		if nw, err = i.sup.openNet(i.spec.Name, i.spec.RunDir, nil, rec.PID); err != nil {
			unix.Close(fd)
			return fail(err)
		}
	}
	waited := make(chan error, 1)
	go func() {
		defer unix.Close(fd)
		err := waitPidfd(fd)
		// After a hand-over the process is still this daemon's child
		// (the pid is the same): reap it. Otherwise there is none to reap.
		var ws unix.WaitStatus
		unix.Wait4(rec.PID, &ws, unix.WNOHANG, nil)
		waited <- err
	}()
	return i.follow(&process{rec: rec, nw: nw, waited: waited, log: i.spec.logPath()}, Adopted)
}

// waitPidfd waits until the process of pidfd fd has exited (it is not the
// daemon's child: its status is not ours to read).
func waitPidfd(fd int) error {
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if err == nil {
			return errors.New("exited")
		}
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
