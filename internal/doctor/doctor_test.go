package doctor

import (
	"encoding/json"
	"slices"
	"testing"
)

// fix --all runs what blocks a start before the start, each recipe once.
func TestPlannedOrdersRecipesAndSkipsOK(t *testing.T) {
	fs := []Finding{
		{ID: "daemon", Severity: Critical, Recipe: "start-daemon"},
		{ID: "services", Severity: Error, Recipe: "restart-service:app"},
		{ID: "stale-lock", Severity: Warning, Recipe: "clear-stale-lock"},
		{ID: "services", Severity: Error, Recipe: "restart-service:app"},
		{ID: "home", Severity: OK, Recipe: "repair-permissions"},
		{ID: "port", Severity: Error}, // a foreign listener: a person's job
	}
	got := Planned(fs)
	want := []string{"clear-stale-lock", "restart-service:app", "start-daemon"}
	if !slices.Equal(got, want) {
		t.Errorf("planned %v, want %v", got, want)
	}
}

func TestSeverityIsWrittenByName(t *testing.T) {
	b, _ := json.Marshal(Finding{ID: "x", Severity: Critical})
	var back Finding
	if err := json.Unmarshal(b, &back); err != nil || back.Severity != Critical || !json.Valid(b) || string(b) != `{"id":"x","severity":"critical","summary":""}` {
		t.Errorf("%s → %+v %v", b, back, err)
	}
	if _, err := ParseSeverity("fatal"); err == nil {
		t.Error("an unknown severity was accepted")
	}
	if Worst([]Finding{{Severity: Warning}, {Severity: Error}, {Severity: OK}}) != Error {
		t.Error("worst")
	}
}

func TestEveryRecipeIsFound(t *testing.T) {
	for _, r := range Recipes() {
		got, arg, ok := Lookup(r.ID + ":x")
		if !ok || got.ID != r.ID || arg != "x" {
			t.Errorf("lookup %s", r.ID)
		}
	}
	if _, _, ok := Lookup("rm-rf"); ok {
		t.Error("an unknown recipe was found")
	}
}
