package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pyClient runs the Python client of docs/TAOS.md (standard library only)
// against d and returns its lines of reply dicts as they come.
func pyClient(t *testing.T, ctx context.Context, d *daemon, agent, trace, text string) (<-chan map[string]any, func() error) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "docs", "examples", "taos_reply.py")
	cmd := exec.CommandContext(ctx, py, script, d.addr, agent, trace, text)
	cmd.Env = append(os.Environ(), "TAOSAGENT_TOKEN="+d.c.Token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]any, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("not a JSON dict: %q", sc.Text())
				continue
			}
			lines <- m
		}
	}()
	return lines, func() error {
		<-done
		err := cmd.Wait()
		if err != nil {
			t.Logf("client stderr:\n%s", stderr.String())
		}
		return err
	}
}

// checkReply checks the shapes of taOS's reply dicts: every dict carries the
// trace id and the fields of its kind, and the last one, only, is terminal.
func checkReply(t *testing.T, dicts []map[string]any, trace string) {
	t.Helper()
	if len(dicts) == 0 {
		t.Fatal("no reply dicts")
	}
	for i, d := range dicts {
		kind, _ := d["kind"].(string)
		if d["trace_id"] != trace {
			t.Errorf("dict %d has trace_id %v", i, d["trace_id"])
		}
		var want []string
		switch kind {
		case "delta", "reasoning", "final":
			want = []string{"kind", "trace_id", "content"}
		case "tool_call":
			want = []string{"kind", "trace_id", "tool", "call_id", "input"}
		case "tool_result":
			want = []string{"kind", "trace_id", "tool", "call_id", "output"}
		case "error":
			want = []string{"kind", "trace_id", "error"}
		default:
			t.Fatalf("dict %d of kind %q", i, kind)
		}
		if len(d) != len(want) {
			t.Errorf("dict %d: keys %v, want exactly %v", i, d, want)
		}
		for _, k := range want {
			if _, ok := d[k]; !ok {
				t.Errorf("dict %d (%s) lacks %s: %v", i, kind, k, d)
			}
		}
		terminal := kind == "final" || kind == "error"
		if terminal != (i == len(dicts)-1) {
			t.Fatalf("dict %d of %d is %s: one terminal dict, last", i, len(dicts), kind)
		}
	}
}

// taOS's chat route rewired: the Python client of docs/TAOS.md drives a
// turn with a tool call and gets the reply dicts in order, with one
// terminal dict; every event of the turn in the log carries the trace id.
func TestTheTaosReplyStream(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	d.agent(ctx, "chat", `"allow"`)
	lines, wait := pyClient(t, ctx, d, "chat", "trace-0001", "please use a tool")
	var dicts []map[string]any
	for m := range lines {
		dicts = append(dicts, m)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	checkReply(t, dicts, "trace-0001")
	var kinds []string
	for _, m := range dicts {
		kinds = append(kinds, m["kind"].(string))
	}
	got := strings.Join(kinds, " ")
	if !strings.Contains(got, "tool_call tool_result") || !strings.HasSuffix(got, "final") {
		t.Fatalf("reply kinds: %s", got)
	}
	// In the log, every event of the turn carries the trace.
	evs, err := d.c.Events(ctx, "chat", 0, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	turn := ""
	for _, e := range evs {
		if e.Kind == "turn.started" {
			turn = e.Turn
		}
		if turn != "" && e.Turn == turn && e.TraceID != "trace-0001" {
			t.Errorf("event %d (%s) of the turn has trace_id %q", e.Seq, e.Kind, e.TraceID)
		}
	}
	// The same trace again: nothing new is submitted; the same reply comes.
	lines, wait = pyClient(t, ctx, d, "chat", "trace-0001", "please use a tool")
	n := 0
	for range lines {
		n++
	}
	wait()
	if n != len(dicts) {
		t.Errorf("the same trace again gave %d dicts, want the same %d", n, len(dicts))
	}
	if ins, _ := d.c.Events(ctx, "chat", 0, 1000, "input.accepted"); len(ins) != 1 {
		t.Errorf("%d inputs for one trace", len(ins))
	}
	// Bad input is refused plainly.
	if code, body := request(t, "POST", d.addr+"/v1/agents/chat/reply", d.c.Token, `{"text":"hi"}`); code != 422 || !strings.Contains(body, "trace_id") {
		t.Errorf("no trace id: %d %s", code, body)
	}
	if code, _ := get(t, d.addr+"/v1/agents/chat/reply?trace_id=nope", d.c.Token); code != 404 {
		t.Errorf("an unknown trace: %d", code)
	}
}

// The daemon restarts in the middle of a streaming reply: the client
// resumes by trace id and gets the rest, ending with one terminal dict,
// without a gap or a duplicate.
func TestTheTaosReplyStreamAcrossADaemonRestart(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	d := start(t, home)
	ctx := ctxT(t, 3*time.Minute)
	d.agent(ctx, "chat", "")
	lines, wait := pyClient(t, ctx, d, "chat", "trace-restart", "please be slow")
	var dicts []map[string]any
	for m := range lines {
		dicts = append(dicts, m)
		if len(dicts) == 3 {
			d.stop() // mid-stream
			d = start(t, home, "--listen", strings.TrimPrefix(d.addr, "http://"))
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	checkReply(t, dicts, "trace-restart")
	// What the client got is the reply as recorded: no gap, no duplicate.
	resp := requestStream(t, d.addr+"/v1/agents/chat/reply?trace_id=trace-restart", d.c.Token)
	if len(resp) != len(dicts) {
		t.Fatalf("the client got %d dicts, the log has %d", len(dicts), len(resp))
	}
	for i := range resp {
		a, _ := json.Marshal(resp[i])
		b, _ := json.Marshal(dicts[i])
		if string(a) != string(b) {
			t.Fatalf("dict %d: client %s, log %s", i, b, a)
		}
	}
	t.Logf("across the restart: %d dicts, ending %v", len(dicts), dicts[len(dicts)-1])
}

// requestStream reads a whole NDJSON reply stream.
func requestStream(t *testing.T, url, token string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		json.Unmarshal(sc.Bytes(), &m)
		out = append(out, m)
	}
	return out
}
