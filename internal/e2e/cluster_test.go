package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/testenv"
)

// Three daemons share one PostgreSQL database (serve --cluster, leases of
// 2 s) and one agents' directory (a bind mount of the same directory in
// each home: shared storage). Agents spread over them; a message sent to
// one daemon for an agent another owns runs on the owner and streams
// from the first. The owner killed with SIGKILL mid-turn: its agent moves
// within its lease and one start, the cut turn ends with one error
// naming the failover, and a stream resumed by cursor on another daemon
// misses nothing and repeats nothing. An owner frozen (SIGSTOP) past its
// lease, then resumed, writes not one event for the agent it lost. A
// drained daemon gives its agent up between two turns, not during one.
func TestAClusterOfThreeDaemons(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	dsn := pg.Database(t)
	env := []string{"TAOSAGENT_DB=" + dsn}
	ctx := ctxT(t, 4*time.Minute)
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	nodes := newNodes(t, env)
	member := func() *daemon { return nodes.start("") }
	ds := []*daemon{member(), member(), member()}
	byID, id := map[string]*daemon{}, map[*daemon]string{}
	status := func(d *daemon) api.Cluster {
		t.Helper()
		var st api.Cluster
		if err := d.c.Do(ctx, "GET", "/v1/cluster", nil, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, d := range ds {
		id[d] = status(d).Daemon
		byID[id[d]] = d
	}
	// owner waits until agent has a live owner among want (any if none),
	// as d sees it, and returns it.
	owner := func(d *daemon, agent string, want ...*daemon) *daemon {
		t.Helper()
		return byID[waitOwner(t, ctx, d, agent, func(o string) bool {
			return byID[o] != nil && (len(want) == 0 || slices.Contains(want, byID[o]))
		})]
	}
	// Two agents beside host: with host on one daemon, one each on the
	// others.
	ds[0].agent(ctx, "a", "")
	ds[0].agent(ctx, "b", `{"bash":"ask"}`)
	oa, ob, oh := owner(ds[1], "a"), owner(ds[1], "b"), owner(ds[1], "host")
	if oa == ob || oa == oh || ob == oh {
		t.Fatalf("three agents on three daemons did not spread: %+v", status(ds[1]))
	}

	// A message sent to another daemon runs on a's owner and streams from
	// where it was sent.
	via := ob
	first := via.send(ctx, "a", "say: sent to another daemon", "")
	if e := last(via.turnOf(ctx, "a", first.Seq-1, first.Input)); e.Kind != "final" || !strings.Contains(e.Field("text"), "sent to another daemon") {
		t.Fatalf("the turn sent through another daemon ended %s %q", e.Kind, e.Field("text"))
	}
	pidOn := func(d *daemon, agent string) int {
		a, err := d.c.Agent(ctx, agent)
		if err != nil {
			t.Fatal(err)
		}
		return a.Status.PID
	}
	pid := pidOn(oa, "a")
	if pid == 0 || pidOn(via, "a") != 0 {
		t.Fatalf("a's instance: %d on its owner, %d on the daemon the message went to", pid, pidOn(via, "a"))
	}
	// What only its owner can do goes to the owner, and its answer (an
	// error too) comes back: an abort of a turn that does not run, and
	// the answer to b's approval, both given to a daemon that does not
	// own the agent.
	if _, err := via.c.Abort(ctx, "a"); err == nil || !strings.Contains(err.Error(), "no running turn") {
		t.Fatalf("an abort of a sent to another daemon: %v", err)
	}
	asks := oa.send(ctx, "b", "use a tool", "")
	var pending []client.Approval
	waitFor(t, ctx, func() bool { pending, _ = oa.c.Approvals(ctx, "pending"); return len(pending) == 1 })
	if ap, err := oa.c.Approve(ctx, pending[0].ID, "once", ""); err != nil || ap.State != "once" {
		t.Fatalf("b's approval answered through another daemon: %+v %v", ap, err)
	}
	if e := last(oa.turnOf(ctx, "b", asks.Seq-1, asks.Input)); e.Kind != "final" {
		t.Fatalf("b's turn after its approval through another daemon ended %s %q", e.Kind, e.Field("message"))
	}

	// a's owner is killed mid-turn; the stream goes on from its cursor on
	// another daemon.
	cut := via.send(ctx, "a", "endless", "")
	var streamed []client.Event
	err := via.c.Stream(ctx, "a", cut.Seq-1, func(e client.Event) bool {
		streamed = append(streamed, e)
		return e.Kind != "delta" && e.Kind != "reasoning"
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another daemon shows where a runs, and its turn, from the store.
	if st, err := via.c.Agent(ctx, "a"); err != nil || st.Status.Daemon != id[oa] || st.Status.State != "busy" || st.Status.Turn == "" {
		t.Fatalf("a's status on another daemon mid-turn: %+v %v", st.Status, err)
	}
	oa.kill()
	killed := time.Now()
	alive := slices.DeleteFunc(slices.Clone(ds), func(d *daemon) bool { return d == oa })
	next := owner(via, "a", alive...)
	t.Logf("a moved %.1f s after its owner's kill (lease 2 s)", time.Since(killed).Seconds())
	if f := cluster(t, via, dsn); f.Severity != "ok" || !strings.Contains(f.Summary, "a cluster: 2 daemons live") || !strings.Contains(f.Details, id[oa]) {
		t.Fatalf("doctor's cluster check once a daemon died: %+v", f)
	}
	other := alive[0]
	if other == via {
		other = alive[1]
	}
	rest, err := other.c.Events(ctx, "a", last(streamed).Seq, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for !slices.ContainsFunc(rest, terminal) {
		more, err := other.c.Events(ctx, "a", last(append(streamed, rest...)).Seq, 1000)
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, more...)
		if len(more) == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("the cut turn never ended: %v", kinds(rest))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	whole, err := next.c.Events(ctx, "a", cut.Seq-1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	resumed := append(streamed, rest...)
	if !slices.EqualFunc(resumed, whole[:min(len(whole), len(resumed))], func(x, y client.Event) bool { return x.Seq == y.Seq }) || len(resumed) > len(whole) {
		t.Fatalf("resumed on another daemon: %v\nthe log: %v", seqs(resumed), seqs(whole))
	}
	var ends []client.Event
	for _, e := range whole {
		if terminal(e) {
			ends = append(ends, e)
		}
	}
	if len(ends) != 1 || ends[0].Field("code") != "interrupted" || !strings.Contains(ends[0].Field("message"), "failover") || !strings.Contains(ends[0].Field("message"), id[oa]) {
		t.Fatalf("the cut turn's ends: %+v", ends)
	}
	again := via.send(ctx, "a", "say: on the next owner", "")
	if e := last(via.turnOf(ctx, "a", again.Seq-1, again.Input)); e.Kind != "final" {
		t.Fatalf("the turn on a's next owner ended %s %q", e.Kind, e.Field("message"))
	}

	// a's owner frozen past its lease: a moves to the last daemon; the
	// frozen one, resumed, writes nothing for it and stops its instance.
	frozen := next
	fpid := pidOn(frozen, "a")
	frozen.cmd.Process.Signal(syscall.SIGSTOP)
	last3 := alive[0]
	if last3 == frozen {
		last3 = alive[1]
	}
	owner(last3, "a", last3)
	held, err := last3.c.Events(ctx, "a", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	head := last(held).Seq
	frozen.cmd.Process.Signal(syscall.SIGCONT)
	for !strings.Contains(frozen.log.String(), "lost an agent") || !exited(fpid) {
		select {
		case <-ctx.Done():
			t.Fatalf("the resumed daemon did not give a up (instance %d gone: %v):\n%s", fpid, exited(fpid), frozen.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if after, err := last3.c.Events(ctx, "a", head, 1000); err != nil || len(after) != 0 {
		t.Fatalf("events of a after it moved: %v %v", kinds(after), err)
	}

	// A drain moves a between two turns, not during one.
	busy := last3.send(ctx, "a", "endless", "")
	if err := last3.c.Stream(ctx, "a", busy.Seq, func(e client.Event) bool { return e.Kind != "delta" }); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := last3.run("drain"); code != 0 || !strings.Contains(out, "draining") {
		t.Fatalf("taosagent drain: %d %s %s", code, out, stderr)
	}
	// A whole round of its keeper passes with the turn running (two
	// heartbeats: placement comes after each): a stays.
	expires := func() time.Time {
		for _, d := range status(last3).Daemons {
			if byID[d.ID] == last3 {
				return d.Expires
			}
		}
		t.Fatal("the draining daemon is not in the cluster")
		return time.Time{}
	}
	for i, seen := 0, expires(); i < 2; i++ {
		for !expires().After(seen) {
			select {
			case <-ctx.Done():
				t.Fatal("the draining daemon's keeper does not go round")
			case <-time.After(50 * time.Millisecond):
			}
		}
		seen = expires()
	}
	if o := owner(last3, "a"); o != last3 {
		t.Fatalf("a moved off a draining daemon during its turn, to %s", id[o])
	}
	if _, err := frozen.c.Abort(ctx, "a"); err != nil { // through another daemon
		t.Fatal(err)
	}
	moved := owner(frozen, "a", frozen)
	end := last(moved.turnOf(ctx, "a", busy.Seq-1, busy.Input))
	if end.Kind != "error" || end.Field("code") == "interrupted" {
		t.Fatalf("the turn a drain waited for ended %s %s %q", end.Kind, end.Field("code"), end.Field("message"))
	}
	final := frozen.send(ctx, "a", "say: after the drain", "")
	if e := last(frozen.turnOf(ctx, "a", final.Seq-1, final.Input)); e.Kind != "final" {
		t.Fatalf("the turn after the drain ended %s", e.Kind)
	}
}

func seqs(evs []client.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func terminal(e client.Event) bool { return e.Kind == "final" || e.Kind == "error" }

// nodes starts daemons of one cluster (serve --cluster --lease 2s) as if
// each were on a machine of its own: a mount and a host name namespace
// (node1, node2, …), its home at one path (the same on every "machine",
// as a service's is), one shared directory mounted on its agents'
// directory (shared storage), or with perNode each its own (per-node
// directories).
type nodes struct {
	t       testing.TB
	env     []string
	at      string
	shared  string
	perNode bool
	homes   []string
}

func newNodes(t testing.TB, env []string) *nodes {
	n := &nodes{t: t, env: env, at: filepath.Join(t.TempDir(), "taosagent"), shared: t.TempDir()}
	if err := os.Mkdir(n.at, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(n.shared, 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// start starts a new node, or with home the node of that home again.
func (n *nodes) start(home string) *daemon {
	t := n.t
	t.Helper()
	const script = `mount --bind "$1" "$2" && { [ -z "$3" ] || mount --bind "$3" "$2/agents"; } && echo "$4" > /proc/sys/kernel/hostname && shift 4 && exec "$@"`
	if home == "" {
		home = newHome(t)
		if err := os.Mkdir(filepath.Join(home, "agents"), 0o755); err != nil {
			t.Fatal(err)
		}
		n.homes = append(n.homes, home)
	}
	name := fmt.Sprintf("node%d", slices.Index(n.homes, home)+1)
	shared := n.shared
	if n.perNode {
		shared = ""
	}
	cmd := exec.Command("unshare", "--mount", "--uts", "sh", "-c", script, "sh", home, n.at, shared, name,
		binary, "serve", "--home", n.at, "--listen", "127.0.0.1:0", "--cluster", "--lease", "2s")
	cmd.Env = append(append(os.Environ(), "TAOSAGENT_OPENCODE="+testenv.Opencode(t)), n.env...)
	d, err := launchCmd(t, home, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitOwner waits until agent has an owner that ok accepts, as d sees it
// (GET /v1/cluster), and returns that owner's id.
func waitOwner(tb testing.TB, ctx context.Context, d *daemon, agent string, ok func(owner string) bool) string {
	tb.Helper()
	for {
		var st api.Cluster
		if err := d.c.Do(ctx, "GET", "/v1/cluster", nil, &st); err != nil {
			tb.Fatal(err)
		}
		for _, a := range st.Agents {
			if a.Agent == agent && a.Owner != "" && ok(a.Owner) {
				return a.Owner
			}
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("agent %s has no owner as wanted: %+v", agent, st)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// daemonID is d's id in its cluster.
func daemonID(tb testing.TB, ctx context.Context, d *daemon) string {
	tb.Helper()
	var st api.Cluster
	if err := d.c.Do(ctx, "GET", "/v1/cluster", nil, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Daemon
}

// Two daemons of one cluster with agents' directories of their own
// (per-node directories): an agent stays where its directory is until a
// person moves it (taosagent move); then its files are copied through
// the database between its turns, and its conversation goes on there.
func TestMovingAnAgentToAnotherNodesDirectory(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	dsn := pg.Database(t)
	ctx := ctxT(t, 3*time.Minute)
	nodes := newNodes(t, []string{"TAOSAGENT_DB=" + dsn})
	nodes.perNode = true
	ds := []*daemon{nodes.start(""), nodes.start("")}
	ids := []string{daemonID(t, ctx, ds[0]), daemonID(t, ctx, ds[1])}
	ds[0].agent(ctx, "a", "")
	from := slices.Index(ids, waitOwner(t, ctx, ds[0], "a", func(string) bool { return true }))
	to := 1 - from
	file := func(i int, rel string) string { return filepath.Join(nodes.homes[i], "agents", "a", rel) }

	// A file in a's workdir, by a turn sent through the other daemon.
	acc := ds[to].send(ctx, "a", "run: echo kiwi > note.txt", "")
	if e := last(ds[to].turnOf(ctx, "a", acc.Seq-1, acc.Input)); e.Kind != "final" {
		t.Fatalf("the first turn ended %s %q", e.Kind, e.Field("message"))
	}
	before, err := os.Stat(file(from, "work/note.txt"))
	if err != nil {
		t.Fatalf("a's note on its first node: %v", err)
	}

	// What a move refuses.
	if _, stderr, code := ds[0].run("move", "a", "nobody:/x"); code == 0 || !strings.Contains(stderr, "no such daemon") {
		t.Fatalf("a move to a daemon that never joined: exit %d, %s", code, stderr)
	}

	// The move, by the CLI, which waits until a runs there.
	out, stderr, code := ds[from].run("move", "a", ids[to])
	if code != 0 || !strings.Contains(out, "its files are copied") || !strings.Contains(out, "a runs on "+ids[to]) {
		t.Fatalf("taosagent move a %s: exit %d\n%s%s", ids[to], code, out, stderr)
	}
	if b, err := os.ReadFile(file(to, "work/note.txt")); err != nil || string(b) != "kiwi\n" {
		t.Fatalf("a's note on its new node: %q %v", b, err)
	}
	after, err := os.Stat(file(to, "work/note.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := after.Sys().(*syscall.Stat_t), before.Sys().(*syscall.Stat_t); a.Uid != b.Uid || a.Uid == 0 {
		t.Fatalf("a's note belongs to uid %d on its new node, %d before", a.Uid, b.Uid)
	}
	if _, err := os.Lstat(file(from, ".")); !os.IsNotExist(err) {
		t.Fatalf("a's directory is still on its first node: %v", err)
	}

	// Its conversation goes on: opencode on the new node finds its
	// session in the directory that moved.
	acc = ds[from].send(ctx, "a", "recall", "")
	e := last(ds[from].turnOf(ctx, "a", acc.Seq-1, acc.Input))
	if e.Kind != "final" || !strings.Contains(e.Field("text"), "run: echo kiwi > note.txt") {
		t.Fatalf("the turn after the move ended %s %q: its conversation did not move", e.Kind, e.Field("text"))
	}
	if o := waitOwner(t, ctx, ds[from], "a", func(string) bool { return true }); o != ids[to] {
		t.Fatalf("a ran its turn on %s, want %s", o, ids[to])
	}
}
