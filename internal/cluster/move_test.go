package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/cluster"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/pgstore"
	"github.com/taosagent/taosagent/internal/testenv"
)

// Two daemons with directories of their own (per-node storage): an
// agent moves from one to the other only when asked, between its turns,
// its directory and its MCP servers' state carried through the database
// as they were (owners, modes, links as links); the old owner keeps no
// copy and can no longer write for it.
func TestAMoveCarriesAnAgentsFilesToAnotherNode(t *testing.T) {
	pg := testenv.NewPostgres(t)
	dsn := pg.Database(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	names := func(context.Context) ([]string, error) { return []string{"a"}, nil }
	type member struct {
		k   *cluster.Keeper
		log *pgstore.Log
		ag  *agents
		h   home.Home
	}
	var ms [2]member
	for i, id := range []string{"d1", "d2"} {
		l, err := pgstore.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		h := home.Home{Dir: t.TempDir()}
		k := &cluster.Keeper{Log: l, TTL: time.Minute, Names: names, Logger: slog.New(slog.DiscardHandler), Home: h,
			Self: pgstore.Daemon{ID: id, Storage: "s" + id, Dir: h.Agents(), Slots: 2}}
		if err := k.Join(ctx); err != nil {
			t.Fatal(err)
		}
		ms[i] = member{k, l, &agents{busy: map[string]bool{}}, h}
	}
	d1, d2 := ms[0], ms[1]
	if err := d1.log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://x/v1", Models: []agent.Model{{ID: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.log.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}}); err != nil {
		t.Fatal(err)
	}
	d1.k.Step(ctx, d1.ag)
	d2.k.Step(ctx, d2.ag)
	if got, _ := d2.ag.seen(); !d1.k.Here("a") || len(got) != 0 {
		t.Fatalf("a on d1 %v, d2 took %v", d1.k.Here("a"), got)
	}
	if err := d1.log.SetSession(ctx, "a", "ses_1"); err != nil {
		t.Fatal(err)
	}

	// a's files on d1: its directory, and one MCP server's state; a
	// file of the agent's uid, a link out of its tree, a secret beside.
	src := d1.h.Agent("a")
	write(t, filepath.Join(src, "work", "note.txt"), "my notes", 0o640)
	write(t, filepath.Join(d1.h.MCPServer("a", "memory"), "memory.json"), `{"facts":1}`, 0o600)
	write(t, filepath.Join(d1.h.Dir, "secret"), "root's", 0o600)
	if err := os.Chown(filepath.Join(src, "work", "note.txt"), 12345, 12346); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../secret", filepath.Join(src, "work", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "work"), 0o751); err != nil {
		t.Fatal(err)
	}

	// What a move refuses, changing nothing.
	if _, err := d1.k.Move(ctx, "a", "nobody"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("a move to a daemon that never joined: %v", err)
	}
	if _, err := d1.k.Move(ctx, "a", "d1"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a move to the daemon it is on: %v", err)
	}
	if m := moveOf(t, ctx, d1.k, "a"); m != nil {
		t.Fatalf("a move after refusals: %+v", m)
	}

	// Asked through d2, while a's turn runs on d1: nothing moves yet.
	m, err := d2.k.Move(ctx, "a", "d2")
	if err != nil || !m.Copy || m.From != "d1" {
		t.Fatalf("move a to d2: %+v %v", m, err)
	}
	d1.ag.busy["a"] = true
	d1.k.Step(ctx, d1.ag)
	if _, drops := d1.ag.seen(); len(drops) != 0 || !d1.k.Here("a") {
		t.Fatalf("a moved during its turn: dropped %v", drops)
	}
	if m := moveOf(t, ctx, d1.k, "a"); m == nil || m.State != pgstore.MoveAsked {
		t.Fatalf("the move during a's turn: %+v", m)
	}

	// Between its turns, d1 packs it and lets it go.
	d1.ag.mu.Lock()
	d1.ag.busy["a"] = false
	d1.ag.mu.Unlock()
	d1.k.Step(ctx, d1.ag)
	if _, drops := d1.ag.seen(); !slices.Equal(drops, []string{"a"}) || d1.k.Here("a") {
		t.Fatalf("a packed: d1 dropped %v, a here %v", drops, d1.k.Here("a"))
	}
	packed := moveOf(t, ctx, d1.k, "a")
	if packed == nil || packed.State != pgstore.MovePacked || packed.Bytes == 0 {
		t.Fatalf("the move packed: %+v", packed)
	}
	for _, gone := range []string{src, filepath.Join(d1.h.Dir, "mcp", "a")} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still on d1 after the move: %v", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(d1.h.Dir, "secret")); err != nil {
		t.Fatalf("the secret beside a's directory: %v", err)
	}
	e := event.New("ses", event.Delta, time.Now(), event.DeltaData{Text: "x"})
	e.Agent = "a"
	if _, err := d1.log.Append(ctx, e); !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("d1 writing for the agent it moved: %v", err)
	}

	// d2 unpacks it, then runs it.
	d2.k.Step(ctx, d2.ag)
	if got, _ := d2.ag.seen(); !slices.Equal(got, []string{"a<d1"}) || !d2.k.Here("a") {
		t.Fatalf("d2 took %v", got)
	}
	dst := d2.h.Agent("a")
	if b, err := os.ReadFile(filepath.Join(dst, "work", "note.txt")); err != nil || string(b) != "my notes" {
		t.Fatalf("a's note on d2: %q %v", b, err)
	}
	fi, err := os.Lstat(filepath.Join(dst, "work", "note.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 12345 || st.Gid != 12346 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("a's note on d2: %v %d:%d, want -rw-r----- 12345:12346", fi.Mode(), st.Uid, st.Gid)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "work")); err != nil || fi.Mode().Perm() != 0o751 {
		t.Fatalf("a's work directory on d2: %v %v", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "work", "escape")); err != nil || target != "../../secret" {
		t.Fatalf("a's link on d2: %q %v (want the link as it was)", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(d2.h.MCPServer("a", "memory"), "memory.json")); err != nil || string(b) != `{"facts":1}` {
		t.Fatalf("a's MCP server's state on d2: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(d2.h.Dir, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("d1's secret reached d2: %v", err)
	}
	ents, _ := os.ReadDir(d2.h.Agents())
	for _, e := range ents {
		if e.Name() != "a" {
			t.Fatalf("left in d2's agents' directory: %s", e.Name())
		}
	}
	if m := moveOf(t, ctx, d2.k, "a"); m != nil {
		t.Fatalf("the move after d2 unpacked it: %+v", m)
	}
	st, err := d2.k.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := st.Agents[0]; a.Pin != "d2" || a.Storage != "sd2" {
		t.Fatalf("a after its move: pinned to %q, on storage %q", a.Pin, a.Storage)
	}
	// Its directory at another path on d2, its session (which names the
	// path) is let go: its next message starts a new conversation.
	if ag, err := d2.log.Agent(ctx, "a"); err != nil || ag.Session != "" {
		t.Fatalf("a's session after a move to another path: %q %v, want none", ag.Session, err)
	}

	// Its directory on d2 alone, it cannot be moved back while d2 is
	// gone.
	if err := d2.log.Leave(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.k.Move(ctx, "a", "d1"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a move from storage no live daemon has: %v", err)
	}
}

// moveOf is agent's move under way, as k's status shows it.
func moveOf(t *testing.T, ctx context.Context, k *cluster.Keeper, agent string) *api.ClusterMove {
	t.Helper()
	st, err := k.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Agents {
		if a.Agent == agent {
			return a.Move
		}
	}
	return nil
}

func write(t testing.TB, file, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
