package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/client"
	"github.com/taosagent/taosagent/internal/containers"
	"github.com/taosagent/taosagent/internal/doctor"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/testenv"
)

// The host assistant manages a box's containers through their runtime's
// API, against a real Podman: it lists them (a restart loop and a stopped
// one named), reads their output (secrets redacted), restarts one once a
// person approved (its settings kept first); doctor finds what is wrong
// and unwedge-container repairs a container made by its unit (its stopped
// leftover removed, the unit restarted) and an unhealthy one.
func TestTheHostAssistantManagesContainersOnARealPodman(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 4*time.Minute)
	p := testenv.NewPodman(t)
	sysd := testenv.NewFakeSystemd(t)
	rt := containers.Client{Socket: p.Socket}

	// web: healthy while /tmp/ok exists, which each start makes.
	web := p.Container(t, "taos-web", []string{"--label", "taos.role=web", "--health-cmd", "test -e /tmp/ok", "--health-interval", "0", "--health-retries", "1"},
		"sh", "-c", "echo serving; echo api_key=sk-live-1234567890abcdef; touch /tmp/ok; exec sleep 100000")
	p.Run(t, "healthcheck", "run", "taos-web")
	// worker: crashes at its first four starts, and podman restarts it,
	// in a loop (of three: an endless one would load the machine for the
	// whole test); started once more it runs.
	worker := p.Container(t, "taos-worker", []string{"--restart", "on-failure:3"},
		"sh", "-c", `n=$(cat /tmp/n 2>/dev/null || echo 0); echo $((n+1)) > /tmp/n; [ $n -ge 4 ] || { echo crashing; exit 3; }; exec sleep 100000`)
	// bystander: not declared; nothing touches it.
	bystander := p.Container(t, "taos-bystander", nil, "sleep", "100000")
	// api: made by its unit, without --rm; stopped, its leftover keeps its name.
	sysd.ExecUnit(t, "taos-api.service", p.RunArgv("taos-api", nil, "sleep", "100000")...)
	if _, err := sysd.Systemd.Start(ctx, "taos-api.service"); err != nil {
		t.Fatal(err)
	}
	var oldAPI []string
	waitFor(t, ctx, func() bool { // the unit's podman run goes on on its own
		oldAPI, _ = rt.Find(ctx, containers.Selector{Name: "taos-api"})
		return len(oldAPI) == 1
	})
	p.Run(t, "wait", "--condition", "running", "taos-api")
	p.Run(t, "stop", "--time", "0", "taos-api")

	waitFor(t, ctx, func() bool {
		d, err := rt.Inspect(ctx, worker)
		return err == nil && d.RestartCount == 3 && !d.State.Running && !d.State.Restarting
	})

	b0, _ := rt.Inspect(ctx, bystander)
	bystanderStart := b0.State.StartedAt

	home := t.TempDir()
	host, _ := json.Marshal(map[string]any{"services": []any{}, "container_socket": p.Socket, "containers": []map[string]any{
		{"name": "web", "label": "taos.role=web", "image": p.ID, "stop_seconds": 1},
		{"name": "worker", "container": "taos-worker"},
		{"name": "api", "container": "taos-api", "unit": "taos-api.service", "remove_leftover": true, "stop_seconds": 1},
	}})
	os.WriteFile(filepath.Join(home, "host.json"), host, 0o600)
	d := startIn(t, home, []string{"FAKE_SYSTEMD_DIR=" + sysd.Dir}, "--systemctl", sysd.Systemd.Systemctl, "--journalctl", sysd.Systemd.Journalctl)

	call := func(tool, args string) client.Event {
		t.Helper()
		acc := d.send(ctx, "host", "call taos_"+tool+" "+args, "")
		res := toolEvents(d.turnOf(ctx, "host", acc.Seq, acc.Input), "tool_result")
		if len(res) != 1 {
			t.Fatalf("%s: %v", tool, res)
		}
		return res[0]
	}

	// The list names what is wrong with each.
	out := call("containers_list", "{}").Field("output")
	for _, want := range []string{`"name":"taos-web"`, `"health":"healthy"`, "restarting in a loop", "not running: exited", `"note":`} {
		if !strings.Contains(out, want) {
			t.Fatalf("containers_list lacks %q:\n%s", want, out)
		}
	}

	// Logs: the container's output, a secret in it masked.
	out = call("container_logs", `{"container":"web"}`).Field("output")
	if !strings.Contains(out, "serving") || strings.Contains(out, "sk-live-1234567890abcdef") || !strings.Contains(out, "api_key=") {
		t.Fatalf("container_logs:\n%s", out)
	}

	// A restart waits for a person, then runs; its settings are kept first.
	before, _ := rt.Inspect(ctx, web)
	acc := d.send(ctx, "host", `call taos_container_restart {"container":"web"}`, "")
	ap := d.onePending(t, ctx)
	if !strings.Contains(string(ap.Ask), `"container_restart"`) || !strings.Contains(string(ap.Ask), `"web"`) {
		t.Fatalf("approval: %s", ap.Ask)
	}
	if now, _ := rt.Inspect(ctx, web); !now.State.StartedAt.Equal(before.State.StartedAt) {
		t.Fatal("the container restarted before anyone approved")
	}
	if _, err := d.c.Approve(ctx, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	res := toolEvents(d.turnOf(ctx, "host", acc.Seq, acc.Input), "tool_result")
	if after, _ := rt.Inspect(ctx, web); len(res) != 1 || !after.State.StartedAt.After(before.State.StartedAt) || !after.State.Running {
		t.Fatalf("restart: %v; started %v, then %v", res, before.State.StartedAt, after.State.StartedAt)
	}
	audit, err := d.c.AuditSearch(ctx, client.AuditQuery{Tool: "container_restart"})
	if err != nil || len(audit) != 2 || audit[1].Outcome != "ok" || audit[1].Approval != ap.ID || !strings.HasPrefix(audit[1].Snapshot, "snap-") {
		t.Fatalf("audit: %+v %v", audit, err)
	}
	store := snapshot.Store{Dir: filepath.Join(home, "snapshots")}
	if sn, err := store.Get(audit[1].Snapshot); err != nil || !sn.Record || sn.Path != "container:web" {
		t.Fatalf("the settings' record: %+v %v", sn, err)
	} else if b, _ := store.Content(sn); !strings.Contains(string(b), before.State.StartedAt.Format("2006-01-02T15:04:05")) {
		t.Fatalf("the record is not the settings before: %.300s", b)
	}
	// Undeclared: refused, audited, nothing asked.
	if r := call("container_restart", `{"container":"nonesuch"}`); !strings.Contains(r.Field("error")+r.Field("output"), "not declared") {
		t.Fatalf("undeclared: %v", r)
	}

	// doctor names the loop and the stopped one, each with its recipe.
	r := &recovery{t: t, home: home, addr: strings.TrimPrefix(d.addr, "http://"), sysd: sysd}
	r.expect("containers", doctor.Error, "unwedge-container:worker")
	r.expect("containers", doctor.Error, "unwedge-container:api")

	// The unit's container: its leftover removed, the unit run again.
	r.fix("unwedge-container:api")
	newAPI, _ := rt.Find(ctx, containers.Selector{Name: "taos-api"})
	if len(newAPI) != 1 || newAPI[0] == oldAPI[0] {
		t.Fatalf("api: %v, was %v", newAPI, oldAPI)
	}
	if st, _, _ := rt.Look(ctx, newAPI[0], "", time.Now()); st.State != "running" {
		t.Fatalf("api after the fix: %+v", st)
	}
	if calls := sysd.Calls(); !slices.Contains(calls, "systemctl restart taos-api.service") {
		t.Fatalf("systemd: %q", calls)
	}

	// An unhealthy container, unwedged: restarted and waited for, while
	// the health check runs (these machines have no timers to run it).
	p.Run(t, "exec", "taos-web", "rm", "/tmp/ok")
	p.Try("healthcheck", "run", "taos-web")
	f := r.expect("containers", doctor.Error, "unwedge-container:web")
	if !strings.Contains(f.Summary, "unhealthy") {
		t.Fatalf("web: %+v", f)
	}
	checks, stop := context.WithCancel(ctx)
	go func() {
		for checks.Err() == nil {
			p.Try("healthcheck", "run", "taos-web")
		}
	}()
	out = r.fix("unwedge-container:web")
	stop()
	if !strings.Contains(out, "web runs and is healthy") {
		t.Fatalf("fix web:\n%s", out)
	}
	// The restart loop, unwedged: started again, it runs.
	r.fix("unwedge-container:worker")
	if fs, _ := r.findings("containers"); len(fs) != 1 || fs[0].Severity != doctor.OK {
		t.Fatalf("after the fixes: %+v", fs)
	}
	if b, _ := rt.Inspect(ctx, bystander); !b.State.Running || !b.State.StartedAt.Equal(bystanderStart) {
		t.Fatalf("the undeclared container was touched: %+v", b.State)
	}
	if strings.Contains(call("containers_list", "{}").Field("output"), "bystander") {
		t.Fatal("an undeclared container is listed")
	}
}

// The bare `taosagent` at a terminal, the daemon down and no model to
// reach: the recovery takes over, lists doctor's findings (a managed
// container stopped), the person picks unwedge-container from the menu
// and confirms it; it runs, and it is audited.
func TestBareTaosagentRecoversAContainerUnderTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (make deps installs it)")
	}
	ctx := ctxT(t, 3*time.Minute)
	p := testenv.NewPodman(t)
	web := p.Container(t, "taos-web", nil, "sleep", "100000")
	p.Run(t, "stop", "--time", "0", "taos-web")
	d := start(t, "")
	os.WriteFile(filepath.Join(d.home, "host.json"), []byte(`{"services":[],"container_socket":"`+p.Socket+
		`","containers":[{"name":"web","container":"taos-web","stop_seconds":1}]}`), 0o600)
	addr := d.addr
	d.stop()

	x := tmux{t: t, socket: fmt.Sprintf("taosagent-bare-%d", os.Getpid())}
	cmd := fmt.Sprintf("env TAOSAGENT_HOME=%s TAOSAGENT_ADDR=%s TAOSAGENT_OPENCODE=%s %s; sleep 60", d.home, addr, testenv.Opencode(t), binary)
	x.run("new-session", "-d", "-s", "tui", "-x", "220", "-y", "60", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	x.screen("The taosagent daemon is down", 30*time.Second)
	s := x.screen("Run which (number, or q)?", time.Minute)
	if !strings.Contains(s, "container web (taos-web): not running: exited") {
		t.Fatalf("the findings:\n%s", s)
	}
	choice := ""
	for _, l := range strings.Split(s, "\n") {
		if n, r, ok := strings.Cut(strings.TrimSpace(l), ". "); ok && r == "unwedge-container:web" {
			choice = n
		}
	}
	if choice == "" {
		t.Fatalf("the menu lacks unwedge-container:web:\n%s", s)
	}
	x.run("send-keys", "-t", "tui", "-l", choice)
	x.run("send-keys", "-t", "tui", "Enter")
	x.screen("Go ahead? [y/N]", time.Minute)
	x.run("send-keys", "-t", "tui", "y", "Enter")
	x.screen("web runs and is healthy", time.Minute)
	rt := containers.Client{Socket: p.Socket}
	if st, _, err := rt.Look(ctx, web, "", time.Now()); err != nil || st.State != "running" {
		t.Fatalf("web: %+v %v", st, err)
	}
	b, _ := os.ReadFile(filepath.Join(d.home, "recovery-audit.jsonl"))
	if !strings.Contains(string(b), `"action":"fix.unwedge-container"`) || !strings.Contains(string(b), `"outcome":"ok"`) {
		t.Errorf("recovery audit:\n%s", b)
	}
	x.run("send-keys", "-t", "tui", "q", "Enter")
}
