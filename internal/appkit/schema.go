package appkit

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// schema is the subset of JSON Schema (2020-12) the manifest schema uses.
// compileSchema refuses any keyword outside it, so the schema file cannot
// say something this validator would silently ignore.
type schema struct {
	Type                 string             `json:"type"`
	Enum                 []any              `json:"enum"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties *bool              `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	MinLength            *int               `json:"minLength"`
	MaxLength            *int               `json:"maxLength"`
	Pattern              string             `json:"pattern"`
	MaxItems             *int               `json:"maxItems"`
	UniqueItems          bool               `json:"uniqueItems"`

	re *regexp.Regexp
}

var schemaKeywords = map[string]bool{
	"$schema": true, "$id": true, "title": true, "description": true,
	"type": true, "enum": true, "required": true, "properties": true, "additionalProperties": true,
	"items": true, "minLength": true, "maxLength": true, "pattern": true, "maxItems": true, "uniqueItems": true,
}

func compileSchema(data []byte) (*schema, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	for k := range raw {
		if !schemaKeywords[k] {
			return nil, fmt.Errorf("schema keyword %q is not supported by the validator", k)
		}
	}
	var s schema
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if s.Pattern != "" {
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", s.Pattern, err)
		}
		s.re = re
	}
	if s.Items != nil {
		b, _ := json.Marshal(raw["items"])
		it, err := compileSchema(b)
		if err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
		s.Items = it
	}
	if raw["properties"] != nil {
		var props map[string]json.RawMessage
		json.Unmarshal(raw["properties"], &props)
		for name, p := range props {
			ps, err := compileSchema(p)
			if err != nil {
				return nil, fmt.Errorf("properties.%s: %w", name, err)
			}
			s.Properties[name] = ps
		}
	}
	return &s, nil
}

// validate checks v (as decoded by encoding/json into any) and calls bad
// with a JSON pointer and a message for each violation, in a stable order.
func (s *schema) validate(ptr string, v any, bad func(ptr, msg string)) {
	if s.Type != "" && !typeIs(s.Type, v) {
		bad(ptr, fmt.Sprintf("must be of type %s, not %s", s.Type, typeOf(v)))
		return
	}
	if len(s.Enum) > 0 {
		ok := false
		for _, e := range s.Enum {
			if e == v {
				ok = true
			}
		}
		if !ok {
			var opts []string
			for _, e := range s.Enum {
				opts = append(opts, fmt.Sprint(e))
			}
			bad(ptr, fmt.Sprintf("must be one of %s", strings.Join(opts, ", ")))
			return
		}
	}
	switch v := v.(type) {
	case string:
		n := utf8.RuneCountInString(v)
		if s.MinLength != nil && n < *s.MinLength {
			bad(ptr, fmt.Sprintf("must be at least %d characters", *s.MinLength))
		}
		if s.MaxLength != nil && n > *s.MaxLength {
			bad(ptr, fmt.Sprintf("must be at most %d characters", *s.MaxLength))
		}
		if s.re != nil && !s.re.MatchString(v) {
			bad(ptr, fmt.Sprintf("does not match the pattern %s", s.Pattern))
		}
	case []any:
		if s.MaxItems != nil && len(v) > *s.MaxItems {
			bad(ptr, fmt.Sprintf("must have at most %d items", *s.MaxItems))
		}
		if s.UniqueItems {
			seen := map[string]bool{}
			for i, it := range v {
				k, _ := json.Marshal(it)
				if seen[string(k)] {
					bad(ptr+"/"+strconv.Itoa(i), "repeats an earlier item")
				}
				seen[string(k)] = true
			}
		}
		if s.Items != nil {
			for i, it := range v {
				s.Items.validate(ptr+"/"+strconv.Itoa(i), it, bad)
			}
		}
	case map[string]any:
		for _, r := range s.Required {
			if _, ok := v[r]; !ok {
				bad(ptr+"/"+r, "is required")
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := ptr + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
			if ps, ok := s.Properties[k]; ok {
				ps.validate(p, v[k], bad)
			} else if s.AdditionalProperties != nil && !*s.AdditionalProperties {
				bad(p, "is not a known field")
			}
		}
	}
}

func typeIs(t string, v any) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	}
	return false
}

func typeOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case nil:
		return "null"
	}
	return "unknown"
}
