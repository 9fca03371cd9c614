package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/scriptedmodel"

	_ "modernc.org/sqlite"
)

// TestNothingReachesOpencodeUnrecorded: while the log refuses to record a
// turn's start, the turn does not start (its prompt never reaches
// opencode), the input stays queued, and /healthz says why; once the log
// takes writes again, the input runs once.
func TestNothingReachesOpencodeUnrecorded(t *testing.T) {
	t.Parallel()
	d, ctx, _ := firstTurn(t)

	// The turns projection now fails inside the commit, as a full disk or
	// an I/O error would.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.home, "taosagent.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER test_fail BEFORE INSERT ON turns BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	second := d.send(ctx, "w", "hello again", "")
	for {
		code, body := get(t, d.addr+"/healthz", "")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "simulated I/O error") {
				t.Errorf("healthz: %s", body)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("healthz never said degraded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, err := d.c.Agent(ctx, "w"); err != nil || a.Status == nil || a.Status.Queued != 1 {
		t.Fatalf("the input is not kept queued: %+v %v", a.Status, err)
	}
	prompts := func() int {
		// The instance's own API, inside its network namespace.
		port, password := instanceSecrets(t, d.home, "w")
		api := instanceHTTP(t, d.home, "w")
		base := "http://127.0.0.1:" + port
		req, _ := http.NewRequest("GET", base+"/session", nil)
		req.SetBasicAuth("opencode", password)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var sessions []struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&sessions)
		resp.Body.Close()
		n := 0
		for _, s := range sessions {
			req, _ := http.NewRequest("GET", base+"/session/"+s.ID+"/message", nil)
			req.SetBasicAuth("opencode", password)
			resp, err := api.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []struct {
				Info struct{ Role string }
			}
			json.NewDecoder(resp.Body).Decode(&msgs)
			resp.Body.Close()
			for _, m := range msgs {
				if m.Info.Role == "user" {
					n++
				}
			}
		}
		return n
	}
	if n := prompts(); n != 1 {
		t.Fatalf("opencode got %d prompts while the turn's start could not be recorded, want only the first turn's", n)
	}

	if _, err := db.Exec(`DROP TRIGGER test_fail`); err != nil {
		t.Fatal(err)
	}
	evs := d.turnOf(ctx, "w", 0, second.Input)
	if e := last(evs); e.Kind != "final" {
		t.Fatalf("the parked input's turn ended %s %s", e.Kind, e.Data)
	}
	if n := prompts(); n != 2 {
		t.Errorf("opencode got %d prompts in all, want 2: the parked input ran once", n)
	}
	if code, body := get(t, d.addr+"/healthz", ""); code != 200 {
		t.Errorf("healthz after recovery: %d %s", code, body)
	}
}

// firstTurn starts a daemon with agent w and runs w's first turn ("hello")
// to its final; it returns the answer to that message.
func firstTurn(t *testing.T) (*daemon, context.Context, client.Accepted) {
	t.Helper()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	d.agent(ctx, "w", "")
	acc := d.send(ctx, "w", "hello", "")
	if e := last(d.turnOf(ctx, "w", 0, acc.Input)); e.Kind != "final" {
		t.Fatalf("first turn: %s", e.Kind)
	}
	return d, ctx, acc
}

// TestAWarmIdleAgent, on one daemon and one agent:
//
//   - a message to an idle agent whose opencode is up is stored and its
//     turn started in one commit (the prompt goes out after one fsync, not
//     two): the answer says "running", and turn.started is the very next
//     event after input.accepted; a message to a cold agent is queued
//     while its opencode starts;
//   - a person attached to the agent's opencode (as the TUI is) runs a
//     session of their own while the agent's turn streams: nothing of that
//     session is recorded as the turn's, and its end does not end the turn;
//   - a person runs a turn on the agent's own session: a message sent
//     meanwhile waits, queued, and neither turn gets the other's events.
func TestAWarmIdleAgent(t *testing.T) {
	t.Parallel()
	d, ctx, cold := firstTurn(t)
	if cold.State != "queued" {
		t.Fatalf("a cold agent's input: %+v", cold)
	}

	t.Run("starts at once", func(t *testing.T) {
		// A message sent the instant the previous turn's end is shown can
		// reach the runner before it is back waiting for one: it is then
		// queued (one commit more, nothing lost). Under load that happens;
		// the next message, once that turn is over, finds it idle.
		var warm client.Accepted
		for try := 1; ; try++ {
			warm = d.send(ctx, "w", "hello again", "")
			if warm.State == "running" || try == 3 {
				break
			}
			d.turnOf(ctx, "w", warm.Seq-1, warm.Input)
		}
		if warm.State != "running" || warm.Duplicate {
			t.Fatalf("a warm idle agent's input: %+v", warm)
		}
		evs := d.turnOf(ctx, "w", warm.Seq-1, warm.Input)
		if evs[0].Kind != "turn.started" || evs[0].Seq != warm.Seq+1 ||
			evs[0].Field("input") != fmt.Sprint(warm.Input) || last(evs).Kind != "final" {
			t.Fatalf("the warm turn: %v", kinds(evs))
		}
		// The same id again is a duplicate, and starts nothing.
		if again, err := d.c.Send(ctx, "w", client.Message{Text: "hello again", ID: warm.ID}); err != nil || !again.Duplicate || again.Input != warm.Input {
			t.Fatalf("duplicate: %+v %v", again, err)
		}
	})

	t.Run("another session is not the turn's", func(t *testing.T) {
		at, err := d.c.Attach(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		oc := &opencode.Client{BaseURL: at.URL, Password: at.Password, Directory: at.Directory, HTTP: &http.Client{}}
		other, err := oc.CreateSession(ctx, "a person's own")
		if err != nil {
			t.Fatal(err)
		}
		slow := d.send(ctx, "w", "slow please", "")
		waitFor(t, ctx, func() bool {
			evs, _ := d.c.Events(ctx, "w", slow.Seq, 1000)
			for _, e := range evs {
				if e.Kind == "delta" {
					return true
				}
			}
			return false
		})
		if err := oc.PromptAsync(ctx, other.ID, opencode.Prompt{Text: "hello"}); err != nil {
			t.Fatal(err)
		}
		evs := d.turnOf(ctx, "w", slow.Seq, slow.Input)
		var text strings.Builder
		for _, e := range evs {
			if e.Session != at.Session {
				t.Fatalf("an event of session %s in the turn on %s: %s %s", e.Session, at.Session, e.Kind, e.Data)
			}
			if e.Kind == "delta" {
				text.WriteString(e.Field("text"))
			}
		}
		if e := last(evs); e.Kind != "final" || text.Len() < 40 {
			t.Fatalf("the turn must end with its own whole answer: %v (%d bytes of text)", kinds(evs), text.Len())
		}
	})

	// A person prompts the pinned session in opencode's TUI; a message
	// that comes meanwhile waits for the end of their turn, and neither
	// turn gets the other's events.
	t.Run("waits for a person's turn on its session", func(t *testing.T) {
		at, err := d.c.Attach(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		oc := &opencode.Client{BaseURL: at.URL, Password: at.Password, Directory: at.Directory, HTTP: &http.Client{}}
		head, _ := d.c.Events(ctx, "w", 0, 10000)
		from := head[len(head)-1].Seq
		if err := oc.PromptAsync(ctx, at.Session, opencode.Prompt{Text: "slow please"}); err != nil {
			t.Fatal(err)
		}
		var theirs string // the person's turn, once its text streams
		waitFor(t, ctx, func() bool {
			evs, _ := d.c.Events(ctx, "w", from, 1000)
			for _, e := range evs {
				if e.Kind == "turn.started" && e.Field("mode") == "attached" {
					theirs = e.Turn
				}
				if e.Kind == "delta" && theirs != "" && e.Turn == theirs {
					return true
				}
			}
			return false
		})
		ours := d.send(ctx, "w", "hello after a person's turn", "")
		if ours.State != "queued" {
			t.Fatalf("a message during a person's turn on the session: %+v", ours)
		}
		if err := oc.Abort(ctx, at.Session); err != nil {
			t.Fatal(err)
		}
		evs := d.turnOf(ctx, "w", from, ours.Input)
		var text strings.Builder
		for _, e := range evs {
			if e.Kind == "delta" {
				text.WriteString(e.Field("text"))
			}
		}
		if last(evs).Kind != "final" || text.String() != scriptedmodel.Answer {
			t.Fatalf("the message's turn must answer it alone: %v %q", kinds(evs), text.String())
		}
		all, _ := d.c.Events(ctx, "w", from, 10000)
		ended := int64(0) // the seq of the person's turn's end
		for _, e := range all {
			if e.Turn == theirs && (e.Kind == "final" || e.Kind == "error") {
				ended = e.Seq
			}
		}
		if ended == 0 || ended > evs[0].Seq {
			t.Fatalf("the person's turn must end (at %d) before the message's starts (at %d)", ended, evs[0].Seq)
		}
	})
}
