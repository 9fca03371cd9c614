package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
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
	t.Parallel()
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
	cfg, _ := os.ReadFile(agentConfig(d.home, "worker"))
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
	old, _ := os.ReadFile(filepath.Join(instanceDir(d.home, "worker"), "gateway.key"))
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

// EnvOpenAIJS points at the node_modules holding the `openai` npm package;
// `make test` installs it and sets it.
const EnvOpenAIJS = "TAOSAGENT_OPENAI_JS"

// The official OpenAI client (npm `openai`) talks to /llm/v1 with an
// agent's key: a streamed chat works and is counted; a model outside the
// agent's set is refused in LiteLLM's shape; a wrong key is refused.
func TestGatewayWithTheOpenAIClient(t *testing.T) {
	t.Parallel()
	mods := os.Getenv(EnvOpenAIJS)
	if mods == "" {
		if testing.Short() {
			t.Skip(EnvOpenAIJS + " is not set (make test sets it)")
		}
		t.Fatal(EnvOpenAIJS + " is not set: run `make test`, which installs the openai npm package")
	}
	_, modelURL := testenv.Model(t)
	d := start(t, "")
	ctx := ctxT(t, 2*time.Minute)
	code, body := request(t, "POST", d.addr+"/v1/providers", d.c.Token,
		`{"id":"acme","base_url":"`+modelURL+`","api_key":"sk-upstream-0123456789","models":[{"id":"scripted-demo"},{"id":"scripted-small"}]}`)
	if code != 201 {
		t.Fatalf("provider: %d %s", code, body)
	}
	if _, err := d.c.CreateAgent(ctx, client.Agent{Name: "app", Model: "acme/scripted-demo"}); err != nil {
		t.Fatal(err)
	}
	key, err := d.c.RotateKey(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile("testdata/openai_client.mjs")
	script := filepath.Join(filepath.Dir(mods), "check-"+t.Name()+".mjs")
	os.WriteFile(script, src, 0o644)
	t.Cleanup(func() { os.Remove(script) })
	cmd := exec.CommandContext(ctx, "node", script, d.addr+"/llm/v1", key, "scripted-demo", "scripted-small")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("the openai client: %v\n%s", err, b)
	}
	var out struct {
		Text    string
		Models  []string
		Refused *struct {
			Status              int
			Type, Code, Message string
		}
		WrongKey int
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if out.Text != "Scripted demo chat" || len(out.Models) != 1 || out.Models[0] != "scripted-demo" {
		t.Errorf("chat %q, models %v", out.Text, out.Models)
	}
	if r := out.Refused; r == nil || r.Status != 401 || r.Type != "key_model_access_denied" ||
		!strings.Contains(r.Message, "key not allowed to access model. This key can only access models=[scripted-demo]. Tried to access scripted-small") {
		t.Errorf("a model outside the set: %+v", out.Refused)
	}
	if out.WrongKey != 401 {
		t.Errorf("a wrong key: %d", out.WrongKey)
	}
	waitFor(t, ctx, func() bool {
		rows, _ := d.c.Usage(ctx, "app", "acme/scripted-demo", "")
		return len(rows) == 1 && rows[0].Requests == 1
	})
	// A hard budget, already spent: the next call is refused.
	if _, err := d.c.UpdateAgent(ctx, "app", map[string]any{"budget": map[string]any{"daily_tokens": 10}}); err != nil {
		t.Fatal(err)
	}
	b, err = exec.CommandContext(ctx, "node", script, d.addr+"/llm/v1", key, "scripted-demo", "", "budget").Output()
	if err != nil {
		t.Fatalf("the openai client: %v\n%s", err, b)
	}
	var over struct {
		Budget struct {
			Status        int
			Type, Message string
		}
	}
	json.Unmarshal(b, &over)
	if over.Budget.Status != 429 || over.Budget.Type != "budget_exceeded" {
		t.Errorf("over budget: %s", b)
	}
}
