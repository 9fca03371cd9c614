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

// runCluster is `taosagent cluster [status] | drain [--off] [DAEMON] |
// pin AGENT PIN`: the daemons sharing a database, and where agents run.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verb := "status"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	fs := flags("cluster "+verb, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	off := fs.Bool("off", false, "drain: end the daemon's drain")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	n := fs.NArg()
	if verb == "drain" && n <= 1 {
		n = 0 // its daemon is optional
	}
	if err := checkVerb("cluster", verb, n, map[string]string{"status": "", "drain": "", "pin": "AGENT PIN"}); err != nil {
		return fmt.Errorf("%w (drain takes [DAEMON])", err)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var st api.Cluster
	switch verb {
	case "status":
		err = c.Do(ctx, "GET", "/v1/cluster", nil, &st)
	case "drain":
		err = c.Do(ctx, "POST", "/v1/cluster/drain", api.DrainRequest{Daemon: fs.Arg(0), Off: *off}, &st)
	case "pin":
		err = c.Do(ctx, "PUT", "/v1/agents/"+url.PathEscape(fs.Arg(0))+"/pin", api.PinRequest{Pin: fs.Arg(1)}, &st)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	for _, d := range st.Daemons {
		state := "live"
		switch {
		case !d.Live:
			state = "gone"
		case d.Draining:
			state = "draining"
		}
		me := ""
		if d.ID == st.Daemon {
			me = "  (this one)"
		}
		fmt.Fprintf(stdout, "daemon %s  %s  %d/%d agents  storage %s  %s%s\n", d.ID, state, d.Agents, d.Slots, d.Storage, strings.Join(d.Labels, ","), me)
	}
	for _, a := range st.Agents {
		owner := a.Owner
		if owner == "" {
			owner = "(no owner yet)"
		}
		pin := ""
		if a.Pin != "" {
			pin = "  pinned to " + a.Pin
		}
		move := ""
		if m := a.Move; m != nil {
			move = fmt.Sprintf("  moving to %s (%s)", m.To, m.State)
			if m.Error != "" {
				move += ": " + m.Error
			}
		}
		fmt.Fprintf(stdout, "agent %s  on %s%s%s\n", a.Agent, owner, pin, move)
	}
	return nil
}
