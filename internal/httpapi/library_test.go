package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/eventlog"
)

// The Library through the API, as a person uses it: an item added is
// current; the same again changes nothing; a bad one is a 422 naming its
// problems and stores nothing; an update waits, shown with its diff, until
// accepted; a removal; each change audited.
func TestTheLibraryThroughTheAPI(t *testing.T) {
	s := &Server{}
	l, addr := guarded(t, s)
	s.Control.Home = t.TempDir()
	item := func(body string) string {
		files := map[string]string{
			"item.json":  `{"kind":"command","name":"summarize","description":"Summarize a file."}`,
			"command.md": "---\ndescription: Summarize a file\n---\n" + body,
		}
		b, _ := json.Marshal(map[string]any{"files": files})
		return string(b)
	}
	if code, body := call(t, addr, "POST", "/v1/library", item("Summarize $ARGUMENTS.\n")); code != 201 || !strings.Contains(body, `"current":true`) {
		t.Fatalf("add: %d %s", code, body)
	}
	if code, body := call(t, addr, "POST", "/v1/library", item("Summarize $ARGUMENTS.\n")); code != 200 || !strings.Contains(body, `"created":false`) {
		t.Fatalf("the same again: %d %s", code, body)
	}
	bad := `{"files":{"item.json":"{\"kind\":\"command\",\"name\":\"x\",\"description\":\"d\"}","command.md":"use ghp_0123456789abcdefghijABCDEFGHIJ012345","../out.md":"x"}}`
	code, body := call(t, addr, "POST", "/v1/library", bad)
	if code != 422 || !strings.Contains(body, "item.path") || !strings.Contains(body, "secret.api-key") || strings.Contains(body, "0123456789abcdefghij") {
		t.Fatalf("a bad item: %d %s", code, body)
	}
	if code, body := call(t, addr, "POST", "/v1/library", item("Summarize $ARGUMENTS in two lines.\n")); code != 201 || !strings.Contains(body, `"current":false`) {
		t.Fatalf("an update: %d %s", code, body)
	}
	code, body = call(t, addr, "GET", "/v1/library/command/summarize", "")
	var shown struct {
		Digest  string
		Content map[string]string
		Waiting []struct{ Digest, Diff string }
	}
	json.Unmarshal([]byte(body), &shown)
	if code != 200 || len(shown.Waiting) != 1 || !strings.Contains(shown.Waiting[0].Diff, "+Summarize $ARGUMENTS in two lines.") ||
		strings.Contains(shown.Content["command.md"], "two lines") {
		t.Fatalf("show: %d %s", code, body)
	}
	if code, body := call(t, addr, "GET", "/v1/library", ""); code != 200 || strings.Count(body, `"name":`) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := call(t, addr, "POST", "/v1/library/command/summarize/accept", `{"digest":"`+strings.Repeat("a", 64)+`"}`); code != 404 {
		t.Fatalf("accepting a version that does not wait: %d %s", code, body)
	}
	if code, body := call(t, addr, "POST", "/v1/library/command/summarize/accept", `{"digest":"`+shown.Waiting[0].Digest+`"}`); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	if _, body := call(t, addr, "GET", "/v1/library/command/summarize", ""); !strings.Contains(body, "two lines") || strings.Contains(body, `"waiting"`) {
		t.Fatalf("after accepting: %s", body)
	}
	if code, _ := call(t, addr, "DELETE", "/v1/library/command/summarize", ""); code != 204 {
		t.Fatalf("remove: %d", code)
	}
	for _, p := range []string{"/v1/library/command/summarize", "/v1/library/plugin/x"} {
		if code, _ := call(t, addr, "GET", p, ""); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	for _, action := range []string{"library.add", "library.accept", "library.remove"} {
		if es, _ := l.AuditSearch(t.Context(), eventlog.AuditQuery{Action: action}); len(es) == 0 {
			t.Errorf("no audit of %s", action)
		}
	}
}
