package supervisor

import (
	"os"
	"sync"
	"syscall"
)

// logFile is an instance's stdout and stderr: mode 0600, and at most about
// twice cap bytes on disk. When the file passes cap it is renamed to
// path+".1" (replacing the previous one) and a new file is begun.
type logFile struct {
	mu   sync.Mutex // guards f and size
	path string
	cap  int64
	f    *os.File
	size int64
}

func openLog(path string, cap int64) (*logFile, error) {
	// The log lives in the daemon's own directory; O_NOFOLLOW all the same.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &logFile{path: path, cap: cap, f: f, size: fi.Size()}, nil
}

// Write never fails the caller: losing log lines must not stop opencode.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	if l.size+int64(len(p)) > l.cap && l.size > 0 {
		l.f.Close()
		os.Rename(l.path, l.path+".1")
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			l.f = nil
			return len(p), nil
		}
		l.f, l.size = f, 0
	}
	if int64(len(p)) > l.cap {
		p = p[:l.cap]
	}
	n, _ := l.f.Write(p)
	l.size += int64(n)
	return len(p), nil
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
