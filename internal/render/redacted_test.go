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

func TestBytesWithoutASecretAreNotCopied(t *testing.T) {
	b := []byte(`{"type":"message.part.updated"}`)
	if got := RedactedBytes(b, []string{"sk-one-123456"}); &got[0] != &b[0] {
		t.Error("a raw event without a secret was copied")
	}
	b2 := []byte("key sk-one-123456")
	if got := RedactedBytes(b2, []string{"sk-one-123456"}); string(got) != "key [redacted]" || string(b2) != "key sk-one-123456" {
		t.Errorf("got %q, the input now %q", got, b2)
	}
}
