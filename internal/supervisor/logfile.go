package supervisor

import (
	"os"
	"syscall"
)

// openLog opens an instance's log for its process's stdout and stderr,
// which it writes directly (so that it goes on writing when the daemon is
// gone): mode 0600, appended to. A log past cap bytes when a process
// starts is renamed to path+".1" (replacing the previous one) first; what
// one process writes is bounded by its file-size limit (limits.file_size_mb).
func openLog(path string, cap int64) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Size() > cap {
		os.Rename(path, path+".1")
	}
	// The log lives in the daemon's own directory; O_NOFOLLOW all the same.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
