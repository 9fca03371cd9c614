package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Served is the http.Server the daemon serves the API with, its
// connections counted so that it can end without dropping a request a
// client has sent (End).
type Served struct {
	*http.Server

	mu      sync.Mutex
	serving int           // Serve and ServeTLS under way
	served  chan struct{} // closed when serving drops to 0, once End waits for it
	ended   bool          // End began: a Serve that starts now returns at once
	open    map[net.Conn]bool
	empty   chan struct{} // closed when open empties, once End waits for it
}

// begin counts a Serve in, unless End began (a Serve started on its own
// goroutine may come after End); the func counts it out.
func (s *Served) begin() (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, false
	}
	s.serving++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.serving--; s.serving == 0 && s.served != nil {
			close(s.served)
			s.served = nil
		}
	}, true
}

// HTTPServer returns the server the daemon serves h with: bounded header,
// body and idle times (an idle keep-alive connection is closed after two
// minutes). Event streams bound each write instead (WriteWait).
func HTTPServer(h http.Handler, logger *slog.Logger) *Served {
	s := &Served{open: map[net.Conn]bool{}}
	s.Server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnState: s.track}
	return s
}

// Serve serves ln until End (or Close).
func (s *Served) Serve(ln net.Listener) error {
	done, ok := s.begin()
	if !ok {
		return http.ErrServerClosed
	}
	defer done()
	return s.Server.Serve(ln)
}

// ServeTLS serves ln over TLS until End (or Close).
func (s *Served) ServeTLS(ln net.Listener, cert, key string) error {
	done, ok := s.begin()
	if !ok {
		return http.ErrServerClosed
	}
	defer done()
	return s.Server.ServeTLS(ln, cert, key)
}

func (s *Served) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.open[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(s.open, c)
		if len(s.open) == 0 && s.empty != nil {
			close(s.empty)
			s.empty = nil
		}
	}
}

// End stops serving: it closes lns, every listener the server serves (at a
// hand-over their sockets' duplicates stay open, and new connections wait
// in their backlog), ends every connection once it has answered what it
// read (an idle one at once), and returns when none is left, or when ctx
// is done, after closing what is left.
//
// net/http's Shutdown would close, unanswered, a connection accepted just
// before it whose request it reads just after: a client's request lost.
// Event streams do not end here; the caller ends them first (EndStreams).
func (s *Served) End(ctx context.Context, lns ...io.Closer) {
	for _, ln := range lns {
		ln.Close()
	}
	// Once Serve has returned, every connection it accepted is counted.
	s.mu.Lock()
	s.ended = true
	var served chan struct{}
	if s.serving > 0 {
		s.served = make(chan struct{})
		served = s.served
	}
	s.mu.Unlock()
	if served != nil {
		<-served
	}
	s.SetKeepAlivesEnabled(false) // closes the idle connections
	s.mu.Lock()
	var empty chan struct{}
	if len(s.open) > 0 {
		s.empty = make(chan struct{})
		empty = s.empty
	}
	s.mu.Unlock()
	if empty != nil {
		select {
		case <-empty:
		case <-ctx.Done():
		}
	}
	s.Close()
}
