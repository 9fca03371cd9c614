package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/event"
)

// The recovery tools read the database without changing it: no
// migration, no write, not even of the file's bytes.
func TestOpenReadOnlyChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taosagent.db")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}}})
	l.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}})
	e := event.New("s", event.Delta, time.Now(), event.DeltaData{Text: "x"})
	e.Agent = "a"
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	l.Close()
	before, _ := os.ReadFile(path)

	ro, version, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if version != SchemaVersion || ro.Head() != 1 {
		t.Errorf("version %d head %d", version, ro.Head())
	}
	if as, err := ro.Agents(ctx); err != nil || len(as) != 1 {
		t.Errorf("agents %v %v", as, err)
	}
	if _, err := ro.Append(ctx, e); !errors.Is(err, ErrReadOnly) {
		t.Errorf("append: %v", err)
	}
	if err := ro.Audit(ctx, AuditEntry{Actor: "x"}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("audit: %v", err)
	}
	ro.Close()
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the database file changed")
	}
	if _, _, err := OpenReadOnly(filepath.Join(t.TempDir(), "none.db")); err == nil {
		t.Error("a missing file opened")
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, []byte("not a database"), 0o600)
	if _, _, err := OpenReadOnly(junk); err == nil {
		t.Error("junk opened")
	}
}

// SchemaVersion is the newest migration's: a build that wrote a newer
// schema than it says would refuse its own database's backups and its
// read-only opens.
func TestSchemaVersionIsTheNewestMigration(t *testing.T) {
	ents, err := migrations.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	newest := 0
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "%05d_", &n); err == nil && n > newest {
			newest = n
		}
	}
	if newest == 0 || int64(newest) != SchemaVersion {
		t.Fatalf("SchemaVersion is %d, the newest migration %d", SchemaVersion, newest)
	}
}
