package api

import (
	"strings"
	"testing"
)

func TestDecisionsAreCheckedInOnePlace(t *testing.T) {
	for _, c := range []struct {
		decision, message string
		ok                bool
	}{
		{"once", "", true}, {"always", "", true}, {"reject", "because", true},
		{"once", "because", false}, {"yes", "", false}, {"", "", false},
		{"reject", strings.Repeat("x", MaxMessage+1), false},
	} {
		if err := CheckDecision(c.decision, c.message); (err == nil) != c.ok {
			t.Errorf("%q %q: %v", c.decision, c.message, err)
		}
	}
	for _, s := range []string{"", "pending", "once", "always", "reject", "expired"} {
		if err := CheckApprovalState(s); err != nil {
			t.Errorf("state %q: %v", s, err)
		}
	}
	if err := CheckApprovalState("done"); err == nil || !strings.HasPrefix(err.Error(), "state: ") {
		t.Errorf("state done: %v", err)
	}
	if CheckAppDecision("approve", "") != nil || CheckAppDecision("reject", "no") != nil || CheckAppDecision("once", "") == nil {
		t.Error("app decisions")
	}
	if AppState("approve") != "approved" || AppState("reject") != "rejected" || AppState("x") != "" {
		t.Error("app states")
	}
}
