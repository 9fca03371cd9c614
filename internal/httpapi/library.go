package httpapi

import (
	"net/http"

	"github.com/taosagent/taosagent/internal/library"
)

// libraryInput is an item as a client sends it: its files, text, by path.
type libraryInput struct {
	Files map[string]string `json:"files"`
}

// libraryAdded is the answer to an item added.
type libraryAdded struct {
	Item    library.Item `json:"item"`
	Created bool         `json:"created"` // false: that very version was there already
	Current bool         `json:"current"` // false: a new version, waiting for a person to accept it
}

func (s *Server) addLibraryItem(w http.ResponseWriter, r *http.Request) {
	var b libraryInput
	if !s.decode(w, r, &b) {
		return
	}
	files := map[string][]byte{}
	for p, c := range b.Files {
		files[p] = []byte(c)
	}
	it, created, current, err := s.Control.LibraryAdd(r.Context(), actor(r), files)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, libraryAdded{Item: it, Created: created, Current: current})
}

// librarySyncInput names a git repository to sync the Library from.
type librarySyncInput struct {
	URL string `json:"url"`
	Ref string `json:"ref"`
}

func (s *Server) syncLibrary(w http.ResponseWriter, r *http.Request) {
	var b librarySyncInput
	if !s.decode(w, r, &b) {
		return
	}
	res, err := s.Control.LibrarySync(r.Context(), actor(r), b.URL, b.Ref)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) librarySources(w http.ResponseWriter, r *http.Request) {
	srcs, err := s.Control.LibrarySources()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": srcs})
}

func (s *Server) listLibrary(w http.ResponseWriter, r *http.Request) {
	es, err := s.Control.Library()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": es})
}

func (s *Server) showLibraryItem(w http.ResponseWriter, r *http.Request) {
	it, err := s.Control.LibraryShow(library.Kind(r.PathValue("kind")), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (s *Server) acceptLibraryItem(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Digest string `json:"digest"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	kind, name := library.Kind(r.PathValue("kind")), r.PathValue("name")
	if err := s.Control.LibraryAccept(r.Context(), actor(r), kind, name, b.Digest); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"item": string(kind) + "/" + name, "current": b.Digest})
}

func (s *Server) removeLibraryItem(w http.ResponseWriter, r *http.Request) {
	kind, name := library.Kind(r.PathValue("kind")), r.PathValue("name")
	if err := s.Control.LibraryRemove(r.Context(), actor(r), kind, name); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putLibrarySecret sets (PUT, {"value": …}) or removes (DELETE) a secret
// of an mcp item. Its value is never answered back.
func (s *Server) putLibrarySecret(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Value string `json:"value"`
	}
	if r.Method == http.MethodPut {
		if !s.decode(w, r, &b) {
			return
		}
		if b.Value == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "value: required (DELETE removes a secret)")
			return
		}
	}
	name, secret := r.PathValue("name"), r.PathValue("secret")
	if err := s.Control.LibrarySecret(r.Context(), actor(r), name, secret, b.Value); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
