package library

import (
	"fmt"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/textdiff"
)

// Diff is what a person reads before accepting version b of an item over
// a: each file added, removed or changed, a changed file line by line
// ("-" a's, "+" b's, " " both), whole: nothing of it is left out.
func Diff(a, b Item) string {
	var out strings.Builder
	fmt.Fprintf(&out, "%s: %.12s → %.12s\n", a.Ref(), a.Digest, b.Digest)
	paths := slices.Clone(a.Paths)
	for _, p := range b.Paths {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		old, inA := a.Files[p]
		cur, inB := b.Files[p]
		switch {
		case !inA:
			fmt.Fprintf(&out, "added %s\n", p)
			textdiff.Mark(&out, "+", string(cur))
		case !inB:
			fmt.Fprintf(&out, "removed %s\n", p)
			textdiff.Mark(&out, "-", string(old))
		case string(old) != string(cur):
			fmt.Fprintf(&out, "changed %s\n", p)
			out.WriteString(textdiff.Lines(string(old), string(cur)))
		}
	}
	return out.String()
}
