// Package joinconn joins two connections: what the daemon's forwarders
// (an instance's API, a tool's relay to its proxy) do with each one they
// accept.
package joinconn

import (
	"io"
	"net"
)

// Join copies a and b into each other until both ends are done, passing
// each end's close of writing on to the other, then closes both.
func Join(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		closeWrite(b)
		close(done)
	}()
	io.Copy(a, b)
	closeWrite(a)
	<-done
	a.Close()
	b.Close()
}

func closeWrite(c net.Conn) {
	if w, ok := c.(interface{ CloseWrite() error }); ok {
		w.CloseWrite()
	}
}
