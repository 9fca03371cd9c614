package secretscan

import (
	"strings"
	"testing"
)

func TestCredentialsAreFoundAndNeverRepeated(t *testing.T) {
	for _, c := range []struct {
		name, data, rule string
		certain          bool
	}{
		{"SKILL.md", "use ghp_0123456789abcdefghijABCDEFGHIJ012345 to push", "secret.api-key", true},
		{"tool.ts", "line one\nconst k = \"sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD\"", "secret.api-key", true},
		{"key.txt", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc", "secret.private-key", true},
		{"mcp.json", `{"token": "q8ZrT1vX9mK2pL7wN4bY6cF3hJ0sD5gA"}`, "secret.high-entropy", false},
	} {
		hits := Scan(c.name, []byte(c.data))
		if len(hits) != 1 || hits[0].Rule != c.rule || hits[0].Certain != c.certain {
			t.Errorf("%s: %+v", c.name, hits)
			continue
		}
		if c.name == "tool.ts" && hits[0].Line != 2 {
			t.Errorf("%s: line %d, want 2", c.name, hits[0].Line)
		}
		if strings.Contains(hits[0].Message, "0123456789abcdefghij") || strings.Contains(hits[0].Message, "q8ZrT1vX9mK2pL7w") {
			t.Errorf("%s: the message repeats the secret: %s", c.name, hits[0].Message)
		}
	}
	if hits := Scan("README.md", []byte("A plain note with sha256-abcdefghijklmnopqrstuvwxyz0123456789 and words.")); len(hits) != 0 {
		t.Errorf("plain text flagged: %+v", hits)
	}
}
