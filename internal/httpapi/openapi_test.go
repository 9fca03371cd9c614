package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// The OpenAPI document describes exactly the routes served, and says which
// of them need the token, as the server does.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		Security []map[string][]string                 `json:"security"`
		Paths    map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Security) == 0 {
		t.Fatal("no global security requirement: the token is not documented")
	}
	documented := map[string]bool{} // "METHOD /path" → open
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			switch method {
			case "get", "post", "put", "patch", "delete":
			default:
				continue
			}
			var op struct {
				Security *[]map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			documented[strings.ToUpper(method)+" "+path] = op.Security != nil && len(*op.Security) == 0
		}
	}
	var served []string
	for _, rt := range (&Server{}).routes() {
		pattern := strings.ReplaceAll(rt.pattern, "...}", "}") // OpenAPI has no wildcard parameter
		served = append(served, pattern)
		open, ok := documented[pattern]
		switch {
		case !ok:
			t.Errorf("%s is served but not in openapi.json", rt.pattern)
		case open != rt.open:
			t.Errorf("%s: served open=%v, documented open=%v", rt.pattern, rt.open, open)
		}
	}
	for pattern := range documented {
		if !slices.Contains(served, pattern) {
			t.Errorf("%s is in openapi.json but not served", pattern)
		}
	}
}
