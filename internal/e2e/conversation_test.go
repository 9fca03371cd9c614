package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// TestConversationsAreListedAndResumed, with the real opencode: two
// conversations are listed (title, turns, the current one marked); the
// older, resumed, is where the next message goes, and the model is sent
// its history, not the newer one's; a message can name a conversation
// without switching to it; a conversation the agent does not have is a
// 422 that stores nothing.
func TestConversationsAreListedAndResumed(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	d.agent(ctx, "c", "")
	turn := func(m client.Message) []client.Event {
		t.Helper()
		acc, err := d.c.Send(ctx, "c", m)
		if err != nil {
			t.Fatalf("send %q: %v", m.Text, err)
		}
		evs := d.turnOf(ctx, "c", acc.Seq, acc.Input)
		if e := last(evs); e.Kind != "final" {
			t.Fatalf("%q ended %s %s", m.Text, e.Kind, e.Data)
		}
		return evs
	}
	answer := func(evs []client.Event) string { return last(evs).Field("text") }

	first := turn(client.Message{Text: "alpha fact"})
	if err := d.c.NewConversation(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	turn(client.Message{Text: "beta fact"})
	turn(client.Message{Text: "beta again"})
	cs, err := d.c.Conversations(ctx, "c")
	if err != nil || len(cs) != 2 {
		t.Fatalf("conversations: %+v %v", cs, err)
	}
	newer, older := cs[0], cs[1]
	if newer.Title != "beta fact" || newer.Turns != 2 || !newer.Current || older.Title != "alpha fact" || older.Turns != 1 || older.Current ||
		older.ID != first[0].Session || !newer.LastTurn.After(older.LastTurn) {
		t.Fatalf("conversations: %+v", cs)
	}
	if got := first[0].Field("conversation"); got != older.ID {
		t.Errorf("turn.started carries conversation %q, want %q", got, older.ID)
	}

	// Resumed, the older conversation is where a message goes, with its
	// own history only.
	if out, errOut, code := d.run("resume", "c", older.ID); code != 0 {
		t.Fatalf("taosagent resume (%d): %s %s", code, out, errOut)
	}
	if out, _, code := d.run("conversations", "c"); code != 0 || !strings.Contains(out, "* "+older.ID) || !strings.Contains(out, "  "+newer.ID) || !strings.Contains(out, "beta fact") {
		t.Fatalf("taosagent conversations (%d):\n%s", code, out)
	}
	evs := turn(client.Message{Text: "recall"})
	if a := answer(evs); !strings.Contains(a, "alpha fact") || strings.Contains(a, "beta") || evs[0].Session != older.ID {
		t.Fatalf("the resumed conversation's turn answered %q (session %s)", a, evs[0].Session)
	}
	// A message naming the newer one runs there, and switches nothing.
	evs = turn(client.Message{Text: "recall", Conversation: newer.ID})
	if a := answer(evs); !strings.Contains(a, "beta fact | beta again") || strings.Contains(a, "alpha") || evs[0].Session != newer.ID {
		t.Fatalf("the named conversation's turn answered %q", a)
	}
	cs, _ = d.c.Conversations(ctx, "c")
	if len(cs) != 2 || cs[0].ID != newer.ID || cs[0].Turns != 3 || cs[1].Turns != 2 || !cs[1].Current {
		t.Fatalf("conversations after: %+v", cs)
	}

	// Bad input: a 422 (404 for no agent), and nothing stored.
	before, _ := d.c.Events(ctx, "c", 0, 10000)
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/agents/c/messages", `{"text":"hi","conversation":"ses_nonesuch"}`, http.StatusUnprocessableEntity},
		{"POST", "/v1/agents/c/messages", `{"text":"hi","conversation":"` + older.ID + `","mode":"steer"}`, http.StatusUnprocessableEntity},
		{"POST", "/v1/agents/c/conversations/ses_nonesuch/resume", ``, http.StatusUnprocessableEntity},
		{"GET", "/v1/agents/nobody/conversations", ``, http.StatusNotFound},
	} {
		if code, body := request(t, c.method, d.addr+c.path, d.c.Token, c.body); code != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, body, c.want)
		}
	}
	if after, _ := d.c.Events(ctx, "c", 0, 10000); len(after) != len(before) {
		t.Errorf("bad input stored %d events", len(after)-len(before))
	}
	if cs, _ := d.c.Conversations(ctx, "c"); !cs[1].Current {
		t.Errorf("a refused resume changed the current conversation: %+v", cs)
	}
}
