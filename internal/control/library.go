package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/home"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/opencode"
)

// LibraryItem is an item as a person reviews it: its current version and
// each version that waits, with the diff from the current one.
type LibraryItem struct {
	library.Entry
	Files   map[string]string `json:"content"` // the current version's files
	Waiting []LibraryVersion  `json:"waiting,omitempty"`
	// Secrets are the secrets an mcp item's current version names, and
	// whether each is set (never its value).
	Secrets map[string]bool `json:"secrets,omitempty"`
	// Note is what a person must know before giving the item (its kind's:
	// library.Kind.Note), shown with it wherever it is shown.
	Note string `json:"note,omitempty"`
}

// LibraryVersion is a version of an item that waits for a person.
type LibraryVersion struct {
	Digest string `json:"digest"`
	Diff   string `json:"diff"`
}

func (s *Service) library() *library.Store {
	return &library.Store{Dir: home.Home{Dir: s.Home}.Library()}
}

// LibraryAdd checks files as an item and stores it: a new item is current
// at once; a new version of one waits for a person (LibraryAccept). A
// person only: what an agent offers is a proposal (LibraryPropose).
func (s *Service) LibraryAdd(ctx context.Context, a Actor, files map[string][]byte) (it library.Item, created, current bool, err error) {
	it, cerr := library.Check(files)
	c := Call{Actor: a, Tool: "library.add", Target: it.Ref(), Args: map[string]string{"item": it.Ref(), "digest": it.Digest}}
	switch {
	case !a.Person():
		return it, false, false, s.Refuse(ctx, c, fmt.Errorf("%w: only a person adds to the Library; %s cannot", ErrForbidden, a))
	case cerr != nil:
		return it, false, false, s.Refuse(ctx, c, Invalidf("%v", cerr))
	}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := s.installPackage(ctx, it); err != nil {
			return "", err
		}
		created, current, err = s.library().Add(it)
		return "", err
	})
	return it, created, current, err
}

// LibrarySync pulls the git repository at url (ref: a branch or tag, ""
// for the default) and offers each of its items whose version is new as a
// version that waits for a person (library.Store.Sync): nothing of it
// reaches an agent before a person accepts it. A person only; audited,
// refusals too.
func (s *Service) LibrarySync(ctx context.Context, a Actor, url, ref string) (res library.SyncResult, err error) {
	c := Call{Actor: a, Tool: "library.sync", Target: url, Args: map[string]string{"url": url, "ref": ref}}
	switch err := library.CheckSource(url, ref); {
	case !a.Person():
		return res, s.Refuse(ctx, c, fmt.Errorf("%w: only a person names the Library's sources; %s cannot", ErrForbidden, a))
	case err != nil:
		return res, s.Refuse(ctx, c, Invalidf("%v", err))
	}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		if res, err = s.library().Sync(ctx, url, ref); err != nil {
			return "", Invalidf("%v", err)
		}
		return fmt.Sprintf("commit %s: %d offered, %d unchanged, %d refused", res.Source.Commit, len(res.Offered), res.Unchanged, len(res.Refused)), nil
	})
	return res, err
}

// LibrarySources are the repositories the Library has synced from.
func (s *Service) LibrarySources() ([]library.Source, error) { return s.library().Sources() }

// installPackage installs the npm package it needs: a local MCP server's,
// or a tool's imports (opencode.PluginPackage).
func (s *Service) installPackage(ctx context.Context, it library.Item) error {
	if s.Packages == nil {
		return nil
	}
	switch {
	case it.Kind == library.Tool:
		if err := s.Packages(ctx, opencode.PluginPackage, nil); err != nil {
			return Invalidf("a tool imports %s, which could not be installed: %v", opencode.PluginPackage, err)
		}
	case it.MCP != nil && it.MCP.Package != "":
		var lock []byte
		if b, ok := it.Files[library.LockFile]; ok {
			lock = b
		}
		if err := s.Packages(ctx, it.MCP.Package, lock); err != nil {
			return Invalidf("mcp.package: %v", err)
		}
	}
	return nil
}

// LibraryPropose checks files as an item and stores it as a version that
// waits for a person, a new item too (library.Store.Propose): what an
// agent offers is data until a person accepts it, and no agent gets it
// before someone pins it. Audited, refusals too.
func (s *Service) LibraryPropose(ctx context.Context, a Actor, files map[string][]byte) (it library.Item, created bool, err error) {
	it, cerr := library.Check(files)
	c := Call{Actor: a, Tool: "library.propose", Target: it.Ref(), Args: map[string]string{"item": it.Ref(), "digest": it.Digest}}
	if cerr != nil {
		return it, false, s.Refuse(ctx, c, Invalidf("%v", cerr))
	}
	err = s.Do(ctx, c, func(ctx context.Context) (string, error) {
		created, err = s.library().Propose(it, a.Name)
		if errors.Is(err, library.ErrTooManyProposals) {
			return "", Invalidf("%s: %v", a, err)
		}
		return "", err
	})
	return it, created, err
}

// Library lists the Library's items.
func (s *Service) Library() ([]library.Entry, error) {
	es, err := s.library().List()
	if es == nil {
		es = []library.Entry{}
	}
	return es, err
}

// LibraryShow is kind/name for review: its files and each waiting version's
// diff from the current one.
func (s *Service) LibraryShow(kind library.Kind, name string) (LibraryItem, error) {
	st := s.library()
	e, err := st.Entry(kind, name)
	if err != nil {
		return LibraryItem{}, err
	}
	out := LibraryItem{Entry: e, Files: map[string]string{}, Note: e.Kind.Note()}
	if e.MCP != nil {
		for _, n := range append(slices.Clone(e.MCP.Env), e.MCP.Headers...) {
			if out.Secrets == nil {
				out.Secrets = map[string]bool{}
			}
			v, _ := s.Keys.Get(agent.MCPSecretID(name, n))
			out.Secrets[n] = v != ""
		}
	}
	for p, b := range e.Files {
		out.Files[p] = string(b)
	}
	for _, d := range e.Pending {
		v, err := st.Version(kind, name, d)
		if err != nil {
			return LibraryItem{}, err
		}
		out.Waiting = append(out.Waiting, LibraryVersion{Digest: d, Diff: library.Diff(e.Item, v)})
	}
	return out, nil
}

// LibraryAccept makes a waiting version of kind/name current: what an
// agent given kind/name unpinned gets from now on (an agent pinned to
// another version keeps it until its pin is moved). A destructive change:
// a person's.
func (s *Service) LibraryAccept(ctx context.Context, a Actor, kind library.Kind, name, digest string) error {
	return s.Do(ctx, Call{Actor: a, Tool: "library.accept", Target: string(kind) + "/" + name, Args: map[string]string{"item": string(kind) + "/" + name, "digest": digest}},
		func(ctx context.Context) (string, error) {
			if it, err := s.library().Version(kind, name, digest); err == nil {
				if err := s.installPackage(ctx, it); err != nil {
					return "", err
				}
			}
			return "", s.library().Accept(kind, name, digest)
		})
}

// LibrarySecret sets (value "": removes) the secret env of the mcp item
// name, one its current version names: kept by taosagent (0600), given to
// that server's process only, never shown again, never in an event or the
// audit (which names the secret, not its value). A person's; the agents
// given the server start afresh (as after a change of theirs), and the
// server with them.
func (s *Service) LibrarySecret(ctx context.Context, a Actor, name, env, value string) error {
	ref := string(library.MCP) + "/" + name
	c := Call{Actor: a, Tool: "library.secret", Target: ref, Args: map[string]string{"item": ref, "secret": env, "set": fmt.Sprint(value != "")}}
	if !a.Person() {
		return s.Refuse(ctx, c, fmt.Errorf("%w: only a person sets a server's secrets; %s cannot", ErrForbidden, a))
	}
	e, err := s.library().Entry(library.MCP, name)
	if err != nil {
		return s.Refuse(ctx, c, err)
	}
	if e.MCP == nil || !slices.Contains(append(slices.Clone(e.MCP.Env), e.MCP.Headers...), env) {
		return s.Refuse(ctx, c, Invalidf("%s names no secret %q", ref, env))
	}
	if len(value) > 16<<10 || strings.ContainsAny(value, "\x00\r\n") {
		return s.Refuse(ctx, c, Invalidf("value: at most 16 KiB, one line"))
	}
	return s.Do(ctx, c, func(ctx context.Context) (string, error) {
		if err := s.Keys.Put(agent.MCPSecretID(name, env), value); err != nil {
			return "", errors.New("the secret could not be stored")
		}
		// Its agents start afresh at their next input, as after any
		// change of theirs: opencode connects to the server again.
		users, err := s.givenTo(ctx, library.MCP, name)
		for _, u := range users {
			s.Runner.Forget(u)
		}
		return "", err
	})
}

// givenTo names the agents given kind/name, at any version.
func (s *Service) givenTo(ctx context.Context, kind library.Kind, name string) ([]string, error) {
	agents, err := s.Log.Agents(ctx)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, ag := range agents {
		for _, pin := range ag.Library {
			if p, err := library.ParseRef(pin); err == nil && p.Kind == kind && p.Name == name {
				users = append(users, ag.Name)
			}
		}
	}
	return users, nil
}

// LibraryRemove removes kind/name and its versions. Destructive. Refused
// (in use) while an agent is given it: its next start would fail.
func (s *Service) LibraryRemove(ctx context.Context, a Actor, kind library.Kind, name string) error {
	ref := string(kind) + "/" + name
	return s.Do(ctx, Call{Actor: a, Tool: "library.remove", Target: ref, Args: map[string]string{"item": ref}},
		func(ctx context.Context) (string, error) {
			s.agentMu.Lock() // no agent is given it meanwhile
			defer s.agentMu.Unlock()
			users, err := s.givenTo(ctx, kind, name)
			if err != nil {
				return "", err
			}
			if len(users) > 0 {
				return "", fmt.Errorf("%s is given to agents %s; take it from them first (PATCH their library): %w", ref, strings.Join(users, ", "), eventlog.ErrInUse)
			}
			return "", s.library().Remove(kind, name)
		})
}
