package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/discover"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/hostctl"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/textdiff"
)

// runDiscover finds a taOS install on the box and proposes the managed-
// host declaration (and LiteLLM as a model provider), written only with a
// person's yes.
func runDiscover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("discover", stderr)
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	yes := fs.Bool("yes", false, "write the proposal without asking (for scripts; questions are left out)")
	sock := fs.String("container-socket", "", "a container runtime's API socket to look through (default: Podman's, then Docker's)")
	root := fs.String("root", "", "read the box's files under this directory (a copy of a box)")
	layout := fs.String("layout", "", "read the install's layout from this file (default: taOS's, built in; docs/examples/taos-layout.json)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	o := discoverOptions{root: *root, socket: *sock, yes: *yes, interactive: isTerminal(os.Stdin) && !*yes, in: bufio.NewReader(os.Stdin)}
	if *layout != "" {
		b, err := os.ReadFile(*layout)
		if err != nil {
			return err
		}
		if o.layout, err = discover.ParseLayout(b); err != nil {
			return err
		}
	}
	return discoverHost(ctx, home.Home{Dir: *dir}, o, stdout)
}

type discoverOptions struct {
	root        string
	layout      discover.Layout
	socket      string
	yes         bool
	interactive bool
	in          *bufio.Reader
}

// discoverHost runs a discovery on h and writes what the person accepts;
// without a terminal and without yes it writes nothing.
func discoverHost(ctx context.Context, h home.Home, o discoverOptions, out io.Writer) error {
	current, err := hostctl.Load(h.HostFile())
	if err != nil {
		return fmt.Errorf("%v: repair it first (taosagent fix restore-host-file)", err)
	}
	f := &discover.Finder{Root: o.root, Layout: o.layout}
	if o.socket != "" {
		f.Sockets = []string{o.socket}
	}
	if o.interactive {
		f.Ask = func(q string) string {
			fmt.Fprint(out, q+" ")
			line, _ := o.in.ReadString('\n')
			return line
		}
	}
	p, err := f.Find(ctx, current)
	if err != nil {
		return err
	}
	for _, u := range p.Unsure {
		fmt.Fprintln(out, "not sure:", u)
	}
	c := providerChange(h, p.Provider, out)
	if len(p.Found) == 0 && c == nil {
		fmt.Fprintln(out, "Nothing new: "+h.HostFile()+" declares what discover finds.")
		return nil
	}
	if len(p.Found) > 0 {
		fmt.Fprintln(out, "Found:")
		for _, l := range p.Found {
			fmt.Fprintln(out, "  -", l)
		}
	}
	was, now := canonical(current), canonical(p.Host)
	if was != now {
		fmt.Fprintf(out, "\nThe proposed %s:\n%s\n", h.HostFile(), textdiff.Lines(was, now))
		if _, err := hostctl.Parse([]byte(now)); err != nil {
			return fmt.Errorf("the proposal is not a valid declaration (%v): nothing was written", err)
		}
	}
	switch {
	case o.yes:
	case o.interactive:
		if !confirm(o.in, out, "Write it?", nil) {
			fmt.Fprintln(out, "Nothing was written.")
			return nil
		}
	default:
		fmt.Fprintln(out, "Nothing was written (no terminal to ask): run `taosagent discover --yes` to write it.")
		return nil
	}
	if was != now {
		sn, err := snapshot.Store{Dir: h.Snapshots()}.Write(h.HostFile(), []byte(now), "before discover")
		outcome, detail := api.OutcomeOK, ""
		if err != nil {
			outcome, detail = api.OutcomeFailed, err.Error()
		}
		doctor.AppendAudit(h, eventlog.AuditEntry{Actor: fmt.Sprintf("recovery (uid %d)", os.Getuid()), Action: "discover", Tier: "write",
			Target: h.HostFile(), Phase: "outcome", Outcome: outcome, Detail: detail, Snapshot: sn.ID})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Wrote %s (the previous one is snapshot %s).\n", h.HostFile(), sn.ID)
	}
	if c != nil {
		if err := c(ctx); err != nil {
			return fmt.Errorf("the provider: %w", err)
		}
	}
	return nil
}

// canonical is the declaration as discover writes it (taosagent itself is
// implied).
func canonical(c hostctl.Config) string {
	c.Services = slices.DeleteFunc(slices.Clone(c.Services), func(s hostctl.Service) bool {
		return s.Name == hostctl.Self.Name && s.Unit == hostctl.Self.Unit && s.HealthURL == "" && len(s.Configs) == 0 && len(s.Logs) == 0 && len(s.Ports) == 0
	})
	if c.Services == nil {
		c.Services = []hostctl.Service{}
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b) + "\n"
}

// providerChange says what discover would do about LiteLLM as a model
// provider, and returns the change (nil: none). A provider is kept by the
// daemon: without one running, discover says so and leaves it.
func providerChange(h home.Home, pr *discover.Provider, out io.Writer) func(context.Context) error {
	if pr == nil {
		return nil
	}
	if !h.Running() {
		fmt.Fprintf(out, "LiteLLM serves models at %s: start the daemon and run discover again to add it as a provider.\n", pr.BaseURL)
		return nil
	}
	cl, err := clientFor(h)
	if err != nil {
		fmt.Fprintln(out, "not sure: the daemon's providers:", err)
		return nil
	}
	ps, err := cl.Providers(context.Background())
	if err != nil {
		fmt.Fprintln(out, "not sure: the daemon's providers:", err)
		return nil
	}
	if slices.ContainsFunc(ps, func(p client.Provider) bool { return strings.TrimSuffix(p.BaseURL, "/") == pr.BaseURL }) {
		return nil
	}
	if pr.Problem != "" {
		fmt.Fprintf(out, "not sure: LiteLLM at %s: %s; not proposed as a provider\n", pr.BaseURL, pr.Problem)
		return nil
	}
	key := "no key"
	if pr.KeyFrom != "" {
		key = "its key from " + pr.KeyFrom
	}
	fmt.Fprintf(out, "Found the model provider litellm: %s, %s, models: %s\n", pr.BaseURL, key, strings.Join(pr.Models, ", "))
	return func(ctx context.Context) error {
		p := client.Provider{ID: pr.ID, Name: "LiteLLM on this box", Kind: "litellm", BaseURL: pr.BaseURL, APIKey: pr.Key}
		for _, m := range pr.Models {
			p.Models = append(p.Models, client.Model{ID: m})
		}
		if _, err := cl.CreateProvider(ctx, p); err != nil {
			var he *client.Error
			if errors.As(err, &he) && he.Status == 409 {
				return fmt.Errorf("a provider called litellm exists with another URL: %w", err)
			}
			return err
		}
		fmt.Fprintln(out, "Added the provider litellm: agents can use litellm/MODEL.")
		return nil
	}
}
