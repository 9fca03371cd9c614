// Package testenv gives tests the real parts they run against: the pinned
// opencode binary and a scripted model server on loopback.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/opencode"
	"github.com/taosagent/taosagent/internal/scriptedmodel"
)

// EnvBinary names the variable that points tests at the pinned opencode
// binary; `make test` installs it and sets it.
const EnvBinary = "TAOSAGENT_OPENCODE"

// verified holds, per binary path, the outcome of its one verification in
// this test process (a *verification).
var verified sync.Map

type verification struct {
	once sync.Once
	err  error
}

// Opencode returns the pinned opencode binary. Without it an integration
// test cannot run: under -short it is skipped, otherwise it fails, so that
// a missing install can never pass for a green run. The binary is verified
// (byte for byte, and by running it) once per test process: that costs
// seconds of CPU, and every integration test asks.
func Opencode(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		if testing.Short() {
			t.Skip("integration test: set " + EnvBinary + " (make test does)")
		}
		t.Fatal(EnvBinary + " is not set: run `make test`, which installs the pinned opencode, or set it to the binary")
	}
	v, _ := verified.LoadOrStore(bin, &verification{})
	ver := v.(*verification)
	ver.once.Do(func() { ver.err = opencode.Verify(context.Background(), bin) })
	if ver.err != nil {
		t.Fatal(ver.err)
	}
	return bin
}

// Model starts a scripted model server on a loopback listener kept open for
// the test's life and returns it with its base URL (".../v1").
func Model(t testing.TB) (*scriptedmodel.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &scriptedmodel.Server{Delay: 100 * time.Millisecond}
	srv := &http.Server{Handler: m}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m, "http://" + ln.Addr().String() + "/v1"
}

// Config is an instance config for the scripted model at baseURL, with the
// given permission policy (nil: opencode's defaults).
func Config(baseURL string, permission string) opencode.Config {
	c := opencode.Config{
		Provider: opencode.Provider{ID: "scripted", Name: "Scripted demo (test model)", BaseURL: baseURL, APIKey: "sk-scripted-test-key",
			Models: []opencode.Model{
				{ID: "scripted-demo", Name: "Scripted demo (not an AI)", ToolCall: true, Reasoning: true},
				{ID: "scripted-small", Name: "Scripted demo small (not an AI)"},
			}},
		Model: "scripted-demo", SmallModel: "scripted-small",
		Agent: opencode.Agent{Name: "tester", Prompt: "You are a test agent."},
	}
	if permission != "" {
		c.Permission = []byte(permission)
	}
	return c
}

// DeltaFrames returns upstream frames of one streamed answer of session, as
// opencode 1.18 sends them on /global/event: the assistant message, its
// text part, then n text deltas. Benchmarks feed them to the codec after
// opening a turn with Codec.Begin.
func DeltaFrames(session string, n int) [][]byte {
	msg, part := "msg_"+session, "prt_"+session
	out := [][]byte{
		fmt.Appendf(nil, `{"directory":"/w","payload":{"type":"message.updated","properties":{"sessionID":%q,"info":{"id":%q,"role":"assistant","sessionID":%q,"time":{"created":1}}}}}`, session, msg, session),
		fmt.Appendf(nil, `{"directory":"/w","payload":{"type":"message.part.updated","properties":{"sessionID":%q,"part":{"id":%q,"type":"text","text":"","messageID":%q,"sessionID":%q}}}}`, session, part, msg, session),
	}
	for i := range n {
		out = append(out, DeltaFrame(session, fmt.Sprint("word", i, " ")))
	}
	return out
}

// DeltaFrame is one text delta of DeltaFrames' part.
func DeltaFrame(session, text string) []byte {
	return fmt.Appendf(nil, `{"directory":"/w","payload":{"type":"message.part.delta","properties":{"sessionID":%q,"messageID":"msg_%s","partID":"prt_%s","field":"text","delta":%q}}}`, session, session, session, text)
}

// NoDeps fails t if the package in the working directory (a test's own)
// depends, directly or not, on an import path containing any of bad.
func NoDeps(t testing.TB, bad ...string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range bad {
			if strings.Contains(dep, b) {
				t.Errorf("depends on %s", dep)
			}
		}
	}
}
