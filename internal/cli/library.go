package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/library"
)

// runLibrary is `taosagent library add|list|show|accept|rm|secret`: the Library
// of vetted items a person gives agents (docs/LIBRARY.md).
func runLibrary(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want library add DIR|ARCHIVE | list | show KIND/NAME | diff KIND/NAME | accept KIND/NAME DIGEST | rm KIND/NAME | secret mcp/NAME SECRET [--remove] (the value on standard input) | sync GIT-URL [--ref REF]", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flags("library "+sub, stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	remove := fs.Bool("remove", false, "secret: remove it")
	gitRef := fs.String("ref", "", "sync: the branch or tag (default: the repository's default branch)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	want := map[string]int{"add": 1, "list": 0, "show": 1, "diff": 1, "accept": 2, "rm": 1, "secret": 2, "sync": 1}
	n, ok := want[sub]
	if !ok || fs.NArg() != n {
		return fmt.Errorf("%w: want library add DIR|ARCHIVE | list | show KIND/NAME | diff KIND/NAME | accept KIND/NAME DIGEST | rm KIND/NAME | secret mcp/NAME SECRET [--remove] (the value on standard input) | sync GIT-URL [--ref REF]", errUsage)
	}
	ref := func(s string) (string, error) {
		kind, name, ok := strings.Cut(s, "/")
		if !ok || kind == "" || name == "" {
			return "", fmt.Errorf("%w: %q: want KIND/NAME, as `taosagent library list` shows", errUsage, s)
		}
		return "/v1/library/" + url.PathEscape(kind) + "/" + url.PathEscape(name), nil
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var out json.RawMessage
	switch sub {
	case "add":
		// A directory, or a tar archive of one (gzipped or not).
		read := library.Read
		if fi, err := os.Stat(fs.Arg(0)); err == nil && fi.Mode().IsRegular() {
			read = library.ReadArchive
		}
		files, err := read(fs.Arg(0))
		if err != nil {
			return err
		}
		text := map[string]string{}
		for p, b := range files {
			text[p] = string(b)
		}
		var added struct {
			Item             library.Item
			Created, Current bool
		}
		if err := c.Do(ctx, "POST", "/v1/library", map[string]any{"files": text}, &added); err != nil {
			return err
		}
		switch {
		case !added.Created:
			fmt.Fprintf(stdout, "%s@%.12s is in the Library already\n", added.Item.Ref(), added.Item.Digest)
		case added.Current:
			fmt.Fprintf(stdout, "%s@%.12s added\n", added.Item.Ref(), added.Item.Digest)
		default:
			fmt.Fprintf(stdout, "%s@%.12s waits for you: taosagent library show %s, then library accept %s %s\n",
				added.Item.Ref(), added.Item.Digest, added.Item.Ref(), added.Item.Ref(), added.Item.Digest)
		}
		return nil
	case "list":
		var l struct{ Items []library.Entry }
		if err := c.Do(ctx, "GET", "/v1/library", nil, &l); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(l.Items)
		}
		for _, e := range l.Items {
			wait := ""
			if len(e.Pending) > 0 {
				wait = fmt.Sprintf("  (%d version(s) waiting)", len(e.Pending))
			}
			cur := fmt.Sprintf("%.12s", e.Digest)
			if e.Digest == "" {
				cur = "(proposed)  " // no version current yet
			}
			fmt.Fprintf(stdout, "%-28s %s  %s%s\n", e.Ref(), cur, e.Description, wait)
		}
		if len(l.Items) == 0 {
			fmt.Fprintln(stdout, "the Library is empty")
		}
		return nil
	case "sync":
		var res library.SyncResult
		if err := c.Do(ctx, "POST", "/v1/library/sync", map[string]string{"url": fs.Arg(0), "ref": *gitRef}, &res); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(stdout, "%s at %.12s: %d new version(s) wait for you, %d unchanged, %d refused\n",
			res.Source.URL, res.Source.Commit, len(res.Offered), res.Unchanged, len(res.Refused))
		for _, o := range res.Offered {
			ref, digest, _ := strings.Cut(o, "@")
			fmt.Fprintf(stdout, "  waits: %s@%.12s (taosagent library diff %s, then library accept %s %s)\n", ref, digest, ref, ref, digest)
		}
		for _, r := range res.Refused {
			fmt.Fprintf(stdout, "  refused: %s: %s\n", r.Path, r.Error)
		}
		return nil
	case "show", "diff":
		p, err := ref(fs.Arg(0))
		if err != nil {
			return err
		}
		var it struct {
			library.Entry
			Content map[string]string
			Waiting []struct{ Digest, Diff string }
			Secrets map[string]bool
			Note    string
		}
		if err := c.Do(ctx, "GET", p, nil, &it); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(it)
		}
		if sub == "diff" {
			// What each waiting version changes against the current one,
			// and nothing else.
			if len(it.Waiting) == 0 {
				fmt.Fprintf(stdout, "%s: no version waits\n", it.Ref())
				return nil
			}
			return paged(stdout, func(w io.Writer) error {
				for _, v := range it.Waiting {
					fmt.Fprintf(w, "== %s@%s (accept: taosagent library accept %s %s)\n%s", it.Ref(), v.Digest, it.Ref(), v.Digest, v.Diff)
				}
				return nil
			})
		}
		return paged(stdout, func(w io.Writer) error {
			if it.Digest == "" {
				fmt.Fprintf(w, "%s: proposed, no version is current yet\n", it.Ref())
			} else {
				fmt.Fprintf(w, "%s@%s\n%s\n", it.Ref(), it.Digest, it.Description)
			}
			if it.Note != "" {
				fmt.Fprintf(w, "NOTE: %s\n", it.Note)
			}
			for _, n := range slices.Sorted(maps.Keys(it.Secrets)) {
				state := "set"
				if !it.Secrets[n] {
					state = fmt.Sprintf("NOT SET (taosagent library secret %s %s)", it.Ref(), n)
				}
				fmt.Fprintf(w, "secret %s: %s\n", n, state)
			}
			for _, f := range it.Paths {
				fmt.Fprintf(w, "\n== %s\n%s", f, it.Content[f])
			}
			for _, v := range it.Waiting {
				fmt.Fprintf(w, "\n== waiting: %s (accept: taosagent library accept %s %s)\n%s", v.Digest, it.Ref(), v.Digest, v.Diff)
			}
			return nil
		})
	case "accept":
		p, err := ref(fs.Arg(0))
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "POST", p+"/accept", map[string]string{"digest": fs.Arg(1)}, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is now %.12s\n", fs.Arg(0), fs.Arg(1))
		return nil
	case "secret":
		kind, name, _ := strings.Cut(fs.Arg(0), "/")
		if kind != "mcp" || name == "" {
			return fmt.Errorf("%w: %q: secrets are an mcp item's (mcp/NAME)", errUsage, fs.Arg(0))
		}
		p := "/v1/library/mcp/" + url.PathEscape(name) + "/secrets/" + url.PathEscape(fs.Arg(1))
		if *remove {
			if err := c.Do(ctx, "DELETE", p, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: secret %s removed\n", fs.Arg(0), fs.Arg(1))
			return nil
		}
		// From standard input, never the command line (which other
		// users see in ps).
		if isTerminal(os.Stdin) {
			fmt.Fprintf(stderr, "the value of %s (one line): ", fs.Arg(1))
		}
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("no value on standard input: %w", err)
		}
		if err := c.Do(ctx, "PUT", p, map[string]string{"value": strings.TrimRight(line, "\r\n")}, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: secret %s set; the agents given it start afresh at their next message\n", fs.Arg(0), fs.Arg(1))
		return nil
	default: // rm
		p, err := ref(fs.Arg(0))
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "DELETE", p, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s removed\n", fs.Arg(0))
		return nil
	}
}
