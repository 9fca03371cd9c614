// Package snapshot keeps copies of files before taosagent changes them:
// content-addressed objects under one directory, with the mode and owner
// each file had, so that a change can be undone. It needs no daemon and no
// database: the recovery CLI reads and restores the same store.
//
// Layout: DIR/objects/SHA256 holds contents (0600), DIR/index/ID.json one
// snapshot's record. Objects are shared by snapshots of equal contents.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
	"github.com/taosagent/taosagent/internal/randid"
)

// MaxSize is the largest file a snapshot takes.
const MaxSize = 16 << 20

// Snapshot is the record of one file at one moment.
type Snapshot struct {
	ID     string      `json:"id"`
	Path   string      `json:"path"`   // absolute
	Exists bool        `json:"exists"` // false: the file was absent (restore removes it)
	SHA256 string      `json:"sha256,omitempty"`
	Size   int64       `json:"size"`
	Mode   fs.FileMode `json:"mode"`
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	Time   time.Time   `json:"time"`
	Reason string      `json:"reason,omitempty"` // why it was taken, e.g. "before config_write"
	// Record is set for a record of something that is not a file (Path
	// then names it, "container:web"): kept to read, never restored.
	Record bool `json:"record,omitempty"`
}

// Store is a snapshot directory.
type Store struct{ Dir string }

var idPattern = regexp.MustCompile(`^snap-[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$`)

// ErrNotFound: no snapshot has that id.
var ErrNotFound = errors.New("snapshot not found")

// Take records path as it is now. A missing file is recorded as absent.
// A file larger than MaxSize, or not a regular file, is refused.
func (s Store) Take(path, reason string) (Snapshot, error) {
	if !filepath.IsAbs(path) {
		return Snapshot{}, fmt.Errorf("snapshot: %q is not an absolute path", path)
	}
	path = filepath.Clean(path)
	sn := Snapshot{ID: newID(), Path: path, Time: time.Now().UTC().Truncate(time.Millisecond), Reason: reason}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Snapshot{}, fmt.Errorf("snapshot: %w", err)
	default:
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return Snapshot{}, err
		}
		if !st.Mode().IsRegular() {
			return Snapshot{}, fmt.Errorf("snapshot: %s is not a regular file", path)
		}
		if st.Size() > MaxSize {
			return Snapshot{}, fmt.Errorf("snapshot: %s is larger than %d bytes", path, MaxSize)
		}
		b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
		if err != nil {
			return Snapshot{}, err
		}
		sn.Mode = st.Mode().Perm()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			sn.UID, sn.GID = int(sys.Uid), int(sys.Gid)
		}
		if err := s.store(&sn, b); err != nil {
			return Snapshot{}, err
		}
	}
	return sn, s.index(sn)
}

// Record keeps b as a snapshot of something that is not a file, called
// name ("container:web": its settings before a recipe changed it). Restore
// refuses it.
func (s Store) Record(name string, b []byte, reason string) (Snapshot, error) {
	if len(b) > MaxSize {
		return Snapshot{}, fmt.Errorf("snapshot: %s is larger than %d bytes", name, MaxSize)
	}
	sn := Snapshot{ID: newID(), Path: name, Time: time.Now().UTC().Truncate(time.Millisecond), Reason: reason, Record: true, Mode: 0o600}
	if err := s.store(&sn, b); err != nil {
		return Snapshot{}, err
	}
	return sn, s.index(sn)
}

// store keeps b as sn's contents.
func (s Store) store(sn *Snapshot, b []byte) error {
	sum := sha256.Sum256(b)
	sn.Exists, sn.SHA256, sn.Size = true, hex.EncodeToString(sum[:]), int64(len(b))
	obj := filepath.Join(s.Dir, "objects", sn.SHA256)
	if _, err := os.Stat(obj); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(obj), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(obj, b, 0o600)
}

// index writes sn's record.
func (s Store) index(sn Snapshot) error {
	meta, _ := json.MarshalIndent(sn, "", "  ")
	idx := filepath.Join(s.Dir, "index", sn.ID+".json")
	if err := os.MkdirAll(filepath.Dir(idx), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(idx, meta, 0o600)
}

// Get returns snapshot id.
func (s Store) Get(id string) (Snapshot, error) {
	if !idPattern.MatchString(id) {
		return Snapshot{}, fmt.Errorf("%w: %q is not a snapshot id", ErrNotFound, id)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, "index", id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Snapshot{}, err
	}
	var sn Snapshot
	if err := json.Unmarshal(b, &sn); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: a damaged record: %w", id, err)
	}
	return sn, nil
}

// Content returns what the file held when sn was taken, verified
// against its digest.
func (s Store) Content(sn Snapshot) ([]byte, error) {
	if !sn.Exists {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, "objects", sn.SHA256))
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != sn.SHA256 {
		return nil, fmt.Errorf("snapshot %s: its stored contents are damaged", sn.ID)
	}
	return b, nil
}

// List returns the snapshots of path ("" for every path), newest first.
func (s Store) List(path string) ([]Snapshot, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "index"))
	if errors.Is(err, fs.ErrNotExist) {
		return []Snapshot{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Snapshot{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		sn, err := s.Get(id)
		if err != nil {
			continue
		}
		if path == "" || sn.Path == filepath.Clean(path) {
			out = append(out, sn)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Restore puts snapshot id's file back, with its mode and owner, after
// taking a snapshot of the file as it is now (returned as before): a
// restore can itself be undone.
func (s Store) Restore(id string) (before Snapshot, err error) {
	sn, err := s.Get(id)
	if err != nil {
		return Snapshot{}, err
	}
	if sn.Record {
		return Snapshot{}, fmt.Errorf("snapshot %s is a record of %s, not of a file: it is kept to read, not restored", sn.ID, sn.Path)
	}
	b, err := s.Content(sn)
	if err != nil {
		return Snapshot{}, err
	}
	before, err = s.Take(sn.Path, "before restoring "+sn.ID)
	if err != nil {
		return Snapshot{}, err
	}
	if !sn.Exists {
		if err := os.Remove(sn.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return before, err
		}
		return before, nil
	}
	if err := atomicfile.Write(sn.Path, b, sn.Mode); err != nil {
		return before, err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(sn.Path, sn.UID, sn.GID); err != nil {
			return before, err
		}
	}
	return before, nil
}

// Write snapshots path, then replaces its contents with b (mode and owner
// kept; mode 0600 for a new file). It returns the snapshot.
func (s Store) Write(path string, b []byte, reason string) (Snapshot, error) {
	sn, err := s.Take(path, reason)
	if err != nil {
		return sn, err
	}
	mode := fs.FileMode(0o600)
	if sn.Exists {
		mode = sn.Mode
	}
	if err := atomicfile.Write(path, b, mode); err != nil {
		return sn, err
	}
	if sn.Exists && os.Geteuid() == 0 {
		if err := os.Lchown(path, sn.UID, sn.GID); err != nil {
			return sn, err
		}
	}
	return sn, nil
}

func newID() string {
	return "snap-" + time.Now().UTC().Format("20060102T150405") + "-" + randid.Hex(4)
}
