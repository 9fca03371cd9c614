package client

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/supervisor"
)

// The client reads every field of the server's agent view: the two types
// cannot drift apart silently (a field the server adds fails here).
func TestAgentHoldsEveryFieldOfTheServersView(t *testing.T) {
	l := agent.Limits{MemoryMB: 1024}
	v := control.AgentView{
		Agent: agent.Agent{Name: "a", Model: "p/m", Models: []string{"p/m"}, Prompt: "x", Permission: json.RawMessage(`{"bash":"deny"}`),
			Tools: map[string]bool{"taos": true}, Limits: &l, Budget: &agent.Budget{DailyTokens: 5}, Fallback: "q/m", Builtin: true, Session: "ses", Created: time.Now(), Updated: time.Now()},
		Status: runner.AgentStatus{State: "idle", Turn: "t", Queued: 1, Instance: "ready", PID: 2, Confined: true,
			Usage: &supervisor.Usage{Processes: 1, MemoryBytes: 3, CPUMillis: 4}},
	}
	b, _ := json.Marshal(v)
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var a Agent
	if err := d.Decode(&a); err != nil {
		t.Fatalf("the client's Agent lacks a field of the server's view: %v", err)
	}
	back, _ := json.Marshal(a)
	if !bytes.Equal(back, b) {
		t.Errorf("round trip differs:\nserver %s\nclient %s", b, back)
	}
}
