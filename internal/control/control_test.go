package control_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/taosagent/taosagent/internal/agent"
	"github.com/taosagent/taosagent/internal/appgate"
	"github.com/taosagent/taosagent/internal/catalog"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostops"
	"github.com/taosagent/taosagent/internal/runner"
	"github.com/taosagent/taosagent/internal/snapshot"
	"github.com/taosagent/taosagent/internal/supervisor"
	"github.com/taosagent/taosagent/internal/testenv"
)

type fixture struct {
	svc  *control.Service
	host *hostops.Ops
	apps *appgate.Gate
	log  *eventlog.Log
	home string
	conf string // a declared json config file
	sysd *testenv.FakeSystemd
	sup  *supervisor.Supervisor
}

// newFixture builds a control service over a fresh home with one managed
// service (litellm) whose config file is declared as JSON.
func newFixture(t *testing.T, prep ...func(dbPath string)) *fixture {
	t.Helper()
	home := t.TempDir()
	db := filepath.Join(home, "taosagent.db")
	for _, p := range prep {
		p(db)
	}
	log, err := eventlog.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	sup, err := supervisor.New("/bin/false", filepath.Join(home, "run"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	keys := agent.Keys{Dir: filepath.Join(home, "keys")}
	mgr := runner.New(runner.Config{Home: home, Store: log, Instances: runner.Supervised(sup), Keys: keys})
	t.Cleanup(mgr.Close)
	conf := filepath.Join(home, "litellm.json")
	os.WriteFile(conf, []byte(`{"port": 4000, "master_key": "sk-live-0123456789abcdefghij"}`), 0o640)
	hostFile := filepath.Join(home, "host.json")
	os.WriteFile(hostFile, []byte(`{"services":[{"name":"litellm","unit":"litellm.service","configs":[{"path":"`+conf+`","format":"json"}]}]}`), 0o600)
	f := testenv.NewFakeSystemd(t)
	f.Unit(t, "litellm.service", false, "2026-11-30T08:00:00+0000 h litellm[9]: token=sk-live-0123456789abcdefghij ok")
	svc := &control.Service{Log: log, Runner: mgr, Catalog: &catalog.Catalog{Home: home, Log: log, Keys: keys, Forget: mgr.Forget}, Home: home, Keys: keys,
		Version: "test", ApprovalTTL: time.Minute, Progress: 10 * time.Millisecond}
	host := &hostops.Ops{Control: svc, HostFile: hostFile, Systemd: f.Systemd, Snapshots: snapshot.Store{Dir: filepath.Join(home, "snapshots")}}
	return &fixture{svc: svc, host: host, apps: &appgate.Gate{Control: svc}, log: log, home: home, conf: conf, sysd: f, sup: sup}
}

var (
	viaMCP   = control.Actor{Kind: control.Operator, Channel: control.MCP}
	operator = control.Actor{Kind: control.Operator, Channel: control.API}
)

// pending waits until an approval is pending and returns it.
func (f *fixture) pending(t *testing.T) eventlog.Approval {
	t.Helper()
	for range 500 {
		as, err := f.svc.Approvals(t.Context(), "pending")
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 1 {
			return as[0]
		}
		if len(as) > 1 {
			t.Fatalf("%d approvals pending", len(as))
		}
		time.Sleep(5 * time.Millisecond) // polls the store: there is no event to wait on outside the log
	}
	t.Fatal("no approval became pending")
	return eventlog.Approval{}
}

func (f *fixture) audit(t *testing.T, action string) []eventlog.AuditEntry {
	t.Helper()
	es, err := f.log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestDestructiveCallWaitsForAPersonThenRunsWithASnapshot(t *testing.T) {
	f := newFixture(t)
	type result struct {
		sn  snapshot.Snapshot
		err error
	}
	done := make(chan result, 1)
	progressed := make(chan string, 100)
	ctx := control.WithProgress(t.Context(), func(m string) {
		select {
		case progressed <- m:
		default:
		}
	})
	go func() {
		sn, err := f.host.ConfigWrite(ctx, viaMCP, f.conf, `{"port": 4001, "master_key": "sk-live-0123456789abcdefghij"}`)
		done <- result{sn, err}
	}()
	ap := f.pending(t)
	if ap.Source != "taosagent" || !strings.Contains(string(ap.Ask), `"config_write"`) || !strings.Contains(string(ap.Ask), "4001") {
		t.Errorf("approval %+v does not show the exact call", ap)
	}
	if strings.Contains(string(ap.Ask), "sk-live") {
		t.Errorf("the approval shows a secret: %s", ap.Ask)
	}
	if b, _ := os.ReadFile(f.conf); strings.Contains(string(b), "4001") {
		t.Fatal("the file changed before anyone approved")
	}
	<-progressed // the waiting call reports that it waits
	if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if b, _ := os.ReadFile(f.conf); !strings.Contains(string(b), "4001") {
		t.Fatalf("approved, but the file holds %s", b)
	}
	if old, err := f.host.Snapshots.Content(r.sn); err != nil || !strings.Contains(string(old), "4000") {
		t.Errorf("the snapshot holds %q (%v), want the previous contents", old, err)
	}
	es := f.audit(t, "config_write")
	if len(es) != 2 || es[0].Phase != "intent" || es[0].Outcome != "pending" || es[1].Outcome != "ok" {
		t.Fatalf("audit %+v, want the intent then the outcome", es)
	}
	if o := es[1]; o.Approval != ap.ID || o.Approver != "operator (api)" || o.Snapshot != r.sn.ID || o.Tier != "destructive" || o.Digest == "" {
		t.Errorf("outcome %+v lacks the approval, approver, snapshot or digest", o)
	}
	if got, _ := f.svc.Approvals(t.Context(), "once"); len(got) != 1 || got[0].By != "operator (api)" {
		t.Errorf("the approval's final state: %+v", got)
	}
}

func TestRejectedOrExpiredCallsChangeNothing(t *testing.T) {
	f := newFixture(t)
	before, _ := os.ReadFile(f.conf)
	errc := make(chan error, 1)
	go func() {
		_, err := f.host.ServiceRestart(t.Context(), viaMCP, "litellm")
		errc <- err
	}()
	ap := f.pending(t)
	if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "reject", "not now, it serves a user"); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "not now, it serves a user") {
		t.Errorf("rejected call returned %v", err)
	}
	if slices.ContainsFunc(f.sysd.Calls(), func(c string) bool { return strings.Contains(c, "restart") }) {
		t.Errorf("systemctl restart ran after a rejection: %q", f.sysd.Calls())
	}
	if es := f.audit(t, "service_restart"); len(es) != 1 || es[0].Outcome != "refused" || es[0].Approval != ap.ID {
		t.Errorf("audit %+v, want one refusal naming the approval", es)
	}

	svc := &control.Service{Log: f.log, Runner: f.svc.Runner, Catalog: f.svc.Catalog, Home: f.home, ApprovalTTL: 50 * time.Millisecond}
	host := &hostops.Ops{Control: svc, Snapshots: f.host.Snapshots, HostFile: f.host.HostFile, Systemd: f.host.Systemd}
	_, err = host.ConfigWrite(t.Context(), viaMCP, f.conf, `{"port": 1}`)
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired call returned %v", err)
	}
	if after, _ := os.ReadFile(f.conf); string(after) != string(before) {
		t.Errorf("the file changed: %s", after)
	}
	if ex, _ := f.svc.Approvals(t.Context(), "expired"); len(ex) != 1 {
		t.Errorf("expired approvals: %+v", ex)
	}
}

func TestAnApprovalIsSpentOnceAndOnlyByAPerson(t *testing.T) {
	f := newFixture(t)
	errc := make(chan error, 1)
	go func() {
		_, err := f.host.InstanceKill(t.Context(), viaMCP, "host")
		errc <- err
	}()
	// There is no host agent in this store: the kill is refused before
	// anyone is asked.
	if err := <-errc; !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("kill of an unknown agent: %v", err)
	}
	go func() {
		_, err := f.host.ServiceRestart(t.Context(), viaMCP, "litellm")
		errc <- err
	}()
	ap := f.pending(t)
	for _, a := range []control.Actor{{Kind: control.Agent, Name: "host", Channel: control.MCP}, viaMCP} {
		if _, err := f.svc.Decide(t.Context(), a, ap.ID, "once", ""); !errors.Is(err, control.ErrForbidden) {
			t.Errorf("%s answered an approval: %v", a, err)
		}
	}
	if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "always", ""); err == nil {
		t.Error(`"always" was accepted for a destructive host action`)
	}
	if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "once", ""); !errors.Is(err, eventlog.ErrConflict) {
		t.Errorf("a second answer: %v, want a conflict", err)
	}
	restarts := 0
	for _, c := range f.sysd.Calls() {
		if strings.HasPrefix(c, "systemctl restart") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("%d restarts, want 1: %q", restarts, f.sysd.Calls())
	}
	refusals, _ := f.log.AuditSearch(t.Context(), eventlog.AuditQuery{Outcome: "refused", Action: "approval.once"})
	if len(refusals) != 3 { // two forbidden actors, the second answer
		t.Errorf("refusals audited: %+v", refusals)
	}
}

func TestInvalidContentIsRefusedBeforeAnyoneIsAsked(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ path, content string }{
		{f.conf, `{"port": `},                   // not JSON
		{"/etc/passwd", "root::0:0::/:/bin/sh"}, // not declared
		{f.conf, strings.Repeat("x", hostops.MaxConfig+1)},
	} {
		if _, err := f.host.ConfigWrite(t.Context(), viaMCP, c.path, c.content); err == nil {
			t.Errorf("write of %s accepted", c.path)
		}
	}
	if as, _ := f.svc.Approvals(t.Context(), ""); len(as) != 0 {
		t.Errorf("a person was asked about bad input: %+v", as)
	}
	if es := f.audit(t, "config_write"); len(es) != 3 || es[0].Outcome != "refused" {
		t.Errorf("refusals not audited: %+v", es)
	}
}

func TestReadsAreBoundedRedactedAndMarkedUntrusted(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cf, err := f.host.ConfigShow(ctx, f.conf)
	if err != nil || strings.Contains(cf.Content, "sk-live") || !strings.Contains(cf.Content, "4000") || cf.Note != control.UntrustedNote {
		t.Errorf("config show: %+v %v", cf, err)
	}
	if _, err := f.host.ConfigShow(ctx, "/etc/shadow"); err == nil {
		t.Error("an undeclared file was shown")
	}
	lg, err := f.host.Logs(ctx, operator, hostops.LogsRequest{Service: "litellm", Lines: 10})
	if err != nil || len(lg.Lines) != 1 || strings.Contains(lg.Lines[0], "sk-live") || !strings.Contains(lg.Lines[0], "token=[secret: ") {
		t.Errorf("logs: %+v %v", lg, err)
	}
	for _, bad := range []hostops.LogsRequest{{}, {Service: "a", Agent: "b"}, {Service: "nope"}, {Service: "litellm", Since: "yesterday"}} {
		if _, err := f.host.Logs(ctx, operator, bad); err == nil {
			t.Errorf("logs %+v accepted", bad)
		}
	}
	st, err := f.host.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 2 || st.Services[1].Status == nil || st.Services[1].Status.ActiveState != "active" || st.Memory.TotalBytes == 0 {
		t.Errorf("status: %+v", st)
	}
}

// If the intent cannot be written to the audit, the action does not run.
func TestAnActionWhoseIntentCannotBeAuditedIsRefused(t *testing.T) {
	f := newFixture(t, func(db string) {
		l, err := eventlog.Open(db) // migrate, then plant a trigger that fails audit writes
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		d, _ := sql.Open("sqlite", db)
		defer d.Close()
		if _, err := d.Exec(`CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(FAIL, 'disk says no'); END`); err != nil {
			t.Fatal(err)
		}
	})
	_, err := f.host.ConfigSnapshot(context.Background(), operator, f.conf)
	if !errors.Is(err, control.ErrRefused) {
		t.Fatalf("snapshot with a broken audit: %v", err)
	}
	if list, _ := f.host.Snapshots.List(""); len(list) != 0 {
		t.Errorf("the action ran: %+v", list)
	}
}

// TestAnApprovalShowsExactlyWhatWillRun: a person sees every character of
// the call but a secret's own value: a masked key does not swallow the
// line after it, a 9 KiB call is shown whole, control and bidi characters
// are shown escaped, and a call over 64 KiB is refused before anyone is
// asked.
func TestAnApprovalShowsExactlyWhatWillRun(t *testing.T) {
	f := newFixture(t)
	env := filepath.Join(f.home, "litellm.env")
	os.WriteFile(env, []byte("LITELLM_MASTER_KEY=old\n"), 0o640)
	os.WriteFile(f.host.HostFile, []byte(`{"services":[{"name":"litellm","unit":"litellm.service","configs":[{"path":"`+env+`","format":"none"}]}]}`), 0o600)

	show := func(content string) (display string, args string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := f.host.ConfigWrite(t.Context(), viaMCP, env, content)
			done <- err
		}()
		ap := f.pending(t)
		var ask struct {
			Display string          `json:"display"`
			Args    json.RawMessage `json:"args"`
		}
		if err := json.Unmarshal(ap.Ask, &ask); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Decide(t.Context(), operator, ap.ID, "reject", ""); err != nil {
			t.Fatal(err)
		}
		<-done
		return ask.Display, string(ask.Args)
	}

	// The attack of the issue: a key, then a line that points the proxy
	// at an attacker.
	display, args := show("LITELLM_MASTER_KEY=sk-live-0123456789abcdefghij\nOPENAI_API_BASE=https://attacker.example/v1\n")
	for _, want := range []string{"OPENAI_API_BASE=https://attacker.example/v1", "LITELLM_MASTER_KEY=[secret: 28 chars, sha256 ", "config_write"} {
		if !strings.Contains(display, want) {
			t.Errorf("the approval does not show %q:\n%s", want, display)
		}
	}
	for _, s := range []string{display, args} {
		if strings.Contains(s, "sk-live") {
			t.Errorf("the approval shows the secret: %s", s)
		}
	}

	// 9 KiB is shown whole.
	big := strings.Repeat("0123456789abcdef", 9<<10/16) + "THE-END"
	if display, _ := show(big); !strings.Contains(display, big) {
		t.Errorf("a 9 KiB call is not shown whole (%d bytes shown)", len(display))
	}

	// Control and bidi characters are escaped and marked.
	display, _ = show("a\u202eb\u0085c\u200bd\x7fe")
	for _, want := range []string{"a⟦U+202E⟧b⟦U+0085⟧c⟦U+200B⟧d⟦U+007F⟧e"} {
		if !strings.Contains(display, want) {
			t.Errorf("display %q lacks %q", display, want)
		}
	}

	// Over 64 KiB: refused, nobody asked, nothing written.
	_, err := f.host.ConfigWrite(t.Context(), viaMCP, env, strings.Repeat("x", 65<<10))
	if err == nil || !strings.Contains(err.Error(), "64 KiB") {
		t.Fatalf("a 65 KiB call: %v, want a refusal naming the limit", err)
	}
	if as, _ := f.svc.Approvals(t.Context(), "pending"); len(as) != 0 {
		t.Errorf("a person was asked about a 65 KiB call")
	}
	if b, _ := os.ReadFile(env); string(b) != "LITELLM_MASTER_KEY=old\n" {
		t.Errorf("the file changed: %q", b)
	}
}

// TestWideningAgentsThroughMCPWaitsForAPerson: creating an agent, or
// widening one, through MCP is destructive; a new agent starts with every
// tool denied and the daemon's default budget, and cannot be created at
// all while no default budget is set.
func TestWideningAgentsThroughMCPWaitsForAPerson(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := f.log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}, {ID: "n"}}}); err != nil {
		t.Fatal(err)
	}
	spec := agent.Agent{Name: "made", Model: "p/m", Prompt: "a worker"}
	if _, err := f.svc.CreateAgent(ctx, viaMCP, spec); err == nil || !strings.Contains(err.Error(), "default budget") {
		t.Fatalf("creation through MCP with no default budget: %v, want a refusal", err)
	}
	f.svc.DefaultBudget = &agent.Budget{DailyTokens: 5000}
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.CreateAgent(ctx, viaMCP, spec)
		done <- err
	}()
	ap := f.pending(t)
	if !strings.Contains(string(ap.Ask), `\"*\": \"deny\"`) || !strings.Contains(string(ap.Ask), "5000") {
		t.Errorf("the approval does not show the agent as it will be made: %s", ap.Ask)
	}
	if _, err := f.log.Agent(ctx, "made"); err == nil {
		t.Fatal("the agent exists before anyone approved")
	}
	if _, err := f.svc.Decide(ctx, operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a, err := f.log.Agent(ctx, "made")
	if err != nil || string(a.Permission) != `{"*":"deny"}` || a.Budget == nil || a.Budget.DailyTokens != 5000 {
		t.Fatalf("made: %+v %v; want every tool denied and the default budget", a, err)
	}

	// Its permitted models widen it: a person decides.
	models := []string{"p/m", "p/n"}
	go func() {
		_, err := f.svc.UpdateAgent(ctx, viaMCP, "made", control.AgentPatch{Models: &models})
		done <- err
	}()
	ap = f.pending(t)
	if _, err := f.svc.Decide(ctx, operator, ap.ID, "reject", "no"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a rejected widening went through")
	}
	if a, _ := f.log.Agent(ctx, "made"); len(a.Models) > 1 {
		t.Errorf("rejected, but made may use %v", a.Models)
	}
}

// An action no table gives a tier is never run, whoever asks; the refusal
// is audited. A call raised above its action's tier takes the raise.
func TestAnActionWithoutATierIsNeverRun(t *testing.T) {
	f := newFixture(t)
	ran := false
	err := f.svc.Do(t.Context(), control.Call{Actor: operator, Tool: "agent.teleport", Target: "x"},
		func(context.Context) (string, error) { ran = true; return "", nil })
	if !errors.Is(err, control.ErrForbidden) || ran {
		t.Fatalf("an action without a tier: %v (ran %v)", err, ran)
	}
	es, _ := f.log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: "agent.teleport"})
	if len(es) != 1 || es[0].Outcome != "refused" || es[0].Tier != "destructive" {
		t.Fatalf("audit: %+v", es)
	}
	if err := f.svc.Do(t.Context(), control.Call{Actor: operator, Tool: "agent.abort", Tier: control.Destructive, Target: "y"},
		func(context.Context) (string, error) { return "", nil }); err != nil {
		t.Fatal(err)
	}
	es, _ = f.log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: "agent.abort"})
	if len(es) == 0 || es[len(es)-1].Tier != "destructive" {
		t.Fatalf("a raised call: %+v", es)
	}
}

// A read follows the same rules whichever door it came through: the same
// "since" (a time or a duration), the same checks; only the limits differ,
// a read through MCP reaching a model's context.
func TestReadsFollowOneSetOfRules(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	for range 60 {
		if _, err := f.svc.Abort(ctx, operator, "nobody"); err == nil {
			t.Fatal("abort of nobody")
		}
	}
	for _, a := range []control.Actor{operator, viaMCP} {
		for _, since := range []string{"1h", time.Now().Add(-time.Hour).Format(time.RFC3339)} {
			es, err := f.svc.Audit(ctx, a, control.AuditRequest{Since: since})
			if err != nil || len(es) == 0 {
				t.Errorf("%s, since %s: %d entries, %v", a, since, len(es), err)
			}
		}
		for _, bad := range []control.AuditRequest{{Since: "yesterday"}, {Outcome: "maybe"}, {Limit: -1}, {Limit: control.APIReadMax + 1}} {
			if _, err := f.svc.Audit(ctx, a, bad); !agent.IsInvalid(err) {
				t.Errorf("%s, %+v: %v, want invalid", a, bad, err)
			}
		}
	}
	if es, _ := f.svc.Audit(ctx, viaMCP, control.AuditRequest{}); len(es) != control.MCPReadDefault {
		t.Errorf("through MCP, %d entries by default, want %d", len(es), control.MCPReadDefault)
	}
	if _, err := f.svc.Audit(ctx, viaMCP, control.AuditRequest{Limit: control.MCPReadMax + 1}); !agent.IsInvalid(err) {
		t.Errorf("through MCP past its maximum: %v", err)
	}
}
