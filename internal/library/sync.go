package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// A git repository a person names is a source of items: a sync pulls it
// (never pushes) and offers each item in it whose version the Library
// does not have as a version that waits for a person, exactly as an
// update added by hand does. Nothing of the repository becomes current,
// or reaches an agent, until a person accepts it.

// Bounds of one sync.
const (
	MaxSyncItems = 256
	maxSyncDepth = 6
	syncTimeout  = 2 * time.Minute
)

// Source is a repository the Library syncs from.
type Source struct {
	URL    string    `json:"url"`
	Ref    string    `json:"ref,omitempty"`    // a branch or tag; "": the default branch
	Commit string    `json:"commit,omitempty"` // the last one synced
	Synced time.Time `json:"synced,omitzero"`
}

// SyncResult is what one sync found at a commit.
type SyncResult struct {
	Source Source `json:"source"`
	// Offered are the versions the sync stored, each waiting for a person
	// ("kind/name@digest"); Unchanged counts the items whose version the
	// Library had.
	Offered   []string `json:"offered"`
	Unchanged int      `json:"unchanged"`
	// Refused are the directories with a manifest that are not a valid
	// item, and why: nothing of them is stored.
	Refused []SyncRefusal `json:"refused"`
}

// SyncRefusal is one directory of a repository that is not a valid item.
type SyncRefusal struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// CheckSource checks a repository's URL and ref: https, http or file URLs
// (or an absolute path), and a ref that is a plain branch or tag name.
func CheckSource(rawURL, ref string) error {
	if strings.HasPrefix(rawURL, "/") {
		rawURL = "file://" + rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil || !slices.Contains([]string{"https", "http", "file"}, u.Scheme) || (u.Scheme != "file" && u.Host == "") {
		return fmt.Errorf("url %q: an https, http or file URL (or an absolute path) of a git repository", rawURL)
	}
	if ref != "" && (strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t\n:\\~^?*[") || strings.Contains(ref, "..") || len(ref) > 200) {
		return fmt.Errorf("ref %q: a branch or tag name", ref)
	}
	return nil
}

// Sync pulls the repository at rawURL (ref: a branch or tag, "" for the
// default) and offers its items: every directory (to depth 6) that holds
// item.json is read and checked as `library add` would; a valid item
// whose version is new is stored as a version that waits (Offer), a
// refused one is named with why. git runs as the daemon with no
// configuration but its own, no hooks, no submodules and no terminal.
func (s *Store) Sync(ctx context.Context, rawURL, ref string) (SyncResult, error) {
	if err := CheckSource(rawURL, ref); err != nil {
		return SyncResult{}, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return SyncResult{}, err
	}
	tmp, err := os.MkdirTemp(s.Dir, ".sync-")
	if err != nil {
		return SyncResult{}, err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	clone := filepath.Join(tmp, "repo")
	args := []string{"-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never", "-c", "core.symlinks=false",
		"clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", "--no-recurse-submodules"}
	if ref != "" {
		args = append(args, "--branch", ref)
	}
	if _, err := git(ctx, "", append(args, "--", rawURL, clone)...); err != nil {
		return SyncResult{}, err
	}
	commit, err := git(ctx, clone, "rev-parse", "HEAD")
	if err != nil {
		return SyncResult{}, err
	}
	res := SyncResult{Source: Source{URL: rawURL, Ref: ref, Commit: commit, Synced: time.Now().UTC()}, Offered: []string{}, Refused: []SyncRefusal{}}
	var dirs []string
	err = filepath.WalkDir(clone, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(clone, p)
		switch {
		case d.IsDir() && (d.Name() == ".git" || strings.Count(filepath.ToSlash(rel), "/") >= maxSyncDepth):
			return fs.SkipDir
		case !d.IsDir() && d.Name() == ManifestFile && d.Type().IsRegular():
			dirs = append(dirs, filepath.Dir(p))
		}
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	if len(dirs) > MaxSyncItems {
		return SyncResult{}, fmt.Errorf("the repository holds %d items, more than %d", len(dirs), MaxSyncItems)
	}
	for _, dir := range dirs {
		rel, _ := filepath.Rel(clone, dir)
		rel = path.Clean(filepath.ToSlash(rel))
		files, err := Read(dir)
		var it Item
		if err == nil {
			it, err = Check(files)
		}
		if err != nil {
			res.Refused = append(res.Refused, SyncRefusal{Path: rel, Error: err.Error()})
			continue
		}
		stored, err := s.Offer(it)
		if err != nil {
			return res, err
		}
		if stored {
			res.Offered = append(res.Offered, it.Ref()+"@"+it.Digest)
		} else {
			res.Unchanged++
		}
	}
	return res, s.recordSource(res.Source)
}

// Offer stores it as a version that waits for a person, unless the
// Library has that version already (current, waiting or once accepted);
// it reports whether it stored it.
func (s *Store) Offer(it Item) (bool, error) {
	created, err := s.put(it)
	if err != nil || !created {
		return false, err
	}
	return true, s.offer(it)
}

// sourcesFile records the repositories synced from.
const sourcesFile = ".sources.json"

// Sources are the repositories the Library has synced from.
func (s *Store) Sources() ([]Source, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, sourcesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return []Source{}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Source
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("library sources: %w", err)
	}
	return out, nil
}

func (s *Store) recordSource(src Source) error {
	all, err := s.Sources()
	if err != nil {
		return err
	}
	all = slices.DeleteFunc(all, func(o Source) bool { return o.URL == src.URL && o.Ref == src.Ref })
	all = append(all, src)
	b, _ := json.MarshalIndent(all, "", "  ")
	return atomicfile.Write(filepath.Join(s.Dir, sourcesFile), append(b, '\n'), 0o600)
}

// git runs git in dir with none of the host's or the user's configuration
// and no prompt, and returns its output, trimmed.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false",
		"GIT_SSH_COMMAND=false", "GIT_LFS_SKIP_SMUDGE=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return "", fmt.Errorf("git: %v: %s", err, msg)
	}
	return strings.TrimSpace(string(out)), nil
}
