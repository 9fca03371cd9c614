package agent

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHostPermission(t *testing.T) {
	denies := `"bash":"deny","edit":"deny","write":"deny","patch":"deny","webfetch":"deny","external_directory":"deny"}`
	for _, c := range []struct{ in, want, err string }{
		{in: "", want: "{" + denies},
		{in: `"deny"`, want: "{" + denies},
		{in: `{"read":"ask","bash":"deny"}`, want: `{"read":"ask",` + denies},
		// A wildcard can never outrank the denies: they come last.
		{in: `{"bash":"deny","*":"allow"}`, want: `{"*":"allow",` + denies},
		{in: `{"read":{"*.env":"deny","*":"allow"}}`, want: `{"read":{"*.env":"deny","*":"allow"},` + denies},
		{in: `"allow"`, err: "never gets a raw shell"},
		{in: `{"bash":"allow"}`, err: `"bash" must be "deny"`},
		{in: `{"bash":"ask"}`, err: `"bash" must be "deny"`},
		{in: `{"edit":{"*":"deny","x":"allow"}}`, err: `"edit" must be "deny"`},
		{in: `{"external_directory":"allow"}`, err: `"external_directory" must be "deny"`},
		{in: `[1]`, err: "action or an object"},
	} {
		got, err := HostPermission(json.RawMessage(c.in))
		if c.err != "" {
			if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s: got %s, %v; want %s", c.in, got, err, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: %s is not JSON", c.in, got)
		}
	}
}

// An agent's Library items are pinned refs of kinds it can be given, each
// named once.
func TestAnAgentsLibraryIsPinned(t *testing.T) {
	providers := func(id string) (Provider, bool) { return Provider{ID: id, Models: []Model{{ID: "m"}}}, id == "p" }
	d := strings.Repeat("a", 64)
	for refs, want := range map[string]string{
		"skill/notes@" + d:                       "",
		"skill/notes@" + d + " command/sum@" + d: "",
		"skill/notes":                            "not pinned",
		"tool/format@" + d:                       "",
		"agent/helper@" + d:                      "kinds",
		"rule/style@" + d + " mcp/memory@" + d:   "",
		"skill/notes@" + d + " skill/notes@" + d: "named twice",
		"skill/../x@" + d:                        "is not kind/name",
	} {
		a := Agent{Name: "a", Model: "p/m", Library: strings.Fields(refs)}
		a.Normalize()
		err := a.Validate(providers)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("library %v: %v, want %q", a.Library, err, want)
		}
	}
}

func TestAnAgentHandsTasksOnlyWhereAPersonAllowed(t *testing.T) {
	providers := func(id string) (Provider, bool) { return Provider{ID: id, Models: []Model{{ID: "m"}}}, id == "p" }
	for list, want := range map[string]string{
		"":           "",
		"worker":     "",
		"worker ops": "",
		"a":          "to itself",
		"../x":       "not an agent's name",
	} {
		a := Agent{Name: "a", Model: "p/m", MayTask: strings.Fields(list)}
		a.Normalize()
		err := a.Validate(providers)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("may_task %v: %v, want %q", a.MayTask, err, want)
		}
	}
	if (Agent{Name: Host}).MayTaskTo("worker") {
		t.Error("host hands tasks by default")
	}
	if a := (Agent{Name: "a", MayTask: []string{"worker"}}); !a.MayTaskTo("worker") || a.MayTaskTo("ops") || a.MayTaskTo("a") {
		t.Error("MayTaskTo does not follow the list")
	}
}
