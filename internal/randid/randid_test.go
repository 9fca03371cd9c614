package randid

import (
	"regexp"
	"testing"
)

func TestIDsAreFreshAndShaped(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := ID("turn")
		if !regexp.MustCompile(`^turn_[0-9a-f]{20}$`).MatchString(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	if s := Secret(); len(s) != 64 {
		t.Fatalf("secret %q", s)
	}
	if h := Hex(3); len(h) != 6 {
		t.Fatalf("hex %q", h)
	}
}
