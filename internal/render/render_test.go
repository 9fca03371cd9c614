package render

import (
	"strings"
	"testing"
)

func TestMaskHidesOnlyTheSecretsValue(t *testing.T) {
	for in, want := range map[string]string{
		`token=abcd1234 next`:                    `token=` + Marker("abcd1234") + ` next`,
		`{"a":"PASSWORD=hunter22\nB=https://x"}`: `{"a":"PASSWORD=` + Marker("hunter22") + `\nB=https://x"}`,
		`api_key: "k3y-v4lue" other`:             `api_key: "` + Marker("k3y-v4lue") + `" other`,
		`Authorization: Bearer abcdefgh12345678`: `Authorization: Bearer ` + Marker("abcdefgh12345678"),
		`known-secret-value in text`:             Marker("known-secret-value") + ` in text`,
	} {
		if got := Mask(in, []string{"known-secret-value"}); got != want {
			t.Errorf("Mask(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestVisibleEscapesWhatATerminalWouldObey(t *testing.T) {
	in := "ok\tline\n\x1b]52;c;cHduZWQ=\x07\x1b[2J\u202edanger\xff"
	got := Visible(in)
	if strings.ContainsAny(got, "\x1b\x07\u202e") || !strings.HasPrefix(got, "ok\tline\n") {
		t.Fatalf("Visible(%q) = %q", in, got)
	}
	for _, want := range []string{"⟦U+001B⟧]52;c;", "⟦U+0007⟧", "⟦U+202E⟧danger", "⟦0xFF⟧"} {
		if !strings.Contains(got, want) {
			t.Errorf("Visible(%q) = %q, lacks %q", in, got, want)
		}
	}
}
