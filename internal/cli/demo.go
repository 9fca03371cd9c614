package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/daemon"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/sandbox"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// runDemo runs one turn of a demo agent, on the real opencode, against the
// scripted model (a test stand-in, not an AI), and prints the normalized
// events as they come. It exits non-zero if the turn ends in an error.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("demo", stderr)
	home := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	asJSON := fs.Bool("json", false, "print the events as JSON lines")
	unconfined := fs.Bool("unconfined", false, "run opencode and its tools on the host, outside the sandbox (not recommended)")
	if err := parse(fs, args); err != nil {
		return err
	}
	text := strings.Join(fs.Args(), " ")
	if text == "" {
		text = "Please use a tool to say hi"
	}
	bin, version, err := opencodeBinary(ctx, *home)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "model: scripted demo (a test stand-in, not an AI); starting opencode "+version+" …")
	p := &printer{w: stdout, json: *asJSON}
	return scriptedTurn(ctx, bin, version, *home, "demo", *unconfined, text, stderr, p.print)
}

// scriptedTurn runs one turn of a throw-away agent (its directory under
// home/agents/.NAME) on opencode binary of version, against the scripted
// model, confined unless unconfined, and shows each event to show; it
// returns an error when the turn does not end in final.
func scriptedTurn(ctx context.Context, bin, version, home, name string, unconfined bool, text string, stderr io.Writer, show func(event.Event)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	model := &http.Server{Handler: &scriptedmodel.Server{}}
	go model.Serve(ln)
	defer model.Close()

	// A record of its own: it never takes the home's lock, so it must
	// never sweep what a running daemon started.
	sup, err := supervisor.New(bin, filepath.Join(home, "run", name))
	if err != nil {
		return err
	}
	sup.Version = version
	if unconfined {
		fmt.Fprintln(stderr, "warning: opencode and its tools run UNCONFINED, on the host as "+daemon.UserName())
	} else {
		sup.Sandbox = sandbox.New()
	}
	if killed, err := sup.Sweep(); err == nil && len(killed) > 0 {
		fmt.Fprintf(stderr, "stopped %d processes left by an earlier run\n", len(killed))
	}
	defer sup.Close()
	cfg := opencode.Config{
		Provider: opencode.Provider{ID: "demo", Name: "Scripted demo (test stand-in, not an AI)",
			BaseURL: "http://" + ln.Addr().String() + "/v1", APIKey: "demo-key-not-secret",
			Models: []opencode.Model{{ID: scriptedmodel.Models[0].ID, Name: scriptedmodel.Models[0].Name, ToolCall: true, Reasoning: true},
				{ID: scriptedmodel.Models[1].ID, Name: scriptedmodel.Models[1].Name}}},
		Model: scriptedmodel.Models[0].ID, SmallModel: scriptedmodel.Models[1].ID,
		Agent: opencode.Agent{Name: "demo", Description: "taosagent demo agent"},
	}
	events := make(chan event.Event, 256)
	d := runner.NewDriver(runner.Supervised(sup), supervisor.Spec{Name: name, Dir: filepath.Join(home, "agents", "."+name), RunDir: filepath.Join(home, "instances", "."+name), Config: cfg},
		func(e event.Event) { events <- e }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	tctx, tcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer tcancel()
	session, err := d.CreateSession(tctx, "taosagent "+name)
	if err != nil {
		return err
	}
	if err := d.Prompt(tctx, session, opencode.Prompt{Text: text}); err != nil {
		return err
	}
	for {
		select {
		case e := <-events:
			if e.Session != session && e.Kind != event.Instance {
				continue
			}
			show(e)
			switch e.Kind {
			case event.Final:
				return nil
			case event.Error:
				var d event.ErrorData
				json.Unmarshal(e.Data, &d)
				return fmt.Errorf("turn failed (%s): %s", d.Code, d.Message)
			}
		case err := <-runErr:
			return fmt.Errorf("agent stopped: %w", err)
		case <-tctx.Done():
			return fmt.Errorf("turn did not finish: %w", tctx.Err())
		}
	}
}

// printer shows events to a person: reasoning set apart from the answer,
// tool calls as they happen.
type printer struct {
	w    io.Writer
	json bool
	last event.Kind
}

func (p *printer) print(e event.Event) {
	if p.json {
		b, _ := json.Marshal(e)
		fmt.Fprintln(p.w, string(b))
		return
	}
	if p.last != e.Kind && (p.last == event.Delta || p.last == event.Reasoning) {
		fmt.Fprintln(p.w)
	}
	switch e.Kind {
	case event.Reasoning, event.Delta:
		var d event.DeltaData
		json.Unmarshal(e.Data, &d)
		if p.last != e.Kind {
			if e.Kind == event.Reasoning {
				fmt.Fprint(p.w, "thinking: ")
			} else {
				fmt.Fprint(p.w, "answer: ")
			}
		}
		fmt.Fprint(p.w, d.Text)
	case event.ToolCall:
		var d event.ToolCallData
		json.Unmarshal(e.Data, &d)
		fmt.Fprintf(p.w, "tool %s %s\n", d.Tool, d.Input)
	case event.ToolResult:
		var d event.ToolResultData
		json.Unmarshal(e.Data, &d)
		if d.Error != "" {
			fmt.Fprintf(p.w, "  failed after %d ms: %s\n", d.DurationMS, d.Error)
		} else {
			fmt.Fprintf(p.w, "  done in %d ms: %q\n", d.DurationMS, d.Output)
		}
	case event.Final:
		var d event.FinalData
		json.Unmarshal(e.Data, &d)
		fmt.Fprintf(p.w, "final (%d tokens in, %d out)\n", d.Usage.Input, d.Usage.Output)
	case event.Error:
		var d event.ErrorData
		json.Unmarshal(e.Data, &d)
		fmt.Fprintf(p.w, "error %s: %s\n", d.Code, d.Message)
	case event.Status, event.Usage:
	default:
		fmt.Fprintf(p.w, "%s %s\n", e.Kind, e.Data)
	}
	p.last = e.Kind
}
