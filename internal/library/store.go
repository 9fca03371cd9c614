package library

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// Store is the Library on disk: DIR/KIND/NAME/DIGEST/ holds each version's
// files, DIR/KIND/NAME/current names the version agents get, and
// DIR/KIND/NAME/waiting the versions offered and not yet accepted (earlier
// versions stay, for what is pinned to them). Only the daemon writes it
// (0700, root's in a system install); a version is never changed once
// written.
type Store struct{ Dir string }

// Entry is an item in the Library: its current version and the versions
// waiting for a person to accept them.
type Entry struct {
	Item
	Pending []string `json:"pending,omitempty"` // digests
}

// ErrNotFound is an item or a waiting version the Library does not have.
var ErrNotFound = errors.New("not in the Library")

// Add stores it. A new item becomes current at once (a person added it);
// a new version of an item already there waits (pending) until a person
// accepts it, and agents keep the current one meanwhile. It reports
// whether it stored anything and whether the version is current.
func (s *Store) Add(it Item) (created, current bool, err error) {
	cur, _ := s.current(it.Kind, it.Name)
	if created, err = s.put(it); err != nil || !created {
		return created, err == nil && cur == it.Digest, err
	}
	if cur == "" {
		return true, true, s.setCurrent(it.Kind, it.Name, it.Digest)
	}
	return true, false, s.offer(it)
}

// MaxProposals is how many versions one proposer's proposals may leave
// waiting for a person at once: an agent that a prompt turned against its
// person cannot bury the Library's review under proposals.
const MaxProposals = 16

// ErrTooManyProposals is a proposal past MaxProposals.
var ErrTooManyProposals = fmt.Errorf("%d of its proposals already wait for a person; one more waits until a person accepts or removes some", MaxProposals)

// Propose stores it, proposed by by (an agent's name), as a version that
// waits for a person, whether or not the item is there yet: what an agent
// offers (library_propose) reaches no agent until a person accepts it. At
// most MaxProposals of by's proposals wait at once (ErrTooManyProposals).
// It reports whether it stored anything.
func (s *Store) Propose(it Item, by string) (created bool, err error) {
	if !nameRE.MatchString(by) {
		by = "-" // not an agent's name: one bucket for all such
	}
	ref := it.Ref() + "@" + it.Digest
	mine := s.proposedWaiting(by)
	if !slices.Contains(mine, ref) && len(mine) >= MaxProposals {
		return false, ErrTooManyProposals
	}
	if created, err = s.put(it); err != nil {
		return false, err
	}
	if err := s.offer(it); err != nil {
		return created, err
	}
	if !slices.Contains(mine, ref) {
		mine = append(mine, ref)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, proposalsDir), 0o700); err != nil {
		return created, err
	}
	return created, atomicfile.Write(filepath.Join(s.Dir, proposalsDir, by), []byte(strings.Join(mine, "\n")+"\n"), 0o600)
}

// proposalsDir holds, per proposer, its proposals ("kind/name@digest").
const proposalsDir = ".proposals"

// proposedWaiting is by's proposals that still wait for a person.
func (s *Store) proposedWaiting(by string) []string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, proposalsDir, by))
	var out []string
	for _, ref := range strings.Fields(string(b)) {
		r, digest, _ := strings.Cut(ref, "@")
		kind, name, _ := strings.Cut(r, "/")
		if slices.Contains(s.waiting(Kind(kind), name), digest) {
			out = append(out, ref)
		}
	}
	return out
}

// put writes it's version directory, unless it is there; it reports
// whether it wrote it.
func (s *Store) put(it Item) (bool, error) {
	if it.Digest == "" {
		return false, errors.New("library: an item that was not checked")
	}
	dir := s.itemDir(it.Kind, it.Name)
	vdir := filepath.Join(dir, it.Digest)
	if _, err := os.Stat(vdir); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	tmp, err := os.MkdirTemp(dir, ".add-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	for _, p := range it.Paths {
		f := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return false, err
		}
		if err := os.WriteFile(f, it.Files[p], 0o600); err != nil {
			return false, err
		}
	}
	return true, os.Rename(tmp, vdir)
}

// offer adds it to the versions of its item that wait.
func (s *Store) offer(it Item) error {
	w := s.waiting(it.Kind, it.Name)
	if slices.Contains(w, it.Digest) {
		return nil
	}
	return s.setWaiting(it.Kind, it.Name, append(w, it.Digest))
}

// waiting is kind/name's versions that wait for a person, oldest first.
func (s *Store) waiting(kind Kind, name string) []string {
	if !slices.Contains(Kinds, kind) || !nameRE.MatchString(name) {
		return nil
	}
	b, _ := os.ReadFile(filepath.Join(s.itemDir(kind, name), "waiting"))
	var out []string
	for _, d := range strings.Fields(string(b)) {
		if hexRE(d) {
			out = append(out, d)
		}
	}
	return out
}

func (s *Store) setWaiting(kind Kind, name string, ds []string) error {
	return atomicfile.Write(filepath.Join(s.itemDir(kind, name), "waiting"), []byte(strings.Join(ds, "\n")+"\n"), 0o600)
}

// Accept makes the waiting version digest of kind/name current.
func (s *Store) Accept(kind Kind, name, digest string) error {
	w := s.waiting(kind, name)
	if !slices.Contains(w, digest) {
		return fmt.Errorf("%s/%s@%.12s: %w", kind, name, digest, ErrNotFound)
	}
	if _, err := s.Version(kind, name, digest); err != nil {
		return err
	}
	if err := s.setCurrent(kind, name, digest); err != nil {
		return err
	}
	return s.setWaiting(kind, name, slices.DeleteFunc(w, func(d string) bool { return d == digest }))
}

// Get returns kind/name's current version.
func (s *Store) Get(kind Kind, name string) (Item, error) {
	cur, err := s.current(kind, name)
	if err != nil {
		return Item{}, err
	}
	return s.Version(kind, name, cur)
}

// Version returns version digest of kind/name, checked again as it is
// read (a version on disk is data like any other).
func (s *Store) Version(kind Kind, name, digest string) (Item, error) {
	if !slices.Contains(Kinds, kind) || !nameRE.MatchString(name) || !hexRE(digest) {
		return Item{}, fmt.Errorf("%s/%s@%s: %w", kind, name, digest, ErrNotFound)
	}
	files, err := Read(filepath.Join(s.itemDir(kind, name), digest))
	if errors.Is(err, fs.ErrNotExist) {
		return Item{}, fmt.Errorf("%s/%s@%.12s: %w", kind, name, digest, ErrNotFound)
	}
	if err != nil {
		return Item{}, err
	}
	it, err := Check(files)
	if err != nil {
		return Item{}, err
	}
	if it.Digest != digest {
		return Item{}, fmt.Errorf("library: %s/%s@%.12s holds other content (%.12s)", kind, name, digest, it.Digest)
	}
	return it, nil
}

// Entry is kind/name's current version with the versions that wait.
func (s *Store) Entry(kind Kind, name string) (Entry, error) {
	if !slices.Contains(Kinds, kind) || !nameRE.MatchString(name) {
		return Entry{}, fmt.Errorf("%s/%s: %w", kind, name, ErrNotFound)
	}
	w := s.waiting(kind, name)
	it, err := s.Get(kind, name)
	if errors.Is(err, ErrNotFound) && len(w) > 0 {
		// Only proposed: no version is current yet.
		return Entry{Item: Item{Manifest: Manifest{Kind: kind, Name: name}}, Pending: w}, nil
	}
	if err != nil {
		return Entry{}, err
	}
	return Entry{Item: it, Pending: w}, nil
}

// List is every item, by kind then name, with the versions that wait.
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	for _, k := range Kinds {
		names, err := os.ReadDir(filepath.Join(s.Dir, string(k)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !n.IsDir() || !nameRE.MatchString(n.Name()) {
				continue
			}
			e, err := s.Entry(k, n.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// Remove removes kind/name and every version of it.
func (s *Store) Remove(kind Kind, name string) error {
	if _, err := s.current(kind, name); err != nil && (!errors.Is(err, ErrNotFound) || len(s.waiting(kind, name)) == 0) {
		return err // current() refuses a kind or name out of the store
	}
	return os.RemoveAll(s.itemDir(kind, name))
}

func (s *Store) itemDir(kind Kind, name string) string {
	return filepath.Join(s.Dir, string(kind), name)
}

func (s *Store) current(kind Kind, name string) (string, error) {
	if !slices.Contains(Kinds, kind) || !nameRE.MatchString(name) {
		return "", fmt.Errorf("%s/%s: %w", kind, name, ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(s.itemDir(kind, name), "current"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s/%s: %w", kind, name, ErrNotFound)
	}
	d := strings.TrimSpace(string(b))
	if err == nil && !hexRE(d) {
		err = fmt.Errorf("library: %s/%s: its current version is unreadable", kind, name)
	}
	return d, err
}

func (s *Store) setCurrent(kind Kind, name, digest string) error {
	return atomicfile.Write(filepath.Join(s.itemDir(kind, name), "current"), []byte(digest+"\n"), 0o600)
}

func hexRE(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Read reads the item in dir: regular files only, through an os.Root (no
// path out of dir), at most MaxFiles of them and MaxBytes in all; a link,
// a device or anything else that is not a plain file or directory is
// refused by name.
func Read(dir string) (map[string][]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	files := map[string][]byte{}
	var total int64
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case p == ".":
			return nil
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return &Invalid{[]Finding{{Rule: "item.link", Path: p, Message: "not a regular file (a link, a device…): an item holds plain files only"}}}
		case len(files) >= MaxFiles:
			return &Invalid{[]Finding{{Rule: "item.files", Message: fmt.Sprintf("more than %d files", MaxFiles)}}}
		}
		b, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		if total += int64(len(b)); total > MaxBytes {
			return &Invalid{[]Finding{{Rule: "item.size", Message: fmt.Sprintf("more than %d bytes", MaxBytes)}}}
		}
		files[p] = b
		return nil
	})
	return files, err
}

// Template is the agent template ref names ("agent/NAME", its current
// version, or "agent/NAME@digest"), pinned, and its persona: agent.md
// without its front matter.
func (s *Store) Template(ref string) (Item, Pin, string, error) {
	p, err := parsePin(ref)
	if err == nil && p.Kind != Agent {
		err = fmt.Errorf("%q is not an agent template (agent/NAME)", ref)
	}
	if err != nil {
		return Item{}, Pin{}, "", err
	}
	it, p, err := s.pin(p)
	if err != nil {
		return Item{}, Pin{}, "", err
	}
	persona := strings.ReplaceAll(string(it.Files["agent.md"]), "\r\n", "\n")
	if rest, ok := strings.CutPrefix(persona, "---\n"); ok {
		if _, body, ok := strings.Cut(rest, "\n---\n"); ok {
			persona = body
		}
	}
	return it, p, strings.TrimSpace(persona), nil
}

// Resolve pins ref ("kind/name", or "kind/name@digest"): an unpinned ref
// to the version current now; a pinned one must be a version the Library
// holds.
func (s *Store) Resolve(ref string) (Pin, error) {
	p, err := ParseRef(ref)
	if err != nil {
		return Pin{}, err
	}
	_, p, err = s.pin(p)
	return p, err
}

// pin is p pinned (an unpinned p to the version current now) and that
// version, read back and checked.
func (s *Store) pin(p Pin) (Item, Pin, error) {
	if p.Digest == "" {
		var err error
		if p.Digest, err = s.current(p.Kind, p.Name); err != nil {
			return Item{}, Pin{}, fmt.Errorf("%s: %w", p, ErrNotFound)
		}
	}
	it, err := s.Version(p.Kind, p.Name, p.Digest)
	return it, p, err
}
