package eventlog_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/eventlog/storetest"
)

// The SQLite log keeps the store's contract.
func TestTheStoreContract(t *testing.T) {
	t.Parallel()
	var dirs sync.Map // a test → its directory
	storetest.Run(t, func(t testing.TB, name string) eventlog.Store {
		t.Helper()
		dir, _ := dirs.LoadOrStore(t, t.TempDir())
		if name == "" {
			name = "db-" + filepath.Base(t.TempDir())
		}
		l, err := eventlog.Open(filepath.Join(dir.(string), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	})
}
