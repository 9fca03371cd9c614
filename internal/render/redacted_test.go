package render

import "testing"

func TestKnownSecretsAreRedacted(t *testing.T) {
	raw := `{"type":"session.error","properties":{"error":{"message":"Incorrect API key provided: sk-one-123456 (also sk-two-654321)"}}}`
	got := Redacted(raw, []string{"sk-one-123456", "sk-two-654321", "x"})
	want := `{"type":"session.error","properties":{"error":{"message":"Incorrect API key provided: [redacted] (also [redacted])"}}}`
	if got != want {
		t.Errorf("got %s", got)
	}
}
