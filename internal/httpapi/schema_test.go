package httpapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/library"
)

// Each schema of the OpenAPI document names exactly the fields of the Go
// type the server decodes or answers with: a field added to one and not
// the other fails here, by name.
func TestOpenAPISchemasMatchTheWireTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	// hidden are fields of the Go type that never cross the wire on that
	// path, left out of its schema on purpose: what a request may not set,
	// (the control service clears them), and a write-only key an answer never
	// holds (cleared, omitempty).
	types := map[string]struct {
		v      any
		hidden []string
	}{
		"Error":            {v: api.ErrorBody{}},
		"ProviderInput":    {v: agent.Provider{}, hidden: []string{"created", "demo", "has_key"}},
		"Provider":         {v: agent.Provider{}.Public(), hidden: []string{"api_key"}},
		"AgentInput":       {v: agentBody{}},
		"AgentPatch":       {v: control.AgentPatch{}},
		"Agent":            {v: control.AgentView{}, hidden: []string{"upstream_key"}},
		"MessageInput":     {v: api.Message{}},
		"Accepted":         {v: api.Accepted{}},
		"Event":            {v: event.Event{}},
		"ResetData":        {v: eventlog.ResetData{}},
		"Approval":         {v: api.Approval{}},
		"ApprovalReply":    {v: api.DecisionRequest{}},
		"Question":         {v: api.Question{}},
		"QuestionAnswer":   {v: api.AnswerRequest{}},
		"Conversation":     {v: api.Conversation{}},
		"LibraryInput":     {v: libraryInput{}},
		"LibraryAdded":     {v: libraryAdded{}},
		"LibraryEntry":     {v: library.Entry{}},
		"LibraryItem":      {v: control.LibraryItem{}},
		"AuditEntry":       {v: api.AuditEntry{}},
		"ModelSync":        {v: api.ModelSync{}},
		"ReplyInput":       {v: replyInput{}},
		"ReplyDict":        {v: replyDict{}},
		"App":              {v: api.App{}},
		"EgressPolicy":     {v: egress.Policy{}},
		"Workspace":        {v: agent.Workspace{}},
		"LibrarySyncInput": {v: librarySyncInput{}},
		"LibrarySource":    {v: library.Source{}},
		"LibrarySync":      {v: library.SyncResult{}},
		"ScheduleInput":    {v: api.ScheduleRequest{}},
		"Schedule":         {v: api.Schedule{}},
		"HookInput":        {v: api.HookRequest{}},
		"Hook":             {v: api.Hook{}},
		"Task":             {v: api.Task{}},
		"Cluster":          {v: api.Cluster{}},
		"DrainInput":       {v: api.DrainRequest{}},
		"PinInput":         {v: api.PinRequest{}},
		"MoveInput":        {v: api.MoveRequest{}},
		"Move":             {v: api.Move{}},
		"ChannelInput":     {v: api.ChannelRequest{}},
		"Channel":          {v: api.Channel{}},
		"PushSubscription": {v: api.PushSubscription{}},
		"Pending":          {v: api.Pending{}},
	}
	for name, s := range doc.Components.Schemas {
		ty, ok := types[name]
		if !ok {
			t.Errorf("schema %s: no Go type is checked against it", name)
			continue
		}
		var documented []string
		for p := range s.Properties {
			documented = append(documented, p)
		}
		var fields []string
		for _, f := range jsonFields(reflect.TypeOf(ty.v)) {
			if !slices.Contains(ty.hidden, f) {
				fields = append(fields, f)
			}
		}
		sort.Strings(documented)
		sort.Strings(fields)
		for _, f := range fields {
			if !slices.Contains(documented, f) {
				t.Errorf("schema %s lacks field %q of %T", name, f, ty.v)
			}
		}
		for _, f := range documented {
			if !slices.Contains(fields, f) {
				t.Errorf("schema %s documents %q, which %T does not have", name, f, ty.v)
			}
		}
	}
	for name := range types {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("no schema %s in openapi.json", name)
		}
	}
	// And the objects nested in them, by path.
	nested := map[string]any{"Agent.status": api.AgentStatus{}, "Agent.status.usage": api.Usage{}, "Agent.status.last_error": api.LastError{}}
	var raw map[string]any
	json.Unmarshal(openAPI, &raw)
	for path, v := range nested {
		parts := strings.Split(path, ".")
		node := raw["components"].(map[string]any)["schemas"].(map[string]any)[parts[0]].(map[string]any)
		for _, p := range parts[1:] {
			node = node["properties"].(map[string]any)[p].(map[string]any)
		}
		var documented []string
		for p := range node["properties"].(map[string]any) {
			documented = append(documented, p)
		}
		fields := jsonFields(reflect.TypeOf(v))
		sort.Strings(documented)
		sort.Strings(fields)
		if !slices.Equal(documented, fields) {
			t.Errorf("%s documents %v; %T has %v", path, documented, v, fields)
		}
	}
}

// jsonFields are the names encoding/json gives t's fields (embedded
// structs' fields included).
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, jsonFields(ft)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// The document names every kind of event, and no other.
func TestOpenAPINamesEveryKind(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Event struct {
					Properties struct {
						Kind struct {
							Examples []event.Kind `json:"examples"`
						} `json:"kind"`
					} `json:"properties"`
				} `json:"Event"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.Components.Schemas.Event.Properties.Kind.Examples; !slices.Equal(got, event.Kinds) {
		t.Fatalf("openapi.json's kinds %v, want event.Kinds %v", got, event.Kinds)
	}
}
