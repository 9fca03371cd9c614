package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// Keys keeps provider keys as files of mode 0600 in Dir (mode 0700), one
// per provider, apart from the database: a copy of the database holds no
// secret.
type Keys struct{ Dir string }

func (k Keys) path(id string) string { return filepath.Join(k.Dir, id+".key") }

// Put stores the key of provider id; an empty key removes it.
func (k Keys) Put(id, key string) error {
	if key == "" {
		return k.Delete(id)
	}
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(k.path(id), []byte(key), 0o600)
}

// Get returns the key of provider id, "" if it has none.
func (k Keys) Get(id string) (string, error) {
	b, err := os.ReadFile(k.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// Delete removes the key of provider id.
func (k Keys) Delete(id string) error {
	err := os.Remove(k.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// All returns every stored key, for redaction.
func (k Keys) All() []string { return k.AllBut("") }

// AllBut returns every stored key but those whose id begins with prefix
// ("": none left out).
func (k Keys) AllBut(prefix string) []string {
	ents, _ := os.ReadDir(k.Dir)
	var out []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".key"); ok && (prefix == "" || !strings.HasPrefix(id, prefix)) {
			if key, err := k.Get(id); err == nil && key != "" {
				out = append(out, key)
			}
		}
	}
	return out
}

// UpstreamKeyID is the id under which Keys holds agent name's own key at
// its provider (Agent.UpstreamKey). Provider ids hold no '.', so it never
// names a provider's key.
func UpstreamKeyID(name string) string { return "agent." + name }

// MCPTokenID is the key id under which agent name's token to taosagent's
// MCP server is kept (no provider id has a dot).
func MCPTokenID(name string) string { return MCPTokenPrefix + name }

// MCPSecretID is where the value of secret env of the Library's MCP
// server name is kept: given to that server's process only.
func MCPSecretID(name, env string) string { return "mcpsecret." + name + "." + env }

// MCPTokenPrefix begins every MCPTokenID.
const MCPTokenPrefix = "mcp."
