package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/taosagent/taosagent/internal/api"
)

// runMove is `taosagent move AGENT DAEMON`: the agent moves to that
// daemon of its cluster, its files copied if the daemon is on other
// storage, and stays pinned there. It waits until the agent runs there,
// unless --no-wait.
func runMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("move", stderr)
	mk := clientFlags(fs)
	noWait := fs.Bool("no-wait", false, "ask the move and return")
	wait := fs.Duration("timeout", 5*time.Minute, "how long to wait for the agent to run on the daemon (a running turn ends first)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: move AGENT DAEMON (a daemon's id: taosagent cluster lists them)", errUsage)
	}
	agent, target := fs.Arg(0), fs.Arg(1)
	c, err := mk()
	if err != nil {
		return err
	}
	var m api.Move
	if err := c.Do(ctx, "POST", "/v1/agents/"+url.PathEscape(agent)+"/move", api.MoveRequest{Daemon: target}, &m); err != nil {
		return err
	}
	how := "between its turns; its directory is shared"
	if m.Copy {
		how = "between its turns; its files are copied"
	}
	fmt.Fprintf(stdout, "moving %s to %s (%s)\n", agent, target, how)
	if *noWait {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	for {
		var st api.Cluster
		if err := c.Do(ctx, "GET", "/v1/cluster", nil, &st); err != nil {
			return err
		}
		for _, a := range st.Agents {
			if a.Agent != agent {
				continue
			}
			switch {
			case a.Move != nil && a.Move.State == "failed":
				return fmt.Errorf("the move of %s failed: %s", agent, a.Move.Error)
			case a.Move == nil && a.Owner == target:
				fmt.Fprintf(stdout, "%s runs on %s\n", agent, target)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not run on %s yet (taosagent cluster shows where it is): %w", agent, target, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
