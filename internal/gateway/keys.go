package gateway

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
)

// Keyring issues agents' gateway keys. The database holds each key's hash;
// the key itself is written into the daemon's directory of the agent's
// instance (home.Home.Instance, 0600), outside the agent's tree, and
// from there into its opencode config: it is the agent's own identity, in
// its reach by design, and worth nothing beyond its permitted models.
type Keyring struct {
	Log  eventlog.Metering
	Home home.Home
	// Issued, when set, is told after each new key (the gateway forgets
	// the old one: Gateway.Invalidate).
	Issued func()
	mu     sync.Mutex
}

func (k *Keyring) file(agent string) string {
	return filepath.Join(k.Home.Instance(agent), "gateway.key")
}

// Ensure returns agent's current key, issuing one when it has none (or
// its file no longer matches the recorded hash).
func (k *Keyring) Ensure(ctx context.Context, agent string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	want, err := k.Log.AgentKey(ctx, agent)
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile(k.file(agent)); err == nil && want != "" && Hash(strings.TrimSpace(string(b))) == want {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return k.issue(ctx, agent)
}

// Rotate issues agent a new key; the old one stops working at once.
func (k *Keyring) Rotate(ctx context.Context, agent string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issue(ctx, agent)
}

func (k *Keyring) issue(ctx context.Context, agent string) (string, error) {
	key, hash := NewKey()
	if err := os.MkdirAll(k.Home.Instance(agent), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.Write(k.file(agent), []byte(key+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := k.Log.SetAgentKey(ctx, agent, hash); err != nil {
		return "", err
	}
	if k.Issued != nil {
		k.Issued()
	}
	return key, nil
}
