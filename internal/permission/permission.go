// Package permission is the shape of an agent's permission map, as
// opencode reads it: one action for every tool, or an object of tool →
// action, or tool → (pattern → action), one level deep. It is the one
// place its actions are listed and its shape checked.
package permission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Actions of a permission rule.
const (
	Allow = "allow"
	Ask   = "ask"
	Deny  = "deny"
)

// Validate checks raw, a permission map, and says where it is wrong.
func Validate(raw json.RawMessage) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	checkAction := func(where string, a any) error {
		s, ok := a.(string)
		if !ok || (s != Allow && s != Ask && s != Deny) {
			return fmt.Errorf("%s: want %q, %q or %q", where, Allow, Ask, Deny)
		}
		return nil
	}
	switch t := v.(type) {
	case string:
		return checkAction("value", t)
	case map[string]any:
		for tool, rule := range t {
			if m, ok := rule.(map[string]any); ok {
				for pat, a := range m {
					if err := checkAction(fmt.Sprintf("%s[%q]", tool, pat), a); err != nil {
						return err
					}
				}
				continue
			}
			if err := checkAction(tool, rule); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.New("want an action or an object")
}
