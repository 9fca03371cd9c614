// Package textdiff shows how two texts differ, line by line, whole:
// what a person reads before saying yes to a change.
package textdiff

import "strings"

// Mark writes each line of text with mark before it.
func Mark(out *strings.Builder, mark, text string) {
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

// Lines is a's and b's lines as their longest common subsequence orders
// them, each marked "-" (a's), "+" (b's) or " " (both); texts too long for
// that are shown whole, a's then b's.
func Lines(x, y string) string {
	var b strings.Builder
	lineDiff(&b, strings.SplitAfter(x, "\n"), strings.SplitAfter(y, "\n"))
	return b.String()
}

func lineDiff(out *strings.Builder, a, b []string) {
	a, b = trimEmpty(a), trimEmpty(b)
	if len(a)*len(b) > 4_000_000 {
		Mark(out, "-", strings.Join(a, ""))
		Mark(out, "+", strings.Join(b, ""))
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
