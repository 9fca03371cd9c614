package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

// The first start creates the demo provider and the host agent; a text
// turn and a tool turn through the API, then through the CLI.
func TestChatOverAPIAndCLI(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	ps, err := d.c.Providers(ctx)
	if err != nil || len(ps) != 1 || !ps[0].Demo || !strings.Contains(ps[0].Name, "not an AI") {
		t.Fatalf("first start: providers %+v %v", ps, err)
	}
	if a, err := d.c.Agent(ctx, "host"); err != nil || !a.Builtin {
		t.Fatalf("host agent: %+v %v", a, err)
	}

	acc := d.send(ctx, "host", "hello there", "")
	evs := d.turnOf(ctx, "host", acc.Seq-1, acc.Input)
	order(t, evs, "turn.started", "reasoning", "delta", "final")
	if f := last(evs); f.Kind != "final" || f.Field("text") != scriptedmodel.Answer {
		t.Fatalf("text turn ended with %s %s", f.Kind, f.Data)
	}

	// The host agent has no shell: its model's bash call is refused.
	acc = d.send(ctx, "host", "Please use a tool to say hi", "")
	evs = d.turnOf(ctx, "host", acc.Seq, acc.Input)
	results := 0
	for _, e := range evs {
		if e.Kind == "tool_result" {
			results++
			if e.Field("output") == "hi\n" || (e.Field("tool") == "bash" && e.Field("error") == "") {
				t.Fatalf("host ran a shell: %s", e.Data)
			}
		}
	}
	if f := last(evs); results != 1 || f.Kind != "final" {
		var seen []string
		for _, e := range evs {
			seen = append(seen, string(e.Kind)+" "+string(e.Data))
		}
		t.Fatalf("host's refused tool turn: %d results, ended %s %s; its events:\n%s", results, f.Kind, f.Data, strings.Join(seen, "\n"))
	}
	code, body := patch(t, d.addr+"/v1/agents/host", d.c.Token, `{"permission":{"bash":"allow"}}`)
	if code != 422 || !strings.Contains(body, "never gets a raw shell") {
		t.Fatalf("PATCH host bash allow: %d %s", code, body)
	}
	if a, _ := d.c.Agent(ctx, "host"); !strings.Contains(string(a.Permission), `"bash":"deny"`) {
		t.Fatalf("host permission after the refused PATCH: %s", a.Permission)
	}

	d.agent(ctx, "worker", `{"bash":"allow"}`)
	acc = d.send(ctx, "worker", "Please use a tool to say hi", "")
	evs = d.turnOf(ctx, "worker", 0, acc.Input)
	order(t, evs, "turn.started", "tool_call", "tool_result", "delta", "final")
	for _, e := range evs {
		if e.Kind == "tool_result" && (e.Field("output") != "hi\n" || e.Field("tool") != "bash") {
			t.Fatalf("tool result %s", e.Data)
		}
	}

	out, errOut, code := d.run("chat", "worker", "Please", "use", "a", "tool")
	if code != 0 || !strings.Contains(out, "tool bash") || !strings.Contains(out, "answer: The tool finished") || !strings.Contains(out, "final") {
		t.Fatalf("chat: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = d.run("chat", "host", "hello")
	if code != 0 || !strings.Contains(out, "thinking: ") || !strings.Contains(out, "answer: "+scriptedmodel.Answer) {
		t.Fatalf("chat: reasoning must be set apart from the answer: exit %d\n%s", code, out)
	}
	out, _, code = d.run("chat", "host", "fail401")
	if code != 1 || !strings.Contains(out, "error provider_auth") {
		t.Fatalf("chat of a failing turn: exit %d\n%s", code, out)
	}

	out, _, code = d.run("agents")
	if code != 0 || !strings.Contains(out, "host") || !strings.Contains(out, "demo/scripted-demo") {
		t.Fatalf("agents: %d %s", code, out)
	}
	out, _, code = d.run("providers")
	if code != 0 || !strings.Contains(out, "DEMO") {
		t.Fatalf("providers: %d %s", code, out)
	}
	out, _, code = d.run("events", "worker", "--after", strconv.FormatInt(acc.Seq, 10))
	if code != 0 || !strings.Contains(out, "\ttool_call\t") || strings.Contains(out, "\tinput.accepted\t{\"input\":1,") {
		t.Fatalf("events --after: %d %s", code, out)
	}
}

// An SSE client that drops mid-turn and comes back with Last-Event-ID
// gets every event once.
func TestSSEResumeWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	acc := d.send(ctx, "host", "slow please", "")

	stream := func(lastID string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequestWithContext(ctx, "GET", d.addr+"/v1/agents/host/events/stream", nil)
		req.Header.Set("Authorization", "Bearer "+d.c.Token)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %v %v", resp, err)
		}
		return resp, bufio.NewReader(resp.Body)
	}
	var seqs []int64
	read := func(r *bufio.Reader, until func(kind string, n int) bool) {
		var id, kind string
		n := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v after %v", err, seqs)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "event: "):
				kind = line[7:]
			case strings.HasPrefix(line, "data: "):
				var e client.Event
				if err := json.Unmarshal([]byte(line[6:]), &e); err != nil || strconv.FormatInt(e.Seq, 10) != id || string(e.Kind) != kind {
					t.Fatalf("frame id %s event %s data %s", id, kind, line)
				}
				seqs = append(seqs, e.Seq)
				if kind == "delta" {
					n++
				}
				if until(kind, n) {
					return
				}
			}
		}
	}
	resp, r := stream("")
	read(r, func(kind string, n int) bool { return n == 5 })
	resp.Body.Close() // drop mid-turn
	// Events go on while the client is away.
	lastSeen := seqs[len(seqs)-1]
	waitFor(t, ctx, func() bool {
		evs, _ := d.c.Events(ctx, "host", lastSeen, 100)
		return len(evs) >= 3
	})
	resp, r = stream(strconv.FormatInt(lastSeen, 10))
	read(r, func(kind string, _ int) bool { return kind == "final" || kind == "error" })
	resp.Body.Close()

	stored, err := d.c.Events(ctx, "host", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, e := range stored {
		if e.Seq <= seqs[len(seqs)-1] {
			want = append(want, e.Seq)
		}
	}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Fatalf("seen across the reconnect:\n%v\nstored:\n%v", seqs, want)
	}
	// What ended the read is the end of the slow turn itself.
	evs := d.turnOf(ctx, "host", acc.Seq-1, acc.Input)
	if e := last(evs); e.Kind != "final" || e.Seq != seqs[len(seqs)-1] {
		t.Fatalf("the stream ended at seq %d; the slow turn ended with %s at %d", seqs[len(seqs)-1], e.Kind, e.Seq)
	}
	// ?after= resumes the same way; a cursor past the head waits quietly.
	code, _ := get(t, d.addr+"/v1/agents/host/events/stream?after=abc", d.c.Token)
	if code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
}

// kill -9 of the daemon mid-turn: what was committed is there, the turn is
// marked interrupted, its pending approval expired, and a queued input
// then runs.
func TestKill9MidTurn(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "asker", `{"bash":"ask"}`)
	d.agent(ctx, "worker", `{"bash":"allow"}`)
	// Still streaming at the kill, however long the asker takes to ask.
	slow := d.send(ctx, "host", "endless please", "")
	queued := d.send(ctx, "host", "hello after the crash", "queue")
	ask := d.send(ctx, "asker", "use a tool", "")
	// A tool that runs through the kill and ends while no daemon runs.
	done := filepath.Join(d.home, "agents", "worker", "work", "finished.txt")
	work := d.send(ctx, "worker", "run: while [ ! -e go.txt ]; do sleep 0.05; done; echo finished | tee finished.txt", "")
	workTurn := func(evs []client.Event) (turn string, out []client.Event) {
		for _, e := range evs {
			if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(work.Input) {
				turn = e.Turn
			}
			if turn != "" && e.Turn == turn {
				out = append(out, e)
			}
		}
		return turn, out
	}

	var seen []client.Event
	var mu sync.Mutex
	go d.c.Stream(ctx, "host", 0, func(e client.Event) bool {
		mu.Lock()
		seen = append(seen, e)
		mu.Unlock()
		return true
	})
	waitFor(t, ctx, func() bool {
		ap, _ := d.c.Approvals(ctx, "pending")
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range seen {
			if e.Kind == "delta" {
				n++
			}
		}
		if len(ap) != 1 || n < 3 {
			return false
		}
		evs, _ := d.c.Events(ctx, "worker", 0, 10000)
		_, w := workTurn(evs)
		return slices.ContainsFunc(w, func(e client.Event) bool { return e.Kind == "tool_call" })
	})
	host, err := d.c.Agent(ctx, "host")
	if err != nil || host.Status.PID == 0 {
		t.Fatalf("the host's instance before the kill: %+v %v", host.Status, err)
	}
	d.kill()
	mu.Lock()
	before := append([]client.Event(nil), seen...)
	mu.Unlock()
	// The worker's tool goes on, and ends, while no daemon runs.
	if err := os.WriteFile(filepath.Join(filepath.Dir(done), "go.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, func() bool { _, err := os.Stat(done); return err == nil })

	d2 := start(t, d.home)
	stored, err := d2.c.Events(ctx, "host", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[int64]client.Event{}
	for _, e := range stored {
		bySeq[e.Seq] = e
	}
	for _, e := range before {
		if s, ok := bySeq[e.Seq]; !ok || s.Kind != e.Kind || string(s.Data) != string(e.Data) {
			t.Fatalf("event %d (%s) seen before the kill is not stored as it was", e.Seq, e.Kind)
		}
	}
	var slowTurn string
	for _, e := range stored {
		if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(slow.Input) {
			slowTurn = e.Turn
		}
	}
	var ended []client.Event
	for _, e := range stored {
		if e.Turn == slowTurn && (e.Kind == "final" || e.Kind == "error") {
			ended = append(ended, e)
		}
	}
	if len(ended) != 1 || ended[0].Kind != "error" || ended[0].Field("code") != "interrupted" || !ended[0].Synthetic ||
		!strings.Contains(ended[0].Field("message"), "restarted") {
		t.Fatalf("the interrupted turn must end with one synthetic interrupted error that names the restart: %+v", ended)
	}
	evs := d2.turnOf(ctx, "host", 0, queued.Input)
	if last(evs).Kind != "final" {
		t.Fatalf("the queued input after the restart: %v", kinds(evs))
	}
	// The daemon's death did not take the host's opencode with it: the
	// new daemon adopted the same process and ran the queued turn on it,
	// without a start.
	after, err := d2.c.Events(ctx, "host", before[len(before)-1].Seq, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, e := range after {
		if e.Kind == "instance" {
			states = append(states, fmt.Sprint(e.Field("state"), " ", e.Field("pid")))
		}
	}
	if want := fmt.Sprint("adopted ", host.Status.PID); len(states) != 1 || states[0] != want {
		t.Errorf("the host's instance after the restart: %v, want only %q", states, want)
	}
	aps, _ := d2.c.Approvals(ctx, "")
	if len(aps) != 1 || aps[0].State != "expired" {
		t.Fatalf("the approval of the interrupted turn: %+v", aps)
	}
	if _, err := d2.c.Approve(ctx, aps[0].ID, "once", ""); client.StatusOf(err) != 409 {
		t.Fatalf("answering an expired approval: %v", err)
	}
	// The asker's turn, waiting on that approval, ended interrupted too.
	asked, err := d2.c.Events(ctx, "asker", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var askTurn string
	var askEnds []client.Event
	for _, e := range asked {
		if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(ask.Input) {
			askTurn = e.Turn
		}
		if askTurn != "" && e.Turn == askTurn && (e.Kind == "final" || e.Kind == "error") {
			askEnds = append(askEnds, e)
		}
	}
	if len(askEnds) != 1 || askEnds[0].Field("code") != "interrupted" || !askEnds[0].Synthetic {
		t.Fatalf("the asker's interrupted turn must end with one synthetic interrupted error: %+v", askEnds)
	}
	// What the worker's opencode did while no daemon ran is recorded from
	// its own messages, marked synthetic, before the turn's one end.
	worked, err := d2.c.Events(ctx, "worker", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	_, w := workTurn(worked)
	var got []string
	for _, e := range w {
		switch e.Kind {
		case "tool_call", "tool_result", "final", "error":
			got = append(got, fmt.Sprintf("%s synthetic=%v %s", e.Kind, e.Synthetic, strings.TrimSpace(e.Field("output"))))
		}
	}
	want := []string{"tool_call synthetic=false ", "tool_result synthetic=true finished", "error synthetic=true "}
	if !slices.Equal(got, want) {
		t.Fatalf("the worker's turn across the kill:\n got %q\nwant %q", got, want)
	}
}

// queue waits for its own turn; steer joins the running one; abort ends
// the running turn and keeps the queue.
func TestQueueSteerAndAbort(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	first := d.send(ctx, "host", "slow please", "")
	waitFor(t, ctx, func() bool {
		a, _ := d.c.Agent(ctx, "host")
		return a.Status != nil && a.Status.State == "busy"
	})
	deltasOf := func(input int64, n int) func() bool {
		return func() bool {
			evs, _ := d.c.Events(ctx, "host", 0, 10000)
			var turn string
			c := 0
			for _, e := range evs {
				if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(input) {
					turn = e.Turn
				}
				if turn != "" && e.Turn == turn && e.Kind == "delta" {
					c++
				}
			}
			return c >= n
		}
	}
	waitFor(t, ctx, deltasOf(first.Input, 3)) // the slow answer is streaming
	q := d.send(ctx, "host", "hello queued", "queue")
	s := d.send(ctx, "host", "hello steered", "steer")
	t1 := d.turnOf(ctx, "host", first.Seq-1, first.Input)
	steered := false
	for _, e := range t1 {
		if e.Kind == "input.steered" && e.Field("input") == fmt.Sprint(s.Input) {
			steered = true
		}
		if e.Kind == "turn.started" && e.Field("input") == fmt.Sprint(q.Input) {
			t.Fatal("a queued input started inside the running turn")
		}
	}
	if !steered || last(t1).Kind != "final" {
		t.Fatalf("steer must join the running turn: %v", kinds(t1))
	}
	t2 := d.turnOf(ctx, "host", first.Seq, q.Input)
	if t2[0].Kind != "turn.started" || t2[0].Turn == t1[0].Turn || last(t2).Kind != "final" || t2[0].Seq < last(t1).Seq {
		t.Fatalf("the queued input must run as its own turn after the first: %v", kinds(t2))
	}

	// Abort: the running turn ends "aborted", the queued input still runs.
	slow := d.send(ctx, "host", "slow again", "")
	waitFor(t, ctx, func() bool {
		a, _ := d.c.Agent(ctx, "host")
		return a.Status != nil && a.Status.State == "busy"
	})
	after := d.send(ctx, "host", "hello after the abort", "queue")
	waitFor(t, ctx, deltasOf(slow.Input, 2))
	start := time.Now()
	turn, err := d.c.Abort(ctx, "host")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("abort took %v", time.Since(start))
	t3 := d.turnOf(ctx, "host", slow.Seq-1, slow.Input)
	if l := last(t3); l.Turn != turn || l.Kind != "error" || l.Field("code") != "aborted" {
		t.Fatalf("aborted turn ended with %s %s", l.Kind, l.Data)
	}
	t4 := d.turnOf(ctx, "host", slow.Seq, after.Input)
	if last(t4).Kind != "final" {
		t.Fatalf("the queue after an abort: %v", kinds(t4))
	}
	if _, err := d.c.Abort(ctx, "host"); client.StatusOf(err) != 409 {
		t.Fatalf("abort while idle: %v", err)
	}
}

func TestApprovalsThroughTheAPI(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	d.agent(ctx, "asker", `{"bash":"ask"}`)
	for _, c := range []struct{ decision, message, wantOutput string }{
		{"once", "", "hi\n"},
		{"reject", "not on this machine", "not on this machine"},
	} {
		acc := d.send(ctx, "asker", "use a tool", "")
		ap := d.onePending(t, ctx)
		got, err := d.c.Approve(ctx, ap.ID, c.decision, c.message)
		if err != nil || got.State != c.decision || got.Message != c.message || got.By == "" {
			t.Fatalf("answer %s: %+v %v", c.decision, got, err)
		}
		if _, err := d.c.Approve(ctx, ap.ID, "once", ""); client.StatusOf(err) != 409 {
			t.Fatalf("answering twice: %v", err)
		}
		evs := d.turnOf(ctx, "asker", acc.Seq, acc.Input)
		order(t, evs, "permission.asked", "permission.resolved", "tool_result", "final")
		order(t, evs, "tool_call", "tool_result")
		resolved := 0
		for _, e := range evs {
			if e.Kind == "permission.resolved" {
				resolved++
				if e.Field("decision") != c.decision || e.Field("by") == "" {
					t.Fatalf("resolved: %s", e.Data)
				}
			}
			if e.Kind == "tool_result" && !strings.Contains(e.Field("output")+e.Field("error"), c.wantOutput) {
				t.Fatalf("%s: tool result %s", c.decision, e.Data)
			}
		}
		if resolved != 1 {
			t.Fatalf("%d permission.resolved events, want 1", resolved)
		}
	}
	if _, err := d.c.Approve(ctx, "per_nonexistent", "once", ""); client.StatusOf(err) != 404 {
		t.Fatalf("unknown approval: %v", err)
	}
	audit, _ := d.c.Audit(ctx)
	n := 0
	for _, e := range audit {
		if strings.HasPrefix(e.Action, "approval.") && e.Outcome == "ok" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("audit of approvals: %+v", audit)
	}
}

func TestThreeAgentsAtOnce(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	names := []string{"alpha", "beta", "gamma"}
	for _, n := range names {
		d.agent(ctx, n, "")
	}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := d.send(ctx, n, "Please use a tool to say hi", "")
			evs := d.turnOf(ctx, n, acc.Seq, acc.Input)
			for _, e := range evs {
				if e.Agent != n {
					t.Errorf("%s's stream has an event of %s", n, e.Agent)
				}
			}
			if last(evs).Kind != "final" {
				t.Errorf("%s: %v", n, kinds(evs))
			}
		}()
	}
	wg.Wait()
}

func TestAuthAndBadInput(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 2*time.Minute)
	if code, body := get(t, d.addr+"/healthz", ""); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	for _, p := range []string{"/openapi.json", "/v1/agents", "/v1/providers", "/v1/approvals", "/v1/audit", "/v1/agents/host/events", "/v1/agents/host/events/stream"} {
		if code, body := get(t, d.addr+p, ""); code != 401 || !strings.Contains(body, `"unauthorized"`) {
			t.Fatalf("%s without a token: %d %s", p, code, body)
		}
		if code, _ := get(t, d.addr+p, "wrong"); code != 401 {
			t.Fatalf("%s with a wrong token: %d", p, code)
		}
	}
	if code, body := get(t, d.addr+"/openapi.json", d.c.Token); code != 200 || !strings.Contains(body, `"openapi": "3.1.0"`) {
		t.Fatalf("openapi: %d", code)
	}
	if fi, _ := os.Stat(filepath.Join(d.home, "token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token mode %v", fi.Mode())
	}

	// A provider key is stored 0600 and never shown or logged.
	const key = "sk-e2e-very-secret-key-0123456789"
	p, err := d.c.CreateProvider(ctx, client.Provider{ID: "acme", BaseURL: "https://llm.example.com/v1", APIKey: key, Models: []client.Model{{ID: "big"}, {ID: "small"}}})
	if err != nil || !p.HasKey || p.APIKey != "" {
		t.Fatalf("create provider: %+v %v", p, err)
	}
	// Every field the API documents for a new agent is taken.
	w, err := d.c.CreateAgent(ctx, client.Agent{Name: "worker", Model: "acme/big", MayRead: []string{"host"},
		Egress: &egress.Policy{Mode: egress.Hosts, Hosts: []string{"example.com"}}})
	if err != nil || !slices.Equal(w.MayRead, []string{"host"}) || w.Egress == nil || w.Egress.String() != "hosts: example.com" {
		t.Fatalf("create agent: %+v %v", w, err)
	}

	snapshot := func() string {
		var b strings.Builder
		for _, path := range []string{"/v1/agents", "/v1/providers", "/v1/approvals"} {
			_, body := get(t, d.addr+path, d.c.Token)
			b.WriteString(body)
		}
		for _, a := range []string{"host", "worker"} {
			evs, _ := d.c.Events(ctx, a, 0, 10000)
			fmt.Fprint(&b, len(evs))
		}
		return b.String()
	}
	before := snapshot()
	big := `{"text":"` + strings.Repeat("x", 2<<20) + `"}`
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/agents/host/messages", `{"text":`, 400},
		{"POST", "/v1/agents/host/messages", `{"text":"hi"} {"text":"again"}`, 400},
		{"POST", "/v1/agents/host/messages", `{"text":"hi","colour":"red"}`, 400},
		{"POST", "/v1/agents/host/messages", `{"text":5}`, 400},
		{"POST", "/v1/agents/host/messages", big, 413},
		{"POST", "/v1/agents/host/messages", `{"text":""}`, 422},
		{"POST", "/v1/agents/host/messages", `{"text":"hi","mode":"shout"}`, 422},
		{"POST", "/v1/agents/nobody/messages", `{"text":"hi"}`, 404},
		{"POST", "/v1/agents/worker/messages", `{"text":"hi","model":"acme/small"}`, 422},
		{"POST", "/v1/agents/worker/messages", `{"text":"hi","model":"other/big"}`, 422},
		{"POST", "/v1/agents", `{"name":"x","model":"ghost/big"}`, 422},
		{"POST", "/v1/agents", `{"name":"x","model":"acme/huge"}`, 422},
		{"POST", "/v1/agents", `{"name":"Bad Name","model":"acme/big"}`, 422},
		{"POST", "/v1/agents", `{"name":"worker","model":"acme/big"}`, 409},
		{"POST", "/v1/agents", `{"name":"x","model":"acme/big","permission":{"bash":"maybe"}}`, 422},
		{"PATCH", "/v1/agents/worker", `{"model":"acme/nope"}`, 422},
		{"PATCH", "/v1/agents/nobody", `{"prompt":"x"}`, 404},
		{"DELETE", "/v1/agents/host", ``, 422},
		{"DELETE", "/v1/agents/nobody", ``, 404},
		{"POST", "/v1/providers", `{"id":"acme","base_url":"https://x.example/v1","models":["m"]}`, 409},
		{"POST", "/v1/providers", `{"id":"p2","base_url":"ftp://x","models":["m"]}`, 422},
		{"POST", "/v1/providers", `{"id":"p2","base_url":"https://u:p@x.example/v1","models":["m"]}`, 422},
		{"POST", "/v1/providers", `{"id":"p2","base_url":"https://x.example/v1","models":[]}`, 422},
		{"DELETE", "/v1/providers/acme", ``, 409},
		{"DELETE", "/v1/providers/ghost", ``, 404},
		{"POST", "/v1/approvals/per_x", `{"decision":"maybe"}`, 422},
		{"POST", "/v1/agents/host/abort", ``, 409},
		{"GET", "/v1/agents/host/events?after=-1", ``, 400},
		{"GET", "/v1/agents/host/events?kinds=nonsense", ``, 400},
		{"GET", "/v1/agents/host/events?limit=0", ``, 400},
		{"GET", "/v1/agents/nobody/events", ``, 404},
		{"GET", "/v1/approvals?state=weird", ``, 400},
		{"PUT", "/v1/agents", `{}`, 405},
		{"GET", "/v1/nothing", ``, 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(ctx, c.method, d.addr+c.path, bytes.NewReader([]byte(c.body)))
		req.Header.Set("Authorization", "Bearer "+d.c.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s %s %.60s: %d %+v, want %d with an error body", c.method, c.path, c.body, resp.StatusCode, e, c.want)
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("bad input changed the state:\nbefore %s\nafter  %s", before, after)
	}

	// Idempotent on the client's id.
	a1, _ := d.c.Send(ctx, "worker", client.Message{Text: "once only", ID: "client-1"})
	a2, err := d.c.Send(ctx, "worker", client.Message{Text: "once only", ID: "client-1"})
	if err != nil || a2.Input != a1.Input || !a2.Duplicate {
		t.Fatalf("same id twice: %+v %+v %v", a1, a2, err)
	}
	if _, err := d.c.Send(ctx, "worker", client.Message{Text: "different", ID: "client-1"}); client.StatusOf(err) != 409 {
		t.Fatalf("same id, other text: %v", err)
	}

	for _, path := range []string{"/v1/providers", "/v1/audit", "/v1/agents"} {
		if _, body := get(t, d.addr+path, d.c.Token); strings.Contains(body, key) {
			t.Fatalf("%s shows the key", path)
		}
	}
	if strings.Contains(d.log.String(), key) {
		t.Fatal("the daemon logged the key")
	}
	kf := filepath.Join(d.home, "keys", "acme.key")
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	db, _ := os.ReadFile(filepath.Join(d.home, "taosagent.db"))
	if bytes.Contains(db, []byte(key)) {
		t.Fatal("the database holds the key")
	}
}

func waitFor(t *testing.T, ctx interface{ Err() error }, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatal("timed out waiting")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
