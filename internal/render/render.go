// Package render is how text that privileged code shows a person is made
// safe to show: secrets masked, and control and bidi characters escaped,
// so that what a person sees is exactly what will run, every character of
// it, and nothing an agent wrote can drive their terminal or reorder what
// they read.
//
// One rendering serves the CLI, the panel and the event an approval is
// recorded with (Call).
package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// keyValue matches the one value after a key-like name: it never runs
// across a space, a quote, a backslash (an escaped line break or quote in
// JSON), a comma or a semicolon.
var keyValue = regexp.MustCompile(`(?i)((?:api[_-]?key|secret|token|password|passwd|pwd|authorization|private[_-]?key|master[_-]?key|access[_-]?key)["']?\s*[:=]\s*["']?)([^\s"'\\,;]{4,})`)

// shapes are secrets recognised by their own shape.
var shapes = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})`),
	regexp.MustCompile(`()\b(sk-[A-Za-z0-9_-]{16,})`),
	regexp.MustCompile(`()\b(ghp_[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b`),
}

// Marker is what stands for a masked secret: its length and the first 8
// hex digits of its sha256, so two masked values can be told apart and
// nothing of the secret is shown.
func Marker(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return fmt.Sprintf("[secret: %d chars, sha256 %s]", len(secret), hex.EncodeToString(sum[:4]))
}

// MinSecret is the shortest value taken for a known secret: a shorter one
// would match ordinary text.
const MinSecret = 4

// Redacted replaces each known secret (its exact value, MinSecret bytes
// or more) in text by "[redacted]": for errors and events, where which
// secret it was does not matter. Every other character is kept.
func Redacted(text string, known []string) string {
	return string(RedactedBytes([]byte(text), known))
}

// RedactedBytes is Redacted for bytes: b itself when it holds no known
// secret (no copy, as raw events pass through here one by one), else a
// copy with each replaced.
func RedactedBytes(b []byte, known []string) []byte {
	for _, k := range known {
		if len(k) >= MinSecret && bytes.Contains(b, []byte(k)) {
			b = bytes.ReplaceAll(b, []byte(k), []byte("[redacted]"))
		}
	}
	return b
}

// Mask replaces each known secret (its exact value, MinSecret bytes or
// more) and each secret-looking value in text by its Marker: for what a
// person is shown to decide on. Every other character of text is kept.
func Mask(text string, known []string) string {
	for _, k := range known {
		if len(k) >= MinSecret {
			text = strings.ReplaceAll(text, k, Marker(k))
		}
	}
	// The shapes first: "Authorization: Bearer TOKEN" masks TOKEN, and
	// the scheme's name is not taken for the value.
	for _, re := range append(shapes[:len(shapes):len(shapes)], keyValue) {
		text = re.ReplaceAllStringFunc(text, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if strings.HasPrefix(sub[2], "[secret:") || strings.EqualFold(sub[2], "bearer") || strings.EqualFold(sub[2], "basic") {
				return m
			}
			return sub[1] + Marker(sub[2])
		})
	}
	return text
}

// Visible escapes every character of s that a terminal or a browser would
// not show as itself: C0 and C1 controls (but newline and tab), DEL, and
// format characters (bidi overrides and isolates, zero-width ones), each
// as a visible ⟦U+XXXX⟧; invalid UTF-8 as ⟦0xXX⟧.
func Visible(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "⟦0x%02X⟧", s[i])
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, "⟦U+%04X⟧", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Canonical is v in canonical JSON: keys sorted, no insignificant space.
func Canonical(v any) []byte {
	b, _ := json.Marshal(v)
	var x any
	if json.Unmarshal(b, &x) == nil {
		b, _ = json.Marshal(x) // maps marshal with sorted keys
	}
	return b
}

// Call renders a call a person is asked to approve: the tool's name, then
// its canonical arguments (canon, JSON) indented, whole, secrets masked,
// every character visible. masked is canon with the secrets masked: valid
// JSON, the arguments as recorded.
func Call(tool string, canon []byte, known []string) (display string, masked json.RawMessage) {
	m := Mask(string(canon), known)
	if json.Valid([]byte(m)) {
		masked = json.RawMessage(m)
	} else {
		masked, _ = json.Marshal(m)
	}
	var ind bytes.Buffer
	if json.Indent(&ind, masked, "", "  ") != nil {
		ind.Reset()
		ind.Write(masked)
	}
	return Visible(tool) + "\n" + Visible(ind.String()), masked
}

// Writer passes what is written to W through Visible: a terminal it
// reaches never gets a control or format character but newline and tab.
// A character split between two writes is kept back until it is whole.
// Its methods are not safe for concurrent use.
type Writer struct {
	W    io.Writer
	tail []byte // the start of a character split by the last write
}

// Write writes p, made visible; it reports len(p) when all was written.
func (w *Writer) Write(p []byte) (int, error) {
	b := append(w.tail, p...)
	cut := len(b)
	// Keep back an incomplete character at the end (at most 3 bytes).
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	w.tail = append([]byte(nil), b[cut:]...)
	if _, err := io.WriteString(w.W, Visible(string(b[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what was kept back (as invalid bytes: the character never
// completed).
func (w *Writer) Flush() error {
	if len(w.tail) == 0 {
		return nil
	}
	_, err := io.WriteString(w.W, Visible(string(w.tail)))
	w.tail = nil
	return err
}
