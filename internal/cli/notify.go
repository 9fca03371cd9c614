package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/taosagent/taosagent/internal/api"
)

// runTask is `taosagent task list|show|cancel`: the tasks agents handed
// each other.
func runTask(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: task list|show|cancel", errUsage)
	}
	verb, args := args[0], args[1:]
	fs := flags("task "+verb, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	agentName := fs.String("agent", "", "list: only the tasks this agent handed or was handed")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if err := checkVerb("task", verb, fs.NArg(), map[string]string{"list": "", "show": "TASK", "cancel": "TASK"}); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var ts []api.Task
	switch verb {
	case "list":
		if ts, err = c.Tasks(ctx, *agentName); err != nil {
			return err
		}
	case "show":
		t, err := c.Task(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		ts = []api.Task{t}
	case "cancel":
		var t api.Task
		if err := c.Do(ctx, "POST", "/v1/tasks/"+url.PathEscape(fs.Arg(0))+"/cancel", nil, &t); err != nil {
			return err
		}
		ts = []api.Task{t}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(ts)
	}
	for _, t := range ts {
		fmt.Fprintf(stdout, "%s  %s → %s  %s  %s\n", t.ID, t.From, t.To, t.State, t.Created.Local().Format("2006-01-02 15:04"))
		if verb == "show" && t.Result != "" {
			fmt.Fprintf(stdout, "result (%s's words, data):\n%s\n", t.To, t.Result)
		}
	}
	if len(ts) == 0 {
		fmt.Fprintln(stdout, "no tasks")
	}
	return nil
}

// runNotify is `taosagent notify add|list|rm`: where a person is told of
// what waits for them or went wrong.
func runNotify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: notify add|list|rm", errUsage)
	}
	verb, args := args[0], args[1:]
	fs := flags("notify "+verb, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	token := fs.String("token", "", "add ntfy: the topic's access token")
	agents := fs.String("agents", "", "add: only these agents' (comma-separated; default every agent's)")
	kinds := fs.String("kinds", "", "add: only these kinds (approval, question, error, budget; comma-separated; default all)")
	details := fs.Bool("details", false, "add: what was asked, or the error, leaves the box too")
	link := fs.String("link", "", "add: the panel's URL, for the notifications' links")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if err := checkVerb("notify", verb, fs.NArg(), map[string]string{"add": "KIND URL", "list": "", "rm": "CHANNEL"}); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	switch verb {
	case "add":
		var ch api.Channel
		req := api.ChannelRequest{Kind: fs.Arg(0), URL: fs.Arg(1), Token: *token, Agents: split(*agents), Kinds: split(*kinds), Details: *details, Link: *link}
		if err := c.Do(ctx, "POST", "/v1/notify/channels", req, &ch); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(ch)
		}
		fmt.Fprintf(stdout, "%s: %s %s\n", ch.ID, ch.Kind, ch.URL)
		if ch.Secret != "" {
			fmt.Fprintf(stdout, "signing key (shown this once): %s\nverify: X-Taosagent-Signature: t=UNIX,v1=hex(HMAC-SHA256(key, \"UNIX.\" + body)); drop repeats by Idempotency-Key\n", ch.Secret)
		}
	case "list":
		var out struct {
			Channels []api.Channel `json:"channels"`
		}
		if err := c.Do(ctx, "GET", "/v1/notify/channels", nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(out.Channels)
		}
		for _, ch := range out.Channels {
			state := fmt.Sprintf("%d waiting, %d failed", ch.Pending, ch.Failed)
			if ch.LastError != "" {
				state += ": " + ch.LastError
			}
			fmt.Fprintf(stdout, "%s  %s  %s  %s\n", ch.ID, ch.Kind, ch.URL, state)
		}
		if len(out.Channels) == 0 {
			fmt.Fprintln(stdout, "no channels")
		}
	case "rm":
		if err := c.Do(ctx, "DELETE", "/v1/notify/channels/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(0))
	}
	return nil
}
