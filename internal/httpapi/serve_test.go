package httpapi

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// closed closes a listener and says so.
type closed struct {
	net.Listener
	done chan struct{}
}

func (c closed) Close() error {
	err := c.Listener.Close()
	close(c.done)
	return err
}

// A connection accepted before the server ends, whose request comes after
// its listener has closed, is answered (net/http's Shutdown would close it
// unanswered: at a hand-over, a client's request lost); one idle after an
// answer is closed; End returns once none is left.
func TestEndAnswersEveryRequestAConnectionSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") }),
		slog.New(slog.DiscardHandler))
	accepted := make(chan struct{}, 2)
	track := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		track(c, st)
		if st == http.StateNew {
			accepted <- struct{}{}
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	idle, err := net.Dial("tcp", ln.Addr().String()) // asks once, then keeps the connection
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if got := ask(t, idle); got != "answered" {
		t.Fatalf("before the end: %q", got)
	}
	late, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	<-accepted
	<-accepted // late, taken by the server: its request is written only after the listener has closed
	cl := closed{ln, make(chan struct{})}
	ended := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { srv.End(ctx, cl); close(ended) }()
	<-cl.done
	if got := ask(t, late); got != "answered" {
		t.Fatalf("a request sent as the server ends: %q, want it answered", got)
	}
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("End did not return once every connection had closed")
	}
	if ctx.Err() != nil {
		t.Fatal("End waited for its deadline")
	}
	if n, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the idle connection: read %d, %v; want it closed", n, err)
	}
	if err := <-served; err == nil {
		t.Error("Serve returned no error")
	}
}

// ask sends one GET on c and returns the answer's body ("" and the error
// logged when there is none).
func ask(t *testing.T, c net.Conn) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Logf("write: %v", err)
		return ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Logf("read: %v", err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
