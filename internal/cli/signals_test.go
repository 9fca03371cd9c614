package cli

import (
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A SIGTERM that comes just before release is reported by it, never lost
// (a hand-over then tells the next program to stop); with none, release
// says so.
func TestReleaseReportsAStopThatCame(t *testing.T) {
	s := onStop()
	if s.release() {
		t.Fatal("release reports a stop that never came")
	}
	if s.ctx.Err() == nil {
		t.Error("the context goes on after release")
	}

	s = onStop()
	// Sent to this thread: its handler has run when Tgkill returns.
	runtime.LockOSThread()
	err := unix.Tgkill(unix.Getpid(), unix.Gettid(), syscall.SIGTERM)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	if !s.release() {
		t.Fatal("a SIGTERM just before release is lost")
	}
	if !s.release() {
		t.Error("release says otherwise a second time")
	}
}
