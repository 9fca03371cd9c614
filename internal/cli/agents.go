package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/randid"
)

// clientFlags adds the flags that find the daemon and its token.
func clientFlags(fs *flag.FlagSet) func() (*client.Client, error) {
	dir := fs.String("home", defaultHome(), "taosagent home directory, for the token file (env TAOSAGENT_HOME)")
	addr := fs.String("addr", "", "daemon address (env TAOSAGENT_ADDR; default: the address the running daemon recorded in the home, else TAOSAGENT_LISTEN or 127.0.0.1:7077)")
	return func() (*client.Client, error) {
		h := home.Home{Dir: *dir}
		a := *addr
		if a == "" {
			a = os.Getenv("TAOSAGENT_ADDR")
		}
		if a == "" && os.Getenv("TAOSAGENT_LISTEN") == "" {
			if d, ok := h.Recorded(); ok && h.Running() {
				a = d.Addr
			}
		}
		if a == "" {
			a = defaultListen()
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		token := os.Getenv("TAOSAGENT_TOKEN")
		if token == "" {
			t, err := h.Token()
			if err != nil {
				return nil, fmt.Errorf("no API token: %v (is the daemon started with this --home?)", err)
			}
			token = t
		}
		return &client.Client{Base: a, Token: token}, nil
	}
}

// list runs a listing command: it fetches from the daemon, then prints JSON
// (--json) or a table of header and one row per item.
func list[T any](ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	fetch func(*client.Client, context.Context) ([]T, error), header string, row func(T) string) error {
	fs := flags(name, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	items, err := fetch(c, ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(items)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}

func runAgents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return list(ctx, "agents", args, stdout, stderr, (*client.Client).Agents, "NAME\tMODEL\tSTATE\tQUEUED\tSANDBOX\tPERMITTED",
		func(a client.Agent) string {
			st := client.AgentStatus{State: "?"}
			if a.Status != nil {
				st = *a.Status
			}
			box := "confined"
			if !st.Confined {
				box = "UNCONFINED"
			}
			row := fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", a.Name, a.Model, st.State, st.Queued, box, strings.Join(a.Models, ","))
			return row + agentDetails(a)
		})
}

// agentDetails are the lines under an agent's row that say what it can
// reach: its workspaces, its egress and its Library items.
func agentDetails(a client.Agent) string {
	var b strings.Builder
	for _, w := range a.Workspaces {
		note := w.Mode
		if w.Name == a.Workdir {
			note += ", workdir"
		}
		fmt.Fprintf(&b, "\n  %s = %s (%s)", w.Dst(), w.Path, note)
	}
	if a.Egress != nil {
		fmt.Fprintf(&b, "\n  egress: %s", a.Egress)
	}
	if len(a.Library) > 0 {
		fmt.Fprintf(&b, "\n  library: %s", strings.Join(a.Library, " "))
	}
	return b.String()
}

func runProviders(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return list(ctx, "providers", args, stdout, stderr, (*client.Client).Providers, "ID\tBASE URL\tKEY\tMODELS\tNOTE",
		func(p client.Provider) string {
			var ids []string
			for _, m := range p.Models {
				ids = append(ids, m.ID)
			}
			key, note := "no", ""
			if p.HasKey {
				key = "set"
			}
			if p.Demo {
				note = "DEMO: scripted test stand-in, not an AI"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", p.ID, p.BaseURL, key, strings.Join(ids, ","), note)
		})
}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("events", stderr)
	mk := clientFlags(fs)
	follow := fs.Bool("follow", false, "keep following new events")
	after := fs.Int64("after", 0, "only events after this seq")
	asJSON := fs.Bool("json", false, "print each event as a JSON line")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one AGENT", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	show := func(e client.Event) {
		if *asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintln(stdout, string(b))
			return
		}
		syn := ""
		if e.Synthetic {
			syn = " (synthetic)"
		}
		fmt.Fprintf(stdout, "%d\t%s\t%s\t%s%s\n", e.Seq, e.Time.Local().Format("15:04:05.000"), e.Kind, e.Data, syn)
	}
	if *follow {
		return c.Stream(ctx, name, *after, func(e client.Event) bool { show(e); return true })
	}
	cur := *after
	for {
		evs, err := c.Events(ctx, name, cur, 10000)
		if err != nil {
			return err
		}
		for _, e := range evs {
			show(e)
			cur = e.Seq
		}
		if len(evs) < 10000 {
			return nil
		}
	}
}

func runApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("approve", stderr)
	mk := clientFlags(fs)
	message := fs.String("message", "", "with reject: tell the agent why")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want ID once|always|reject", errUsage)
	}
	if err := api.CheckDecision(fs.Arg(1), ""); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	ap, err := c.Approve(ctx, fs.Arg(0), fs.Arg(1), *message)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", ap.ID, ap.State)
	return nil
}

// runChat sends a message and prints its turn as it happens: reasoning set
// apart from the answer, tool calls as they start. It exits 1 when the turn
// ends in an error.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("chat", stderr)
	mk := clientFlags(fs)
	mode := fs.String("mode", api.ModeQueue, "queue (wait for the agent to be idle) or steer (join its running turn)")
	model := fs.String("model", "", "provider/model for this turn (must be permitted for the agent)")
	asJSON := fs.Bool("json", false, "print the events as JSON lines")
	conversation := fs.String("conversation", "", "one of the agent's conversations for this turn (taosagent conversations AGENT); default its current one")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return fmt.Errorf("%w: want AGENT TEXT…", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	name, text := fs.Arg(0), strings.Join(fs.Args()[1:], " ")
	acc, err := c.Send(ctx, name, client.Message{Text: text, Mode: *mode, Model: *model, ID: randid.ID("cli"), Conversation: *conversation})
	if err != nil {
		return err
	}
	p := &printer{w: stdout, json: *asJSON}
	in := bufio.NewReader(os.Stdin)
	interactive := isTerminal(os.Stdin)
	myTurn := ""
	var result error
	err = c.Stream(ctx, name, acc.Seq, func(e client.Event) bool {
		input := e.Field("input")
		if myTurn == "" && (e.Kind == event.TurnStarted || e.Kind == event.InputSteered) && input == fmt.Sprint(acc.Input) {
			myTurn = e.Turn
			if e.Kind == event.InputSteered {
				fmt.Fprintln(stderr, "(sent into the running turn)")
			}
		}
		if myTurn == "" || e.Turn != myTurn {
			return true
		}
		p.print(e.Event)
		switch e.Kind {
		case event.PermissionAsked:
			id := e.Field("approval")
			// taosagent's own destructive calls are approved one at a
			// time, with their exact arguments shown.
			own := e.Field("source") == "taosagent"
			what := e.Field("patterns")
			if own {
				what = e.Field("args")
			}
			if !interactive {
				choices := "once|always|reject"
				if own {
					choices = "once|reject"
				}
				fmt.Fprintf(stderr, "approval pending: taosagent approve %s %s\n", id, choices)
				return true
			}
			ask(ctx, c, in, stderr, id, e.Field("tool"), what, !own)
		case event.QuestionAsked:
			id := e.Field("question")
			var d struct {
				Questions []api.QuestionInfo `json:"questions"`
			}
			json.Unmarshal(e.Data, &d)
			if !interactive {
				fmt.Fprintln(stderr, "the agent asks:")
				showQuestions(stderr, d.Questions)
				fmt.Fprintf(stderr, "question pending: taosagent answer %s ANSWER… (one per question), or --reject\n", id)
				return true
			}
			askQuestion(ctx, c, in, stderr, id, d.Questions)
		case event.Final:
			return false
		case event.Error:
			result = exitStatus(1)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	return result
}

// ask prompts a person at a terminal to answer an approval.
func ask(ctx context.Context, c *client.Client, in *bufio.Reader, w io.Writer, id, tool, what string, always bool) {
	once, rej := string(api.Once), string(api.Reject)
	choices := map[string]string{"o": once, once: once, "r": rej, rej: rej}
	prompt := "[o]nce, [r]eject"
	if always {
		all := string(api.Always)
		choices["a"], choices[all], prompt = all, all, "[o]nce, [a]lways, [r]eject"
	}
	for {
		fmt.Fprintf(w, "allow %s %s? %s: ", tool, what, prompt)
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		decision := choices[strings.TrimSpace(line)]
		if decision == "" {
			continue
		}
		msg := ""
		if decision == rej {
			fmt.Fprint(w, "tell the agent why (optional): ")
			l, _ := in.ReadString('\n')
			msg = strings.TrimSpace(l)
		}
		if _, err := c.Approve(ctx, id, decision, msg); err != nil {
			fmt.Fprintln(w, "could not answer:", err)
		}
		return
	}
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
