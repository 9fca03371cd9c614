package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
)

// runMCP serves taosagent's MCP tools over stdio, for a local MCP client:
// each JSON-RPC message read from stdin is sent to the daemon's /mcp with
// the operator token (so only a user who can read the home's token can use
// it), and every message of the answer is written to stdout, one per line.
// Messages are handled concurrently: a call waiting for an approval does
// not hold up the others.
func runMCP(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flags("mcp", stderr)
	mk := clientFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	c, err := mk()
	if err != nil {
		return err
	}
	b := &mcpBridge{url: strings.TrimSuffix(c.Base, "/") + "/mcp", token: c.Token, out: stdout, errw: stderr,
		http: &http.Client{}}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		msg := append([]byte(nil), line...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.forward(ctx, msg)
		}()
	}
	wg.Wait()
	return sc.Err()
}

type mcpBridge struct {
	url, token string
	http       *http.Client
	out, errw  io.Writer
	mu         sync.Mutex // guards out and version
	version    string     // the protocol version agreed at initialize
}

func (b *mcpBridge) write(msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out.Write(append(bytes.TrimSpace(msg), '\n'))
}

// forward sends one message and relays what comes back. A failure to reach
// the daemon is answered as a JSON-RPC error to a request.
//
// It is long: one call's round trip through the daemon, its errors handled
// where they happen.
func (b *mcpBridge) forward(ctx context.Context, msg []byte) {
	var head struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	json.Unmarshal(msg, &head)
	fail := func(text string) {
		if len(head.ID) > 0 && head.Method != "" {
			e, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": head.ID, "error": map[string]any{"code": -32603, "message": text}})
			b.write(e)
		}
		fmt.Fprintln(b.errw, "taosagent mcp:", text)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(msg))
	if err != nil {
		fail(err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+b.token)
	b.mu.Lock()
	if b.version != "" {
		req.Header.Set("Mcp-Protocol-Version", b.version)
	}
	b.mu.Unlock()
	resp, err := b.http.Do(req)
	if err != nil {
		fail("the daemon cannot be reached (" + err.Error() + "); is it running? Try: taosagent doctor")
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		return
	}
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fail(fmt.Sprintf("the daemon answered %s: %s", resp.Status, strings.TrimSpace(string(body))))
		return
	}
	relay := func(m []byte) {
		if head.Method == "initialize" {
			var r struct {
				Result struct {
					ProtocolVersion string `json:"protocolVersion"`
				} `json:"result"`
			}
			if json.Unmarshal(m, &r) == nil && r.Result.ProtocolVersion != "" {
				b.mu.Lock()
				b.version = r.Result.ProtocolVersion
				b.mu.Unlock()
			}
		}
		b.write(m)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err == nil && len(bytes.TrimSpace(body)) > 0 {
			relay(body)
		}
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data bytes.Buffer
	for sc.Scan() {
		l := sc.Bytes()
		switch {
		case len(l) == 0:
			if data.Len() > 0 {
				relay(data.Bytes())
				data.Reset()
			}
		case bytes.HasPrefix(l, []byte("data:")):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.Write(bytes.TrimPrefix(bytes.TrimPrefix(l, []byte("data:")), []byte(" ")))
		}
	}
	if data.Len() > 0 {
		relay(data.Bytes())
	}
}

// runAudit prints the audit, filtered.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("audit", stderr)
	mk := clientFlags(fs)
	var q client.AuditQuery
	fs.StringVar(&q.Actor, "actor", "", "actors whose name begins with this (\"agent host\", \"operator\")")
	fs.StringVar(&q.Tool, "tool", "", "only this action (service_restart, agent.update, …)")
	fs.StringVar(&q.Outcome, "outcome", "", "pending, ok, refused or failed")
	since := fs.Duration("since", 0, "only entries this recent (e.g. 24h)")
	fs.IntVar(&q.Limit, "limit", 200, "at most this many")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if *since > 0 {
		q.Since = time.Now().Add(-*since)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	es, err := c.AuditSearch(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(es)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tAPPROVER\tSNAPSHOT\tDETAIL")
	for _, e := range es {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("01-02 15:04:05"), e.Actor, e.Action,
			e.Target, e.Outcome, dash(e.Approver), dash(e.Snapshot), e.Detail)
	}
	return tw.Flush()
}

// runApprovals lists approvals, pending ones by default.
func runApprovals(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("approvals", stderr)
	mk := clientFlags(fs)
	state := fs.String("state", api.ApprovalPending, "pending, once, always, reject, expired, or all")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if *state == "all" {
		*state = ""
	}
	c, err := mk()
	if err != nil {
		return err
	}
	as, err := c.Approvals(ctx, *state)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(as)
	}
	// Each call is shown whole, as the event records it (render.Call);
	// a terminal gets it through the pager. Like all the CLI prints, it
	// passes through render.Writer (Main).
	return paged(stdout, func(w io.Writer) error {
		for i, a := range as {
			var ask struct {
				Tool     string   `json:"tool"`
				Display  string   `json:"display"`
				Patterns []string `json:"patterns"`
				Client   string   `json:"client"`
			}
			json.Unmarshal(a.Ask, &ask)
			who := a.Agent
			if who == "" {
				who = ask.Client
			}
			shown := ask.Display
			if shown == "" {
				shown = ask.Tool + "\n" + strings.Join(ask.Patterns, "\n")
			}
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s  %s  %s  %s\n", a.ID, a.Source, dash(who), a.State)
			for _, line := range strings.Split(shown, "\n") {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
		return nil
	})
}

// runAbort stops an agent's running turn.
func runAbort(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, name, err := agentCommand("abort", args, stderr)
	if err != nil {
		return err
	}
	turn, err := c.Abort(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: turn %s aborted\n", name, turn)
	return nil
}

// agentCommand parses the command line of a command that takes the client
// flags and one AGENT, and returns the client and the agent.
func agentCommand(name string, args []string, stderr io.Writer) (*client.Client, string, error) {
	fs := flags(name, stderr)
	mk := clientFlags(fs)
	if err := parse(fs, interleave(fs, args)); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		return nil, "", fmt.Errorf("%w: want AGENT", errUsage)
	}
	c, err := mk()
	return c, fs.Arg(0), err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runKey issues an agent a new gateway key and prints it (once).
func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, name, err := agentCommand("key", args, stderr)
	if err != nil {
		return err
	}
	key, err := c.RotateKey(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "The agent's new key for the gateway ("+strings.TrimSuffix(c.Base, "/")+"/llm/v1); the old one no longer works. It is shown this once:")
	fmt.Fprintln(stdout, key)
	return nil
}

// runSyncModels syncs a LiteLLM agent's permitted models with what its key
// may access at the proxy, and prints what changed.
func runSyncModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, name, err := agentCommand("sync-models", args, stderr)
	if err != nil {
		return err
	}
	s, err := c.SyncModels(ctx, name)
	if err != nil {
		return err
	}
	if !s.Changed {
		fmt.Fprintf(stdout, "%s: unchanged; model %s; permitted %s\n", s.Agent, s.Model, strings.Join(s.Models, ","))
		return nil
	}
	fmt.Fprintf(stdout, "%s: model %s; permitted %s (added %s; removed %s)\n", s.Agent, s.Model, strings.Join(s.Models, ","),
		strings.Join(s.Added, ","), strings.Join(s.Removed, ","))
	return nil
}

// runUsage prints the gateway's usage per agent, model and day.
func runUsage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("usage", stderr)
	mk := clientFlags(fs)
	agentName := fs.String("agent", "", "only this agent")
	model := fs.String("model", "", "only this provider/model")
	since := fs.String("since", "", "from this day on (YYYY-MM-DD)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	rows, err := c.Usage(ctx, *agentName, *model, *since)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"usage": rows})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tAGENT\tMODEL\tREQUESTS\tIN\tOUT\tCOST")
	for _, u := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.4f\n", u.Day, u.Agent, u.Model, u.Requests, u.InputTokens, u.OutputTokens, u.Cost)
	}
	return tw.Flush()
}
