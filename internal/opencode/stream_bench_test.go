package opencode

import "testing"

// BenchmarkDecodeEvent decodes a /global/event text delta, the most
// frequent frame of a streamed answer.
func BenchmarkDecodeEvent(b *testing.B) {
	frame := []byte(`{"directory":"/w","payload":{"type":"message.part.delta","properties":{"sessionID":"ses_1","messageID":"msg_ses_1","partID":"prt_ses_1","field":"text","delta":"word 123 "}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(frame); err != nil {
			b.Fatal(err)
		}
	}
}
