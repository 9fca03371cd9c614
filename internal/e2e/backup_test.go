package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
)

// TestABackupTakenUnderARunningTurnRestores: `taosagent backup` under a
// running turn (one waiting for a person's approval), then `taosagent restore` into a new home on a stopped
// daemon: the restored daemon serves the same agents, the same events (up
// to the backup's) and the same audit and approvals, and its agent
// answers. doctor tells the backup's age; a restore over a home is
// refused.
func TestABackupTakenUnderARunningTurnRestores(t *testing.T) {
	t.Parallel()
	d := start(t, "")
	ctx := ctxT(t, 4*time.Minute)
	d.agent(ctx, "keeper", `{"bash":"ask"}`)
	if code, body := request(t, "PATCH", d.addr+"/v1/agents/keeper", d.c.Token, `{"prompt":"You keep things."}`); code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	acc := d.send(ctx, "keeper", "hello", "")
	if e := last(d.turnOf(ctx, "keeper", 0, acc.Input)); e.Kind != "final" {
		t.Fatalf("first turn: %s", e.Kind)
	}
	// A turn that runs through the backup: it waits for a person's approval.
	d.send(ctx, "keeper", "use a tool", "")
	waitFor(t, ctx, func() bool { ap, _ := d.c.Approvals(ctx, "pending"); return len(ap) == 1 })
	audit := func(d *daemon) []string {
		t.Helper()
		_, body := get(t, d.addr+"/v1/audit?since=24h", d.c.Token)
		var a struct{ Entries []json.RawMessage }
		json.Unmarshal([]byte(body), &a)
		var out []string
		for _, e := range a.Entries {
			if !strings.Contains(string(e), `"backup`) {
				out = append(out, string(e))
			}
		}
		return out
	}
	file := filepath.Join(t.TempDir(), "home.tar.gz")
	out, errOut, code := d.run("backup", file)
	if code != 0 || !strings.Contains(out, "backed up") {
		t.Fatalf("backup (%d): %s %s", code, out, errOut)
	}
	wantAudit := audit(d)
	if out, _, code := d.run("doctor", "backup"); code != 0 || !strings.Contains(out, file) {
		t.Errorf("doctor backup (%d): %s", code, out)
	}
	var manifest struct{ Head int64 }
	b, _ := os.ReadFile(filepath.Join(d.home, "last-backup.json"))
	json.Unmarshal(b, &manifest)
	// What the original holds, up to the backup.
	events := func(d *daemon, agent string) []client.Event {
		t.Helper()
		evs, err := d.c.Events(ctx, agent, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		var out []client.Event
		for _, e := range evs {
			if e.Seq <= manifest.Head {
				out = append(out, e)
			}
		}
		return out
	}
	wantKeeper := events(d, "keeper")
	d.stop()

	into := filepath.Join(t.TempDir(), "restored")
	if out, errOut, code := d.run("restore", file, "--home", d.home); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("a restore over a home (%d): %s %s", code, out, errOut)
	}
	if out, errOut, code := d.run("restore", file, "--home", into); code != 0 || !strings.Contains(out, "starts a new conversation") {
		t.Fatalf("restore at a new path (%d): %s %s", code, out, errOut)
	}
	r := start(t, into)
	for _, c := range []struct {
		agent string
		want  []client.Event
	}{{"keeper", wantKeeper}} {
		got := events(r, c.agent)
		if len(got) != len(c.want) || len(got) == 0 {
			t.Fatalf("%s: %d events restored, want %d", c.agent, len(got), len(c.want))
		}
		for i := range got {
			if got[i].Seq != c.want[i].Seq || got[i].Kind != c.want[i].Kind || string(got[i].Data) != string(c.want[i].Data) {
				t.Fatalf("%s: event %d restored as %+v, want %+v", c.agent, i, got[i], c.want[i])
			}
		}
	}
	got := strings.Join(audit(r), "\n")
	for _, e := range wantAudit {
		if !strings.Contains(got, e) {
			t.Errorf("the audit restored lacks %s", e)
		}
	}
	if a, err := r.c.Agent(ctx, "keeper"); err != nil || a.Prompt != "You keep things." {
		t.Errorf("keeper restored: %+v %v", a, err)
	}
	if ap, err := r.c.Approvals(ctx, ""); err != nil || len(ap) == 0 {
		t.Errorf("the approvals restored: %v %v", ap, err)
	}
	acc = r.send(ctx, "keeper", "hello again", "")
	if e := last(r.turnOf(ctx, "keeper", 0, acc.Input)); e.Kind != "final" {
		t.Fatalf("the restored agent's turn: %s %s", e.Kind, e.Data)
	}
}
