package hostctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// Validate checks that b parses as format: a config file is never written
// in a form its service cannot read.
func Validate(format string, b []byte) error {
	switch format {
	case "json":
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		if err := d.Decode(&v); err != nil {
			return fmt.Errorf("not valid JSON: %w", err)
		}
		if d.More() {
			return fmt.Errorf("not valid JSON: data after the document")
		}
	case "yaml":
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("not valid YAML: %w", err)
		}
	case "toml":
		var v map[string]any
		if err := toml.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("not valid TOML: %w", err)
		}
	case "ini":
		return validateINI(b)
	case "none":
	default:
		return fmt.Errorf("unknown format %q", format)
	}
	return nil
}

// validateINI accepts sections, key = value (or key: value) lines,
// comments (; or #) and blank lines.
func validateINI(b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "", strings.HasPrefix(l, ";"), strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			if !strings.HasSuffix(l, "]") || len(l) < 3 {
				return fmt.Errorf("not valid INI: line %d: an unclosed section header", n)
			}
		case strings.ContainsAny(l, "=:"):
			if k, _, _ := strings.Cut(l, "="); strings.TrimSpace(k) == "" {
				return fmt.Errorf("not valid INI: line %d: a value without a key", n)
			}
		default:
			return fmt.Errorf("not valid INI: line %d: neither a section, a key = value nor a comment", n)
		}
	}
	return sc.Err()
}
