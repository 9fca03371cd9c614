package httpapi

import (
	"bufio"
	"net/http"
	"strconv"

	"github.com/taosagent/taosagent/internal/eventlog"
)

// frameWriter writes SSE frames into a buffer that is flushed once per
// batch of events.
type frameWriter struct {
	w   *bufio.Writer
	num []byte
}

func newFrameWriter(w http.ResponseWriter) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 64<<10), num: make([]byte, 0, 20)}
}

// frame writes one event: "id: SEQ\nevent: KIND\ndata: JSON\n\n". Bodies
// are compact JSON: no newline can split the data line.
func (f *frameWriter) frame(r eventlog.Record) {
	f.w.WriteString("id: ")
	f.num = strconv.AppendInt(f.num[:0], r.Seq, 10)
	f.w.Write(f.num)
	f.w.WriteString("\nevent: ")
	f.w.WriteString(string(r.Kind))
	f.w.WriteString("\ndata: ")
	f.w.Write(r.Body)
	f.w.WriteString("\n\n")
}

func (f *frameWriter) comment(s string) {
	f.w.WriteString(": ")
	f.w.WriteString(s)
	f.w.WriteString("\n\n")
}

func (f *frameWriter) flush(rc *http.ResponseController) error {
	if err := f.w.Flush(); err != nil {
		return err
	}
	return rc.Flush()
}
