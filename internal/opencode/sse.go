package opencode

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrFrameTooLarge: an SSE frame exceeds the reader's limit.
var ErrFrameTooLarge = errors.New("opencode: event stream frame too large")

// DefaultMaxFrame bounds one SSE frame. opencode's events routinely pass
// 64 KB (a tool's whole output rides in one part update).
const DefaultMaxFrame = 16 << 20

// Frame is one server-sent event.
type Frame struct {
	Event string // "event:" field; empty when absent
	ID    string // "id:" field; empty when absent
	Data  []byte // "data:" lines joined with "\n"
}

// SSEReader parses a text/event-stream per the WHATWG rules taosagent
// needs: LF, CRLF or CR line ends, comments, multi-line data, optional
// space after the colon, frames without data skipped.
type SSEReader struct {
	r      *bufio.Reader
	max    int
	line   []byte // reused line buffer
	skipLF bool   // the last line ended with CR: an LF next belongs to it
}

// NewSSEReader reads frames from r; max bounds a frame (0: DefaultMaxFrame).
func NewSSEReader(r io.Reader, max int) *SSEReader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &SSEReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next frame with data. At the end of the stream it
// returns io.EOF; a partial frame at the end is dropped, as the spec says.
func (s *SSEReader) Next() (Frame, error) {
	var f Frame
	var data bytes.Buffer
	hasData := false
	size := 0
	for {
		line, err := s.readLine(&size)
		if err != nil {
			return Frame{}, err
		}
		if len(line) == 0 {
			if hasData {
				f.Data = data.Bytes()
				return f, nil
			}
			f = Frame{}
			size = 0
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "event":
			f.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				f.ID = string(value)
			}
		}
	}
}

// readLine returns one line without its terminator (LF, CRLF or CR),
// counting its bytes against the frame limit. A line is returned as soon as
// its terminator is read: the LF that may follow a CR is swallowed at the
// start of the next call, so a live stream never waits on it.
func (s *SSEReader) readLine(size *int) ([]byte, error) {
	s.line = s.line[:0]
	if s.skipLF {
		s.skipLF = false
		if b, err := s.r.Peek(1); err == nil && b[0] == '\n' {
			s.r.Discard(1)
		}
	}
	for {
		if s.r.Buffered() == 0 {
			if _, err := s.r.Peek(1); err != nil {
				if err == io.EOF && (len(s.line) > 0 || *size > 0) {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
		buf, _ := s.r.Peek(s.r.Buffered())
		i := bytes.IndexAny(buf, "\r\n")
		n := len(buf)
		if i >= 0 {
			n = i
		}
		*size += n
		if *size > s.max {
			return nil, ErrFrameTooLarge
		}
		s.line = append(s.line, buf[:n]...)
		if i < 0 {
			s.r.Discard(n)
			continue
		}
		s.skipLF = buf[i] == '\r'
		s.r.Discard(i + 1)
		*size++
		return s.line, nil
	}
}
