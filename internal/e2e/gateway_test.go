package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/testenv"
)

// An agent's turn goes opencode → the gateway → the model; the agent's
// directory holds its own gateway key and never the upstream's; the call
// is counted, in /v1/usage and as a usage event; a rotated key replaces
// the old one at once.
func TestTurnThroughTheGateway(t *testing.T) {
	_, modelURL := testenv.Model(t)
	d := start(t, "")
	ctx := ctxT(t, 3*time.Minute)
	const upstream = "sk-upstream-never-in-an-agent-dir-0123"
	code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token,
		`{"id":"acme","base_url":"`+modelURL+`","api_key":"`+upstream+`","models":[{"id":"scripted-demo","tool_call":true}]}`)
	if code != 201 {
		t.Fatalf("provider: %d %s", code, body)
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "worker", Model: "acme/scripted-demo"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	acc := d.send(ctx, "worker", "hello there", "")
	evs := d.turnOf(ctx, "worker", acc.Seq, acc.Input)
	if last(evs).Kind != "final" {
		t.Fatalf("turn: %v %s", kinds(evs), last(evs).Data)
	}
	t.Logf("first turn %v", time.Since(t0))
	// No upstream key anywhere in the agent's directory.
	filepath.Walk(filepath.Join(d.home, "agents", "worker"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), upstream) {
				t.Errorf("%s holds the upstream key", p)
			}
		}
		return nil
	})
	cfg, _ := os.ReadFile(filepath.Join(d.home, "agents", "worker", "home", ".config", "opencode", "opencode.json"))
	if !strings.Contains(string(cfg), "/llm/v1") {
		t.Errorf("the agent's opencode does not use the gateway:\n%s", cfg)
	}
	waitFor(t, ctx, func() bool {
		rows, _ := d.c.Usage(ctx, "worker", "", "")
		return len(rows) == 1 && rows[0].Requests >= 1 && rows[0].Model == "acme/scripted-demo" && rows[0].OutputTokens > 0
	})
	waitFor(t, ctx, func() bool {
		evs, _ := d.c.Events(ctx, "worker", 0, 1000, "usage")
		for _, e := range evs {
			if e.Field("source") == "gateway" {
				return true
			}
		}
		return false
	})
	t.Logf("usage seen %v", time.Since(t0))
	// Rotation: the old key stops working, the new one works.
	old, _ := os.ReadFile(filepath.Join(d.home, "agents", "worker", "gateway.key"))
	key, err := d.c.RotateKey(ctx, "worker")
	if err != nil || key == "" || key == strings.TrimSpace(string(old)) {
		t.Fatalf("rotate: %q %v", key, err)
	}
	for k, want := range map[string]int{strings.TrimSpace(string(old)): 401, key: 200} {
		req, _ := http.NewRequest("GET", d.addr+"/llm/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+k)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("key %s…: %d, want %d", k[:8], resp.StatusCode, want)
		}
	}
	acc = d.send(ctx, "worker", "again", "") // its opencode restarts with the new key
	if evs := d.turnOf(ctx, "worker", acc.Seq, acc.Input); last(evs).Kind != "final" {
		t.Fatalf("turn after rotation: %v %s", kinds(evs), last(evs).Data)
	}
}
