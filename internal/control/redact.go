package control

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/taosagent/taosagent/internal/agent"
)

// invalidf is a refusal of bad input (HTTP 422).
func invalidf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok {
		field, reason = "request", msg
	}
	return &agent.InvalidError{Field: field, Reason: reason}
}

// Patterns of secrets that may appear in logs and config files: the value
// after a secret-looking key, bearer tokens and well-known key shapes.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)((?:api[_-]?key|secret|token|password|passwd|pwd|authorization|private[_-]?key|master[_-]?key|access[_-]?key)["']?\s*[:=]\s*["']?)([^\s"',;]{4,})`),
	regexp.MustCompile(`(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})`),
	regexp.MustCompile(`\b(sk-[A-Za-z0-9_-]{16,})`),
	regexp.MustCompile(`\b(ghp_[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b`),
}

// redact replaces every known secret (provider keys, the operator token)
// and every secret-looking value in text by [REDACTED].
func (s *Service) redact(text string) string {
	for _, k := range append(s.Keys.All(), s.Secrets...) {
		if len(k) >= 4 {
			text = strings.ReplaceAll(text, k, "[REDACTED]")
		}
	}
	for i, re := range secretPatterns {
		if i < 2 {
			text = re.ReplaceAllString(text, "${1}[REDACTED]")
		} else {
			text = re.ReplaceAllString(text, "[REDACTED]")
		}
	}
	return text
}
