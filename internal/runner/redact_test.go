package runner

import "testing"

func TestRawEventsAreRedacted(t *testing.T) {
	raw := []byte(`{"type":"session.error","properties":{"error":{"message":"Incorrect API key provided: sk-one-123456 (also sk-two-654321)"}}}`)
	orig := string(raw)
	got := string(redactBytes(raw, []string{"sk-one-123456", "sk-two-654321", "x"}))
	want := `{"type":"session.error","properties":{"error":{"message":"Incorrect API key provided: [redacted] (also [redacted])"}}}`
	if got != want {
		t.Errorf("got %s", got)
	}
	if string(raw) != orig {
		t.Error("the input was changed in place")
	}
}
