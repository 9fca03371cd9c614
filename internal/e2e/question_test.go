package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
)

// askTwo makes the scripted model call opencode's question tool with two
// questions: a colour (the options only) and a name (words of one's own).
const askTwo = `call question {"questions":[` +
	`{"question":"Which colour?","header":"Colour","options":[{"label":"red","description":"warm"},{"label":"blue","description":"cold"}]},` +
	`{"question":"Your name?","header":"Name","options":[{"label":"Ada","description":"a name"}]}]}`

// TestAQuestionWaitsForAPerson, on one daemon and one agent with the real
// opencode: the model's question (opencode's question tool) is listed at
// GET /v1/questions and in the CLI; answers that do not fit what was asked
// get a 422 and change nothing; a person's answer, through the API or the
// CLI, reaches the model and the turn goes on to its final; an answered
// question cannot be answered again; a rejected one ends the tool call with
// an error the model sees; a daemon restart while a question waits leaves
// none pending, and the agent answers its next message.
func TestAQuestionWaitsForAPerson(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "q", "")

	// ask sends askTwo and returns its input and the question once it is
	// pending.
	ask := func(t *testing.T, d *daemon) (client.Accepted, api.Question) {
		t.Helper()
		acc := d.send(ctx, "q", askTwo, "")
		var q api.Question
		err := d.c.Stream(ctx, "q", acc.Seq, func(e client.Event) bool {
			if e.Kind == "final" || e.Kind == "error" {
				t.Fatalf("the turn ended before its question: %s %s", e.Kind, e.Data)
			}
			return e.Kind != "question.asked"
		})
		if err != nil {
			t.Fatal(err)
		}
		qs, _ := d.c.Questions(ctx, "pending")
		for _, x := range qs {
			if x.Agent == "q" {
				q = x
			}
		}
		if len(q.Questions) != 2 || q.Questions[0].Options[1].Label != "blue" || q.Turn == "" || q.CallID == "" {
			t.Fatalf("the pending question: %+v", q)
		}
		return acc, q
	}
	toolOutput := func(evs []client.Event) (out, errText string) {
		for _, e := range evs {
			if e.Kind == "tool_result" && e.Field("tool") == "question" {
				return e.Field("output"), e.Field("error")
			}
		}
		t.Fatalf("no question tool result in %v", kinds(evs))
		return "", ""
	}
	answer := func(id, body string) (int, string) {
		return request(t, "POST", d.addr+"/v1/questions/"+id, d.c.Token, body)
	}

	t.Run("answered through the API", func(t *testing.T) {
		acc, q := ask(t, d)
		for _, bad := range []string{
			`{"answers":[["red","blue"],["x"]]}`, // one answer only
			`{"answers":[["red"]]}`,              // one per question
			`{"answers":[["red"],[]]}`,           // none for the name
			`{"answers":[["red"],[""]]}`,         // an empty one
			`{"answers":[["red"],["x"]],"reject":true}`,
			`{}`, // neither answers nor a reject
		} {
			if code, body := answer(q.ID, bad); code != http.StatusUnprocessableEntity {
				t.Errorf("%s: %d %s, want 422", bad, code, body)
			}
		}
		if code, _ := answer(q.ID, `{"answers":`); code != http.StatusBadRequest {
			t.Errorf("malformed JSON: %d, want 400", code)
		}
		if code, _ := answer("que_nonesuch", `{"reject":true}`); code != http.StatusNotFound {
			t.Errorf("an unknown question: %d, want 404", code)
		}
		if now, _ := d.c.Questions(ctx, "pending"); len(now) != 1 || now[0].ID != q.ID {
			t.Fatalf("bad answers changed the question: %+v", now)
		}
		got, err := d.c.Answer(ctx, q.ID, api.AnswerRequest{Answers: [][]string{{"blue"}, {"Grace"}}})
		if err != nil || got.State != api.QuestionAnswered || got.By == "" || got.Answers[1][0] != "Grace" {
			t.Fatalf("answer: %+v %v", got, err)
		}
		evs := d.turnOf(ctx, "q", acc.Seq, acc.Input)
		out, _ := toolOutput(evs)
		if e := last(evs); e.Kind != "final" || !strings.Contains(out, "blue") || !strings.Contains(out, "Grace") {
			t.Fatalf("the turn after the answer: %v, the tool's output %q", kinds(evs), out)
		}
		order(t, evs, "turn.started", "question.asked", "question.resolved", "tool_result", "final")
		resolved := 0
		for _, e := range evs {
			if e.Kind == "question.resolved" {
				resolved++
			}
		}
		if resolved != 1 {
			t.Errorf("%d question.resolved events, want one (opencode's echo dropped)", resolved)
		}
		if code, body := answer(q.ID, `{"answers":[["red"],["x"]]}`); code != http.StatusConflict {
			t.Errorf("answered twice: %d %s, want 409", code, body)
		}
	})

	t.Run("answered and rejected in the CLI", func(t *testing.T) {
		// taosagent chat, not at a terminal, shows the question and the
		// command that answers it, and follows the turn to its end.
		type result struct {
			out, errOut string
			code        int
		}
		chat := make(chan result, 1)
		go func() {
			o, e, c := d.run("chat", "q", askTwo)
			chat <- result{o, e, c}
		}()
		var q api.Question
		waitFor(t, ctx, func() bool {
			qs, _ := d.c.Questions(ctx, "pending")
			if len(qs) == 1 {
				q = qs[0]
			}
			return len(qs) == 1
		})
		if _, err := d.c.Answer(ctx, q.ID, api.AnswerRequest{Answers: [][]string{{"red"}, {"Ada"}}}); err != nil {
			t.Fatal(err)
		}
		r := <-chat
		if r.code != 0 || !strings.Contains(r.errOut, "question pending: taosagent answer "+q.ID) || !strings.Contains(r.errOut, "1) red") ||
			!strings.Contains(r.out, "Output was") {
			t.Fatalf("taosagent chat (%d):\n%s\n%s", r.code, r.out, r.errOut)
		}

		acc, q := ask(t, d)
		out, _, code := d.run("questions")
		if code != 0 || !strings.Contains(out, q.ID) || !strings.Contains(out, "Which colour?") || !strings.Contains(out, "2) blue") {
			t.Fatalf("taosagent questions (%d):\n%s", code, out)
		}
		if out, errOut, code := d.run("answer", q.ID, "1", "my own name"); code != 0 || !strings.Contains(out, "answered") {
			t.Fatalf("taosagent answer (%d): %s %s", code, out, errOut)
		}
		evs := d.turnOf(ctx, "q", acc.Seq, acc.Input)
		if o, _ := toolOutput(evs); last(evs).Kind != "final" || !strings.Contains(o, "red") || !strings.Contains(o, "my own name") {
			t.Fatalf("the turn after the CLI's answer: %v %q", kinds(evs), o)
		}

		acc, q = ask(t, d)
		if out, errOut, code := d.run("answer", q.ID, "--reject"); code != 0 || !strings.Contains(out, "rejected") {
			t.Fatalf("taosagent answer --reject (%d): %s %s", code, out, errOut)
		}
		evs = d.turnOf(ctx, "q", acc.Seq, acc.Input)
		if _, e := toolOutput(evs); e == "" || last(evs).Kind != "final" {
			t.Fatalf("a rejected question must end its tool call with an error the model sees: %v %q", kinds(evs), e)
		}
		if got, _ := d.c.Questions(ctx, "rejected"); len(got) != 1 || got[0].ID != q.ID {
			t.Errorf("rejected questions: %+v", got)
		}
	})

	t.Run("a restart leaves none pending", func(t *testing.T) {
		acc, q := ask(t, d)
		d.stop()
		d2 := startIn(t, d.home, nil)
		if qs, err := d2.c.Questions(ctx, "pending"); err != nil || len(qs) != 0 {
			t.Fatalf("pending after a restart: %+v %v", qs, err)
		}
		all, _ := d2.c.Questions(ctx, "")
		for _, x := range all {
			if x.ID == q.ID && (x.State != api.QuestionExpired || x.Message == "") {
				t.Errorf("the question cut by the restart: %+v", x)
			}
		}
		var cut string
		all2, _ := d2.c.Events(ctx, "q", acc.Seq, 1000)
		for _, e := range all2 {
			if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(acc.Input) {
				cut = e.Turn
			}
			if e.Turn == cut && cut != "" && e.Kind.Terminal() {
				if e.Kind != "error" {
					t.Fatalf("the cut turn ended %s", e.Kind)
				}
				cut = "ended"
			}
		}
		if cut != "ended" {
			for _, e := range all2 {
				t.Logf("%d %s %s %s", e.Seq, e.Turn, e.Kind, e.Data)
			}
			t.Fatal("the cut turn has no end")
		}
		next := d2.send(ctx, "q", "hello", "")
		if e := last(d2.turnOf(ctx, "q", next.Seq, next.Input)); e.Kind != "final" {
			t.Fatalf("the next turn after the restart: %s %s", e.Kind, e.Data)
		}
		var d3 struct{ Questions []json.RawMessage }
		if code, body := get(t, d2.addr+"/v1/questions?state=pending", d2.c.Token); code != 200 || json.Unmarshal([]byte(body), &d3) != nil || len(d3.Questions) != 0 {
			t.Fatalf("GET /v1/questions?state=pending: %d %s", code, body)
		}
	})
}
