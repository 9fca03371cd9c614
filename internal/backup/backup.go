// Package backup makes a consistent copy of a taosagent home while the
// daemon runs, and brings one back on a stopped daemon.
//
// A backup is a gzipped tar archive, mode 0600, whose first entry is its
// manifest. It holds the event log as SQLite's own consistent copy (VACUUM
// INTO, a snapshot at one instant, taken beside the running writer), and
// the home's other state as it is: the keys, the webhooks' and the notification
// channels' secrets, the Web Push keys and the token (0600, as they were), the agents' own directories, the Library, the
// MCP servers' state, the snapshots, the managed-host declaration, the
// record of each web app's served build and the recovery audit.
// What the daemon makes again by itself is left out: the instances' run
// directories (configs, logs, gateway keys, written at each start), the
// installed opencode and npm packages, and the records of running
// processes.
//
// Every file is read and written through os.Root: a link an agent planted
// in its directory is stored as a link and never followed, on either way.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/agenttree"
	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
)

// Format is the archive format this build writes and reads.
const Format = 1

// ManifestName is the archive's first entry.
const ManifestName = "taosagent-backup.json"

// Manifest says what an archive holds.
type Manifest struct {
	Format  int       `json:"format"`
	Version string    `json:"taosagent"` // the build that made it
	Schema  int64     `json:"schema"`    // the event log's
	Created time.Time `json:"created"`
	Head    int64     `json:"head"` // the last event in it
	// Home is the home's path when it was made. Restored at another path,
	// each agent starts a new conversation: opencode's sessions name
	// their directories by absolute path (Restore).
	Home string `json:"home"`
}

// included are the home's entries a backup holds (the database apart).
var included = []string{"token", "keys", "hooks", "notify", "vapid.json", "agents", "library", "mcp", "snapshots", "host.json", "spa", "recovery-audit.jsonl", "tui"}

// dbName is the event log's name in the archive.
const dbName = "taosagent.db"

// Make writes a backup of h to file, which must not exist (a 0600 file,
// written whole or not at all), and records it as the home's last backup.
func Make(ctx context.Context, h home.Home, file, version string) (Manifest, error) {
	if _, err := os.Lstat(file); err == nil {
		return Manifest{}, fmt.Errorf("%s exists: name a new file", file)
	}
	tmpDir, err := os.MkdirTemp(h.Dir, ".backup-")
	if err != nil {
		return Manifest{}, err
	}
	defer os.RemoveAll(tmpDir)
	copyPath := filepath.Join(tmpDir, dbName)
	if err := eventlog.Copy(ctx, h.DB(), copyPath); err != nil {
		return Manifest{}, err
	}
	// The copy's schema and head: what a restore brings back.
	cp, schema, err := eventlog.OpenReadOnly(copyPath)
	if err != nil {
		return Manifest{}, err
	}
	abs, _ := filepath.Abs(h.Dir)
	m := Manifest{Format: Format, Version: version, Schema: schema, Created: time.Now().UTC(), Head: cp.Head(), Home: abs}
	cp.Close()

	out, err := os.CreateTemp(filepath.Dir(file), ".taosagent-backup-")
	if err != nil {
		return Manifest{}, err
	}
	defer os.Remove(out.Name())
	if err := out.Chmod(0o600); err != nil {
		out.Close()
		return Manifest{}, err
	}
	gz := gzip.NewWriter(out)
	tw := tar.NewWriter(gz)
	werr := write(tw, h, m, copyPath)
	for _, c := range []io.Closer{tw, gz, out} {
		if err := c.Close(); err != nil && werr == nil {
			werr = err
		}
	}
	if werr != nil {
		return Manifest{}, werr
	}
	if err := os.Link(out.Name(), file); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", file, err)
	}
	b, _ := json.Marshal(lastBackup{File: file, Manifest: m})
	return m, atomicfile.Write(LastFile(h), b, 0o600)
}

// LastFile records the home's last backup: where, and its manifest.
func LastFile(h home.Home) string { return filepath.Join(h.Dir, "last-backup.json") }

type lastBackup struct {
	File string `json:"file"`
	Manifest
}

// Last is the home's last backup, if one was made.
func Last(h home.Home) (file string, m Manifest, ok bool) {
	b, err := os.ReadFile(LastFile(h))
	if err != nil {
		return "", Manifest{}, false
	}
	var l lastBackup
	if json.Unmarshal(b, &l) != nil {
		return "", Manifest{}, false
	}
	return l.File, l.Manifest, true
}

// write writes the manifest, the database's copy, and the included
// entries of the home.
func write(tw *tar.Writer, h home.Home, m Manifest, dbCopy string) error {
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(mb)), Typeflag: tar.TypeReg, ModTime: m.Created}); err != nil {
		return err
	}
	if _, err := tw.Write(mb); err != nil {
		return err
	}
	if err := addFile(tw, dbCopy, dbName); err != nil {
		return err
	}
	root, err := os.OpenRoot(h.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, name := range included {
		if _, err := root.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := agenttree.Archive(tw, root, name, name); err != nil {
			return fmt.Errorf("back up %s: %w", name, err)
		}
	}
	return nil
}

func addFile(tw *tar.Writer, file, name string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), Typeflag: tar.TypeReg, ModTime: st.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Restore brings the backup in file back into h, which must be empty or
// not exist yet, while no daemon runs on it (its lock is held throughout).
// An archive of a newer format or schema than this build knows is
// refused before anything is written. Restored at another path than the
// backup's home, each agent's pinned session is let go (moved reports
// it): opencode's sessions name the old path, and the agent's next
// message starts a new conversation; its events are all there.
func Restore(ctx context.Context, file string, h home.Home) (m Manifest, moved bool, err error) {
	m, err = restore(ctx, file, h)
	if err != nil {
		return m, false, err
	}
	if abs, _ := filepath.Abs(h.Dir); m.Home == "" || abs == m.Home {
		return m, false, nil
	}
	l, err := eventlog.Open(h.DB())
	if err != nil {
		return m, true, err
	}
	defer l.Close()
	as, err := l.Agents(ctx)
	if err != nil {
		return m, true, err
	}
	for _, a := range as {
		if err := l.SetSession(ctx, a.Name, ""); err != nil {
			return m, true, err
		}
	}
	return m, true, nil
}

func restore(ctx context.Context, file string, h home.Home) (Manifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s is not a taosagent backup: %w", file, err)
	}
	tr := tar.NewReader(gz)
	hd, err := tr.Next()
	if err != nil || hd.Name != ManifestName {
		return Manifest{}, fmt.Errorf("%s is not a taosagent backup: its first entry is not %s", file, ManifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: its manifest: %w", file, err)
	}
	switch {
	case m.Format > Format:
		return m, fmt.Errorf("%s is of backup format %d, newer than this taosagent knows (%d): restore it with a newer one", file, m.Format, Format)
	case m.Schema > eventlog.SchemaVersion:
		return m, fmt.Errorf("%s holds an event log of schema %d, newer than this taosagent knows (%d): restore it with a newer one", file, m.Schema, eventlog.SchemaVersion)
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return m, err
	}
	ents, err := os.ReadDir(h.Dir)
	if err != nil {
		return m, err
	}
	if len(ents) > 0 {
		return m, fmt.Errorf("%s is not empty: restore into a new home", h.Dir)
	}
	unlock, err := h.Lock()
	if err != nil {
		return m, err
	}
	defer unlock()
	root, err := os.OpenRoot(h.Dir)
	if err != nil {
		return m, err
	}
	defer root.Close()
	x := agenttree.Extractor{Root: root}
	for {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%s: %w", file, err)
		}
		name, ok := agenttree.EntryName(hd)
		if !ok || !(name == dbName || slices.Contains(included, strings.SplitN(name, "/", 2)[0])) {
			return m, fmt.Errorf("%s: an entry out of place: %q", file, hd.Name)
		}
		if err := x.Extract(tr, hd, name); err != nil {
			return m, fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return m, x.Finish()
}
