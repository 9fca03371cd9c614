package api

import (
	"errors"
	"fmt"
)

// Decision is a person's answer to an approval: opencode's own three.
// taosagent's own approvals (of its host tools) take Once or Reject.
type Decision string

// The decisions.
const (
	Once   Decision = "once"
	Always Decision = "always"
	Reject Decision = "reject"
)

// MaxMessage is the longest message a decision may carry.
const MaxMessage = 4096

// Approval states: pending, the decision that resolved it, or expired
// (its request went away unanswered).
const (
	ApprovalPending = "pending"
	ApprovalExpired = "expired"
)

// CheckDecision returns nil if decision is one of the three and message
// may go with it: at most MaxMessage bytes, and only with a reject. An
// error reads "field: reason".
func CheckDecision(decision, message string) error {
	switch Decision(decision) {
	case Once, Always, Reject:
	default:
		return fmt.Errorf("decision: must be %q, %q or %q", Once, Always, Reject)
	}
	switch {
	case len(message) > MaxMessage:
		return fmt.Errorf("message: longer than %d bytes", MaxMessage)
	case message != "" && Decision(decision) != Reject:
		return errors.New("message: goes with reject only")
	}
	return nil
}

// CheckApprovalState returns nil if state is an approval's state, or ""
// (every state).
func CheckApprovalState(state string) error {
	switch state {
	case "", ApprovalPending, string(Once), string(Always), string(Reject), ApprovalExpired:
		return nil
	}
	return fmt.Errorf("state: must be %s, %s, %s, %s or %s", ApprovalPending, Once, Always, Reject, ApprovalExpired)
}

// App decisions: a person's answer to a package that passed the gate,
// and the states they lead to.
const (
	AppApprove = "approve"
	AppReject  = "reject"
)

// App states: a package that passed the gate waits (pending) for a
// person's decision; one that failed it is refused, never shareable.
const (
	AppPending  = "pending"
	AppRefused  = "refused"
	AppApproved = "approved"
	AppRejected = "rejected"
)

// AppState is the state an app decision leads to ("" for no decision).
func AppState(decision string) string {
	switch decision {
	case AppApprove:
		return AppApproved
	case AppReject:
		return AppRejected
	}
	return ""
}

// CheckAppDecision returns nil if decision is an app decision and the
// message fits (MaxMessage bytes). An error reads "field: reason".
func CheckAppDecision(decision, message string) error {
	if AppState(decision) == "" {
		return fmt.Errorf("decision: must be %q or %q", AppApprove, AppReject)
	}
	if len(message) > MaxMessage {
		return fmt.Errorf("message: longer than %d bytes", MaxMessage)
	}
	return nil
}
