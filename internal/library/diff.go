package library

import (
	"fmt"
	"slices"
	"strings"
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
			lines(&out, "+", string(cur))
		case !inB:
			fmt.Fprintf(&out, "removed %s\n", p)
			lines(&out, "-", string(old))
		case string(old) != string(cur):
			fmt.Fprintf(&out, "changed %s\n", p)
			lineDiff(&out, strings.SplitAfter(string(old), "\n"), strings.SplitAfter(string(cur), "\n"))
		}
	}
	return out.String()
}

func lines(out *strings.Builder, mark, text string) {
	for _, l := range strings.SplitAfter(text, "\n") {
		if l != "" {
			writeLine(out, mark, l)
		}
	}
}

func writeLine(out *strings.Builder, mark, l string) {
	out.WriteString(mark)
	out.WriteString(l)
	if !strings.HasSuffix(l, "\n") {
		out.WriteString("\n\\ no newline at the end\n")
	}
}

// lineDiff writes a's and b's lines as their longest common subsequence
// orders them; files too long for that are shown whole, a's then b's.
func lineDiff(out *strings.Builder, a, b []string) {
	a, b = trimEmpty(a), trimEmpty(b)
	if len(a)*len(b) > 4_000_000 {
		lines(out, "-", strings.Join(a, ""))
		lines(out, "+", strings.Join(b, ""))
		return
	}
	// lcs[i][j]: the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			writeLine(out, " ", a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			writeLine(out, "+", b[j])
			j++
		default:
			writeLine(out, "-", a[i])
			i++
		}
	}
}

func trimEmpty(ls []string) []string {
	if n := len(ls); n > 0 && ls[n-1] == "" {
		return ls[:n-1]
	}
	return ls
}
