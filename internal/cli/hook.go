package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// checkVerb checks that verb is one of cmd's (usage names each one's
// arguments: "AGENT ID") and that it was given n of them.
func checkVerb(cmd, verb string, n int, usage map[string]string) error {
	want, ok := usage[verb]
	if !ok {
		verbs := slices.Sorted(maps.Keys(usage))
		return fmt.Errorf("%w: %s %s, not %q", errUsage, cmd, strings.Join(verbs, "|"), verb)
	}
	if n != len(strings.Fields(want)) {
		return fmt.Errorf("%w: %s %s %s", errUsage, cmd, verb, want)
	}
	return nil
}

// runHook is `taosagent hook add|list|rm`.
func runHook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: hook add|list|rm", errUsage)
	}
	verb, args := args[0], args[1:]
	fs := flags("hook "+verb, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if err := checkVerb("hook", verb, fs.NArg(), map[string]string{"add": "AGENT TEMPLATE", "list": "AGENT", "rm": "AGENT HOOK"}); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	switch verb {
	case "add":
		h, err := c.CreateHook(ctx, name, fs.Arg(1))
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(h)
		}
		fmt.Fprintf(stdout, "%s: POST %s%s\nsecret (shown this once): %s\nsign: X-Taosagent-Signature: t=UNIX,v1=hex(HMAC-SHA256(secret, \"UNIX.\" + body))\n", h.ID, c.Base, h.URL, h.Secret)
	case "list":
		hs, err := c.Hooks(ctx, name)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(hs)
		}
		for _, h := range hs {
			fmt.Fprintf(stdout, "%s  %s  %q\n", h.ID, h.URL, h.Template)
		}
		if len(hs) == 0 {
			fmt.Fprintln(stdout, "no webhooks")
		}
	case "rm":
		if err := c.DeleteHook(ctx, name, fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(1))
	}
	return nil
}
