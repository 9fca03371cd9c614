package appkit

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

//go:embed manifest.schema.json
var manifestSchemaJSON []byte

// ManifestSchema returns the JSON Schema of manifest.json.
func ManifestSchema() []byte { return bytes.Clone(manifestSchemaJSON) }

var manifestSchema = func() *schema {
	s, err := compileSchema(manifestSchemaJSON)
	if err != nil {
		panic("appkit: manifest.schema.json: " + err.Error())
	}
	return s
}()

// ManifestName is the manifest's path at the root of a package.
const ManifestName = "manifest.json"

// Manifest is manifest.json, decoded after it passed the schema.
type Manifest struct {
	Schema           string   `json:"$schema,omitempty"`
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Version          string   `json:"version"`
	Type             string   `json:"type"`
	Description      string   `json:"description,omitempty"`
	Entry            string   `json:"entry"`
	Icon             string   `json:"icon"`
	Homepage         string   `json:"homepage,omitempty"`
	Capabilities     []string `json:"capabilities"`
	NetworkAllowlist []string `json:"network_allowlist"`
}

// parseManifest checks data against the schema and returns the manifest,
// or nil with the findings that explain why not. JSON with a repeated key
// is refused: two readers could each believe a different value.
func parseManifest(data []byte, add func(Finding)) *Manifest {
	bad := func(rule, ptr, msg string) {
		add(Finding{Rule: rule, Path: ManifestName + ptr, Severity: Error, Message: msg})
	}
	if err := checkJSON(data); err != nil {
		bad("manifest.json", "", err.Error())
		return nil
	}
	var v any
	json.Unmarshal(data, &v)
	ok := true
	manifestSchema.validate("#", v, func(ptr, msg string) {
		ok = false
		bad("manifest.schema", ptr, strings.TrimPrefix(ptr, "#/")+" "+msg)
	})
	if !ok {
		return nil
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		bad("manifest.json", "", err.Error())
		return nil
	}
	if m.Capabilities == nil {
		m.Capabilities = []string{}
	}
	if m.NetworkAllowlist == nil {
		m.NetworkAllowlist = []string{}
	}
	return &m
}

// checkJSON reports a syntax error, trailing data, or a repeated object key.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkJSON(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the top-level value")
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	if depth > 32 {
		return errors.New("invalid JSON: nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %v", err)
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("key %s appears twice in one object", strconv.Quote(key))
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	}
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	return nil
}

// has reports whether the manifest asks for capability c.
func (m *Manifest) has(c string) bool {
	for _, x := range m.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// compareVersions orders two semantic versions that passed the schema:
// -1, 0 or 1. A pre-release sorts before its release.
func compareVersions(a, b string) int {
	core := func(v string) ([3]int, string) {
		var out [3]int
		c, pre, _ := strings.Cut(v, "-")
		for i, p := range strings.SplitN(c, ".", 3) {
			out[i], _ = strconv.Atoi(p)
		}
		return out, pre
	}
	ca, pa := core(a)
	cb, pb := core(b)
	for i := range ca {
		if ca[i] != cb[i] {
			if ca[i] < cb[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case pa == pb:
		return 0
	case pa == "":
		return 1
	case pb == "":
		return -1
	case pa < pb:
		return -1
	}
	return 1
}
