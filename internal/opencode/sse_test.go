package opencode

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t *testing.T, in string, max int) ([]Frame, error) {
	t.Helper()
	r := NewSSEReader(iotest.OneByteReader(strings.NewReader(in)), max)
	var out []Frame
	for {
		f, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

func TestSSEReaderFraming(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // data of each frame
	}{
		{"lf", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"cr", "data: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"comment and heartbeat", ": heartbeat\n\ndata: a\n\n", []string{"a"}},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"no space after colon", "data:a\n\n", []string{"a"}},
		{"event and id", "event: message\nid: 7\ndata: x\n\n", []string{"x"}},
		{"frame without data skipped", "event: x\n\ndata: y\n\n", []string{"y"}},
		{"partial frame at end dropped", "data: a\n\ndata: b", []string{"a"}},
		{"unknown field ignored", "retry: 10\nfoo\ndata: a\n\n", []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, err := readAll(t, tt.in, 0)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal(err)
			}
			var got []string
			for _, f := range frames {
				got = append(got, string(f.Data))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSSEReaderEventAndID(t *testing.T) {
	frames, err := readAll(t, "event: message\nid: evt_1\ndata: {}\n\n", 0)
	if err != nil || len(frames) != 1 {
		t.Fatalf("frames %v, err %v", frames, err)
	}
	if frames[0].Event != "message" || frames[0].ID != "evt_1" {
		t.Errorf("got event %q id %q", frames[0].Event, frames[0].ID)
	}
}

func TestSSEReaderLargeFrame(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300<<10) // far past 64 KB
	in := "data: " + string(big) + "\n\ndata: next\n\n"
	r := NewSSEReader(strings.NewReader(in), 0)
	f, err := r.Next()
	if err != nil || len(f.Data) != len(big) {
		t.Fatalf("len %d, err %v; want %d", len(f.Data), err, len(big))
	}
	if f, err = r.Next(); err != nil || string(f.Data) != "next" {
		t.Fatalf("after large frame: %q, %v", f.Data, err)
	}
}

func TestSSEReaderFrameLimit(t *testing.T) {
	in := "data: " + strings.Repeat("x", 2000) + "\n\n"
	_, err := readAll(t, in, 1000)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func TestDecodeEventGlobalEnvelope(t *testing.T) {
	ev, err := DecodeEvent([]byte(`{"directory":"/w","project":"global","payload":{"id":"evt_1","type":"session.idle","properties":{"sessionID":"ses_1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "session.idle" || ev.Directory != "/w" || ev.ID != "evt_1" || string(ev.Properties) != `{"sessionID":"ses_1"}` {
		t.Errorf("got %+v", ev)
	}
	if _, err := DecodeEvent([]byte(`not json`)); !errors.Is(err, ErrNotEvent) {
		t.Errorf("garbage: err = %v, want ErrNotEvent", err)
	}
	if _, err := DecodeEvent([]byte(`{"payload":{}}`)); !errors.Is(err, ErrNotEvent) {
		t.Errorf("typeless payload: err = %v, want ErrNotEvent", err)
	}
}

// FuzzSSEReader: any input ends in frames and an error, never a panic or a
// frame over the limit.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("data: a\n\n"))
	f.Add([]byte("data: a\r\n\r\n: c\rdata:b\r\r"))
	f.Add([]byte("event: x\nid: 1\ndata: {\"type\":\"t\"}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewSSEReader(bytes.NewReader(in), 512)
		for i := 0; i < len(in)+2; i++ {
			fr, err := r.Next()
			if err != nil {
				return
			}
			if len(fr.Data) > 512 {
				t.Fatalf("frame of %d bytes passed a 512-byte limit", len(fr.Data))
			}
			DecodeEvent(fr.Data)
		}
		t.Fatal("reader did not end")
	})
}
