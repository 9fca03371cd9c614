package control

import (
	"fmt"
	"strings"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/render"
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

// redact masks every known secret (provider keys, the operator token) and
// every secret-looking value in text (render.Mask).
func (s *Service) redact(text string) string {
	return render.Mask(text, append(s.Keys.All(), s.Secrets...))
}
