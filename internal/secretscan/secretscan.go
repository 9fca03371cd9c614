// Package secretscan finds credentials in files that are about to be
// shared or handed to an agent (an app package, a Library item): the one
// place that knows what a credential looks like.
package secretscan

import (
	"bytes"
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"
)

// secretPatterns are credentials with a recognisable shape. A match is an
// error: what is shared is public.
// Each has literal hints: the regexp runs only on files holding one.
var secretPatterns = []struct {
	rule, what string
	hints      []string
	re         *regexp.Regexp
}{
	{"secret.private-key", "a private key", []string{"PRIVATE KEY"}, regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----`)},
	{"secret.api-key", "an AWS access key", []string{"AKIA", "ASIA"}, regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{"secret.api-key", "a GitHub token", []string{"gh", "github_pat_"}, regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})`)},
	{"secret.api-key", "a Slack token", []string{"xox"}, regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},
	{"secret.api-key", "a Stripe live key", []string{"k_live_"}, regexp.MustCompile(`\b[rs]k_live_[A-Za-z0-9]{20,}`)},
	{"secret.api-key", "an Anthropic API key", []string{"sk-ant-"}, regexp.MustCompile(`\bsk-ant-[A-Za-z0-9_-]{20,}`)},
	{"secret.api-key", "an OpenAI-style API key", []string{"sk-"}, regexp.MustCompile(`\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}`)},
	{"secret.api-key", "a Google API key", []string{"AIza"}, regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}`)},
	{"secret.api-key", "a Slack webhook", []string{"hooks.slack.com"}, regexp.MustCompile(`https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}`)},
}

func hinted(data []byte, hints []string) bool {
	for _, h := range hints {
		if bytes.Contains(data, []byte(h)) {
			return true
		}
	}
	return false
}

// isConfig reports whether a file is configuration, where a long random
// string is most likely a credential.
func isConfig(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	base := strings.ToLower(path.Base(name))
	return ext == ".json" || ext == ".webmanifest" ||
		(ext == ".js" || ext == ".mjs") && (strings.Contains(base, "config") || strings.Contains(base, "env") || strings.Contains(base, "settings"))
}

var tokenRe = regexp.MustCompile(`[A-Za-z0-9+/=_\-]{24,}`)

// Hit is one credential-looking string in a file. Its message never
// repeats the secret: it names the kind, the line and the length.
type Hit struct {
	Rule    string // secret.private-key, secret.api-key, secret.high-entropy
	Line    int
	Certain bool // a recognisable credential, not merely a random-looking string
	Message string
}

// Scan finds credentials in file name's data: every string with a
// credential's recognisable shape (Certain), and, in a configuration file
// (isConfig), every random-looking token. The caller decides which files
// are text.
func Scan(name string, data []byte) []Hit {
	var out []Hit
	lineOf := func(off int) int { return bytes.Count(data[:off], []byte("\n")) + 1 }
	for _, p := range secretPatterns {
		if !hinted(data, p.hints) {
			continue
		}
		for _, loc := range p.re.FindAllIndex(data, 20) {
			out = append(out, Hit{Rule: p.rule, Line: lineOf(loc[0]), Certain: true,
				Message: fmt.Sprintf("looks like %s (%d characters, starting %q…); remove it and revoke it", p.what, loc[1]-loc[0], redact(data[loc[0]:loc[1]]))})
		}
	}
	if !isConfig(name) {
		return out
	}
	for _, loc := range tokenRe.FindAllIndex(data, 200) {
		tok := data[loc[0]:loc[1]]
		if bytes.HasPrefix(tok, []byte("sha256-")) || bytes.HasPrefix(tok, []byte("sha384-")) || bytes.HasPrefix(tok, []byte("sha512-")) {
			continue // subresource integrity hashes
		}
		if e := entropy(tok); e >= entropyThreshold(tok) {
			out = append(out, Hit{Rule: "secret.high-entropy", Line: lineOf(loc[0]),
				Message: fmt.Sprintf("random-looking string (%d characters, %.1f bits/char, starting %q…) in a config file; if it is a credential, remove it", len(tok), e, redact(tok))})
		}
	}
	return out
}

// entropyThreshold is the Shannon entropy, in bits per character, above
// which a token looks random: hex strings top out at 4, base64 at 6.
func entropyThreshold(tok []byte) float64 {
	hex := true
	for _, c := range tok {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			hex = false
			break
		}
	}
	if hex {
		return 3.5
	}
	return 4.5
}

func entropy(s []byte) float64 {
	var counts [256]int
	for _, c := range s {
		counts[c]++
	}
	var h float64
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// redact keeps only a recognisable prefix of a secret.
func redact(s []byte) string {
	if len(s) > 4 {
		s = s[:4]
	}
	return string(s)
}
