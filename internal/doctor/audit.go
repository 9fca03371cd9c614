package doctor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
)

// AppendAudit appends e to the home's recovery audit: a file of JSON lines
// (mode 0600), written and synced before and after each step, that needs
// no database (which may be the broken thing). The daemon merges it into
// its audit when it starts (ImportAudit).
func AppendAudit(h home.Home, e eventlog.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(h.RecoveryAudit(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return err
	}
	return f.Sync()
}

// ImportAudit copies the recovery audit's entries the daemon has not seen
// yet into its audit (GET /v1/audit), and remembers how far it got. It
// returns how many it imported.
func ImportAudit(ctx context.Context, h home.Home, log eventlog.AuditTrail) (int, error) {
	mark := h.RecoveryAudit() + ".imported"
	var done int64
	if b, err := os.ReadFile(mark); err == nil {
		done, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	f, err := os.Open(h.RecoveryAudit())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < done {
		done = 0 // the file was replaced
	}
	if _, err := f.Seek(done, 0); err != nil {
		return 0, err
	}
	n := 0
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial last line waits for its end
		}
		done += int64(len(line))
		var e eventlog.AuditEntry
		if json.Unmarshal(line, &e) == nil {
			e.ID = 0
			if err := log.Audit(ctx, e); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, atomicfile.Write(mark, []byte(strconv.FormatInt(done, 10)+"\n"), 0o600)
}
