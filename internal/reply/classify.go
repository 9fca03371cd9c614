package reply

import (
	"strings"

	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/opencode"
)

// classify turns an opencode error into a clean ErrorData: a code a program
// can act on, a one-line message without stack trace or secret, and the
// provider's HTTP status where there was one.
func (c *Codec) classify(e *opencode.MessageError) event.ErrorData {
	if e == nil {
		return event.ErrorData{Code: event.CodeOpencode, Message: "opencode reported an error without details"}
	}
	msg := c.clean(e.Data.Message)
	if msg == "" {
		msg = e.Name
	}
	status := e.Data.StatusCode
	d := event.ErrorData{Message: msg, Status: status}
	lower := strings.ToLower(msg)
	switch {
	case e.Name == "MessageAbortedError":
		d.Code = event.CodeAborted
	case e.Name == "ProviderAuthError" || status == 401 || status == 403:
		d.Code = event.CodeProviderAuth
	case status == 429 && IsBudgetExceeded(msg):
		d.Code = event.CodeBudget
	case status == 429:
		d.Code = event.CodeRateLimited
	case strings.Contains(e.Name, "ModelNotFound") || strings.HasPrefix(lower, "model not found"):
		d.Code = event.CodeModelNotFound
	case strings.Contains(e.Name, "ContextOverflow") || strings.Contains(lower, "context length"):
		d.Code = event.CodeContext
	case e.Name == "APIError" || status >= 500:
		d.Code = event.CodeProvider
	default:
		d.Code = event.CodeOpencode
	}
	return d
}

// IsBudgetExceeded reports whether an error message is the gateway's
// refusal of an agent whose budget is spent (its 429 budget_exceeded).
func IsBudgetExceeded(msg string) bool {
	return strings.HasPrefix(strings.ToLower(msg), "budget exceeded")
}

// clean makes a message fit for a person: one line, no stack, no secret.
func (c *Codec) clean(s string) string {
	return opencode.Redacted(s, c.Redact)
}
