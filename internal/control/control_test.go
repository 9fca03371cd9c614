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
	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
	"github.com/taosagent/taosagent/internal/egress"
	"github.com/taosagent/taosagent/internal/event"
	"github.com/taosagent/taosagent/internal/eventlog"
	"github.com/taosagent/taosagent/internal/hostops"
	"github.com/taosagent/taosagent/internal/library"
	"github.com/taosagent/taosagent/internal/snapshot"
)

func TestDestructiveCallWaitsForAPersonThenRunsWithASnapshot(t *testing.T) {
	f := controltest.New(t)
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
		sn, err := f.Host.ConfigWrite(ctx, controltest.ViaMCP, f.Conf, `{"port": 4001, "master_key": "sk-live-0123456789abcdefghij"}`)
		done <- result{sn, err}
	}()
	ap := f.Pending(t)
	if ap.Source != "taosagent" || !strings.Contains(string(ap.Ask), `"config_write"`) || !strings.Contains(string(ap.Ask), "4001") {
		t.Errorf("approval %+v does not show the exact call", ap)
	}
	if strings.Contains(string(ap.Ask), "sk-live") {
		t.Errorf("the approval shows a secret: %s", ap.Ask)
	}
	if b, _ := os.ReadFile(f.Conf); strings.Contains(string(b), "4001") {
		t.Fatal("the file changed before anyone approved")
	}
	<-progressed // the waiting call reports that it waits
	if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if b, _ := os.ReadFile(f.Conf); !strings.Contains(string(b), "4001") {
		t.Fatalf("approved, but the file holds %s", b)
	}
	if old, err := f.Host.Snapshots.Content(r.sn); err != nil || !strings.Contains(string(old), "4000") {
		t.Errorf("the snapshot holds %q (%v), want the previous contents", old, err)
	}
	es := f.Audit(t, "config_write")
	if len(es) != 2 || es[0].Phase != "intent" || es[0].Outcome != "pending" || es[1].Outcome != "ok" {
		t.Fatalf("audit %+v, want the intent then the outcome", es)
	}
	if o := es[1]; o.Approval != ap.ID || o.Approver != "operator (api)" || o.Snapshot != r.sn.ID || o.Tier != "destructive" || o.Digest == "" {
		t.Errorf("outcome %+v lacks the approval, approver, snapshot or digest", o)
	}
	if got, _ := f.Svc.Approvals(t.Context(), "once"); len(got) != 1 || got[0].By != "operator (api)" {
		t.Errorf("the approval's final state: %+v", got)
	}
}

func TestRejectedOrExpiredCallsChangeNothing(t *testing.T) {
	f := controltest.New(t)
	before, _ := os.ReadFile(f.Conf)
	errc := make(chan error, 1)
	go func() {
		_, err := f.Host.ServiceRestart(t.Context(), controltest.ViaMCP, "litellm")
		errc <- err
	}()
	ap := f.Pending(t)
	if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "reject", "not now, it serves a user"); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "not now, it serves a user") {
		t.Errorf("rejected call returned %v", err)
	}
	if slices.ContainsFunc(f.Sysd.Calls(), func(c string) bool { return strings.Contains(c, "restart") }) {
		t.Errorf("systemctl restart ran after a rejection: %q", f.Sysd.Calls())
	}
	if es := f.Audit(t, "service_restart"); len(es) != 1 || es[0].Outcome != "refused" || es[0].Approval != ap.ID {
		t.Errorf("audit %+v, want one refusal naming the approval", es)
	}

	svc := &control.Service{Log: f.Log, Runner: f.Svc.Runner, Catalog: f.Svc.Catalog, Home: f.Home, ApprovalTTL: 50 * time.Millisecond}
	host := &hostops.Ops{Control: svc, Snapshots: f.Host.Snapshots, HostFile: f.Host.HostFile, Systemd: f.Host.Systemd}
	_, err = host.ConfigWrite(t.Context(), controltest.ViaMCP, f.Conf, `{"port": 1}`)
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired call returned %v", err)
	}
	if after, _ := os.ReadFile(f.Conf); string(after) != string(before) {
		t.Errorf("the file changed: %s", after)
	}
	if ex, _ := f.Svc.Approvals(t.Context(), "expired"); len(ex) != 1 {
		t.Errorf("expired approvals: %+v", ex)
	}
}

func TestAnApprovalIsSpentOnceAndOnlyByAPerson(t *testing.T) {
	f := controltest.New(t)
	errc := make(chan error, 1)
	go func() {
		_, err := f.Host.InstanceKill(t.Context(), controltest.ViaMCP, "host")
		errc <- err
	}()
	// There is no host agent in this store: the kill is refused before
	// anyone is asked.
	if err := <-errc; !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("kill of an unknown agent: %v", err)
	}
	go func() {
		_, err := f.Host.ServiceRestart(t.Context(), controltest.ViaMCP, "litellm")
		errc <- err
	}()
	ap := f.Pending(t)
	for _, a := range []control.Actor{{Kind: control.Agent, Name: "host", Channel: control.MCP}, controltest.ViaMCP} {
		if _, err := f.Svc.Decide(t.Context(), a, ap.ID, "once", ""); !errors.Is(err, control.ErrForbidden) {
			t.Errorf("%s answered an approval: %v", a, err)
		}
	}
	if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "always", ""); err == nil {
		t.Error(`"always" was accepted for a destructive host action`)
	}
	if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "once", ""); !errors.Is(err, eventlog.ErrConflict) {
		t.Errorf("a second answer: %v, want a conflict", err)
	}
	restarts := 0
	for _, c := range f.Sysd.Calls() {
		if strings.HasPrefix(c, "systemctl restart") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("%d restarts, want 1: %q", restarts, f.Sysd.Calls())
	}
	refusals, _ := f.Log.AuditSearch(t.Context(), eventlog.AuditQuery{Outcome: "refused", Action: "approval.once"})
	if len(refusals) != 3 { // two forbidden actors, the second answer
		t.Errorf("refusals audited: %+v", refusals)
	}
}

// If the intent cannot be written to the audit, the action does not run.
func TestAnActionWhoseIntentCannotBeAuditedIsRefused(t *testing.T) {
	f := controltest.New(t, func(db string) {
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
	_, err := f.Host.ConfigSnapshot(context.Background(), controltest.Operator, f.Conf)
	if !errors.Is(err, control.ErrRefused) {
		t.Fatalf("snapshot with a broken audit: %v", err)
	}
	if list, _ := f.Host.Snapshots.List(""); len(list) != 0 {
		t.Errorf("the action ran: %+v", list)
	}
}

// TestAnApprovalShowsExactlyWhatWillRun: a person sees every character of
// the call but a secret's own value: a masked key does not swallow the
// line after it, a 9 KiB call is shown whole, control and bidi characters
// are shown escaped, and a call over 64 KiB is refused before anyone is
// asked.
func TestAnApprovalShowsExactlyWhatWillRun(t *testing.T) {
	f := controltest.New(t)
	env := filepath.Join(f.Home, "litellm.env")
	os.WriteFile(env, []byte("LITELLM_MASTER_KEY=old\n"), 0o640)
	os.WriteFile(f.Host.HostFile, []byte(`{"services":[{"name":"litellm","unit":"litellm.service","configs":[{"path":"`+env+`","format":"none"}]}]}`), 0o600)

	show := func(content string) (display string, args string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := f.Host.ConfigWrite(t.Context(), controltest.ViaMCP, env, content)
			done <- err
		}()
		ap := f.Pending(t)
		var ask struct {
			Display string          `json:"display"`
			Args    json.RawMessage `json:"args"`
		}
		if err := json.Unmarshal(ap.Ask, &ask); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Svc.Decide(t.Context(), controltest.Operator, ap.ID, "reject", ""); err != nil {
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
	_, err := f.Host.ConfigWrite(t.Context(), controltest.ViaMCP, env, strings.Repeat("x", 65<<10))
	if err == nil || !strings.Contains(err.Error(), "64 KiB") {
		t.Fatalf("a 65 KiB call: %v, want a refusal naming the limit", err)
	}
	if as, _ := f.Svc.Approvals(t.Context(), "pending"); len(as) != 0 {
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
	f := controltest.New(t)
	ctx := t.Context()
	if err := f.Log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}, {ID: "n"}}}); err != nil {
		t.Fatal(err)
	}
	spec := agent.Agent{Name: "made", Model: "p/m", Prompt: "a worker"}
	if _, err := f.Svc.CreateAgent(ctx, controltest.ViaMCP, spec); err == nil || !strings.Contains(err.Error(), "default budget") {
		t.Fatalf("creation through MCP with no default budget: %v, want a refusal", err)
	}
	f.Svc.DefaultBudget = &agent.Budget{DailyTokens: 5000}
	done := make(chan error, 1)
	go func() {
		_, err := f.Svc.CreateAgent(ctx, controltest.ViaMCP, spec)
		done <- err
	}()
	ap := f.Pending(t)
	if !strings.Contains(string(ap.Ask), `\"*\": \"deny\"`) || !strings.Contains(string(ap.Ask), "5000") {
		t.Errorf("the approval does not show the agent as it will be made: %s", ap.Ask)
	}
	if _, err := f.Log.Agent(ctx, "made"); err == nil {
		t.Fatal("the agent exists before anyone approved")
	}
	if _, err := f.Svc.Decide(ctx, controltest.Operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a, err := f.Log.Agent(ctx, "made")
	if err != nil || string(a.Permission) != `{"*":"deny"}` || a.Budget == nil || a.Budget.DailyTokens != 5000 {
		t.Fatalf("made: %+v %v; want every tool denied and the default budget", a, err)
	}

	// Its permitted models widen it: a person decides.
	models := []string{"p/m", "p/n"}
	go func() {
		_, err := f.Svc.UpdateAgent(ctx, controltest.ViaMCP, "made", control.AgentPatch{Models: &models})
		done <- err
	}()
	ap = f.Pending(t)
	if _, err := f.Svc.Decide(ctx, controltest.Operator, ap.ID, "reject", "no"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a rejected widening went through")
	}
	if a, _ := f.Log.Agent(ctx, "made"); len(a.Models) > 1 {
		t.Errorf("rejected, but made may use %v", a.Models)
	}

	// A Library item too: the approval shows the version pinned, and that
	// version is what the agent gets.
	it, _, _, err := f.Svc.LibraryAdd(ctx, controltest.Operator, map[string][]byte{
		"item.json": []byte(`{"kind":"skill","name":"notes","description":"Takes notes."}`),
		"SKILL.md":  []byte("---\nname: notes\ndescription: Takes notes\n---\nTake notes.\n")})
	if err != nil {
		t.Fatal(err)
	}
	lib := []string{"skill/notes"}
	go func() {
		_, err := f.Svc.UpdateAgent(ctx, controltest.ViaMCP, "made", control.AgentPatch{Library: &lib})
		done <- err
	}()
	ap = f.Pending(t)
	if !strings.Contains(string(ap.Ask), "skill/notes@"+it.Digest) {
		t.Errorf("the approval does not show the version pinned: %s", ap.Ask)
	}
	if _, err := f.Svc.Decide(ctx, controltest.Operator, ap.ID, "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a, _ := f.Log.Agent(ctx, "made"); !slices.Equal(a.Library, []string{"skill/notes@" + it.Digest}) {
		t.Errorf("made's library: %v", a.Library)
	}
	bad := []string{"skill/absent"}
	if _, err := f.Svc.UpdateAgent(ctx, controltest.Operator, "made", control.AgentPatch{Library: &bad}); !agent.IsInvalid(err) {
		t.Errorf("an item the Library does not have: %v, want invalid", err)
	}
	if err := f.Svc.LibraryRemove(ctx, controltest.Operator, library.Skill, "notes"); !errors.Is(err, eventlog.ErrInUse) || !strings.Contains(err.Error(), "made") {
		t.Errorf("removing an item an agent is given: %v, want in use, naming the agent", err)
	}
	refusals, _ := f.Log.AuditSearch(ctx, eventlog.AuditQuery{Outcome: "refused", Action: "agent.update"})
	if len(refusals) == 0 || !strings.Contains(refusals[len(refusals)-1].Detail, "skill/absent") {
		t.Errorf("the refusal's audit: %+v", refusals)
	}
}

// An action no table gives a tier is never run, whoever asks; the refusal
// is audited. A call raised above its action's tier takes the raise.
func TestAnActionWithoutATierIsNeverRun(t *testing.T) {
	f := controltest.New(t)
	ran := false
	err := f.Svc.Do(t.Context(), control.Call{Actor: controltest.Operator, Tool: "agent.teleport", Target: "x"},
		func(context.Context) (string, error) { ran = true; return "", nil })
	if !errors.Is(err, control.ErrForbidden) || ran {
		t.Fatalf("an action without a tier: %v (ran %v)", err, ran)
	}
	es, _ := f.Log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: "agent.teleport"})
	if len(es) != 1 || es[0].Outcome != "refused" || es[0].Tier != "destructive" {
		t.Fatalf("audit: %+v", es)
	}
	if err := f.Svc.Do(t.Context(), control.Call{Actor: controltest.Operator, Tool: "agent.abort", Tier: control.Destructive, Target: "y"},
		func(context.Context) (string, error) { return "", nil }); err != nil {
		t.Fatal(err)
	}
	es, _ = f.Log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: "agent.abort"})
	if len(es) == 0 || es[len(es)-1].Tier != "destructive" {
		t.Fatalf("a raised call: %+v", es)
	}
}

// A read follows the same rules whichever door it came through: the same
// "since" (a time or a duration), the same checks; only the limits differ,
// a read through MCP reaching a model's context.
func TestReadsFollowOneSetOfRules(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	for range 60 {
		if _, err := f.Svc.Abort(ctx, controltest.Operator, "nobody"); err == nil {
			t.Fatal("abort of nobody")
		}
	}
	for _, a := range []control.Actor{controltest.Operator, controltest.ViaMCP} {
		for _, since := range []string{"1h", time.Now().Add(-time.Hour).Format(time.RFC3339)} {
			es, err := f.Svc.Audit(ctx, a, control.AuditRequest{Since: since})
			if err != nil || len(es) == 0 {
				t.Errorf("%s, since %s: %d entries, %v", a, since, len(es), err)
			}
		}
		for _, bad := range []control.AuditRequest{{Since: "yesterday"}, {Outcome: "maybe"}, {Limit: -1}, {Limit: control.APIReadMax + 1}} {
			if _, err := f.Svc.Audit(ctx, a, bad); !agent.IsInvalid(err) {
				t.Errorf("%s, %+v: %v, want invalid", a, bad, err)
			}
		}
	}
	if es, _ := f.Svc.Audit(ctx, controltest.ViaMCP, control.AuditRequest{}); len(es) != control.MCPReadDefault {
		t.Errorf("through MCP, %d entries by default, want %d", len(es), control.MCPReadDefault)
	}
	if _, err := f.Svc.Audit(ctx, controltest.ViaMCP, control.AuditRequest{Limit: control.MCPReadMax + 1}); !agent.IsInvalid(err) {
		t.Errorf("through MCP past its maximum: %v", err)
	}
}

// Through the doors' egress proxy, an agent may reach what its own policy
// names, and any other principal nothing; each decision lands in the
// agent's log.
func TestTheEgressPolicyIsTheAgentsOwn(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	f.Log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}}})
	if _, err := f.Log.CreateAgent(ctx, agent.Agent{Name: "a", Model: "p/m",
		Egress: &egress.Policy{Mode: egress.Hosts, Hosts: []string{"example.com"}}}); err != nil {
		t.Fatal(err)
	}
	proxy := f.Svc.EgressProxy()
	if p, err := proxy.Policy(ctx, egress.Principal{Kind: "agent", Name: "a"}); err != nil || p.String() != "hosts: example.com" {
		t.Fatalf("agent a's policy: %v %v", p, err)
	}
	if p, _ := proxy.Policy(ctx, egress.Principal{Kind: "mcp", Name: "a"}); p.Normalized().Mode != egress.None {
		t.Fatalf("another principal of the same name: %v", p)
	}
	done := make(chan struct{})
	sub, _ := f.Log.Subscribe("a", 0, false, event.Egress)
	defer sub.Close()
	go func() {
		defer close(done)
		proxy.Record(egress.Decision{Principal: egress.Principal{Kind: "agent", Name: "a"}, Host: "example.com", Port: 443, Allowed: true})
	}()
	recs, err := sub.Next(ctx, 1)
	<-done
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0].Body), "example.com") {
		t.Fatalf("the decision in the log: %v %v", recs, err)
	}
}

// Only a person answers what a model asks: an agent, or anything that comes
// through MCP, is refused before anything is looked up, and the refusal is
// audited; bad input is refused with the field named.
func TestOnlyAPersonAnswersAQuestion(t *testing.T) {
	f := controltest.New(t)
	ans := api.AnswerRequest{Answers: [][]string{{"red"}}}
	for _, a := range []control.Actor{{Kind: control.Agent, Name: "host", Channel: control.MCP}, controltest.ViaMCP} {
		if _, err := f.Svc.Answer(t.Context(), a, "que_1", ans); !errors.Is(err, control.ErrForbidden) {
			t.Errorf("%s answered a question: %v", a, err)
		}
	}
	if refusals, _ := f.Log.AuditSearch(t.Context(), eventlog.AuditQuery{Outcome: "refused", Action: "question.answer"}); len(refusals) != 2 {
		t.Errorf("refusals audited: %+v", refusals)
	}
	if _, err := f.Svc.Answer(t.Context(), controltest.Operator, "que_1", ans); !errors.Is(err, eventlog.ErrNotFound) {
		t.Errorf("an unknown question: %v", err)
	}
	if _, err := f.Svc.Questions(t.Context(), "once"); err == nil {
		t.Error("an approval's state was taken for a question's")
	}
}

// TestAnAgentMadeFromATemplate takes the template's persona and settings
// where its request leaves them unset, its items pinned; through MCP, the
// approval shows the agent as the template makes it. A template the
// Library does not have is refused, audited, and makes nothing.
func TestAnAgentMadeFromATemplate(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	if err := f.Log.CreateProvider(ctx, agent.Provider{ID: "p", BaseURL: "http://127.0.0.1:9/v1", Models: []agent.Model{{ID: "m"}, {ID: "n"}}}); err != nil {
		t.Fatal(err)
	}
	skill, _, _, err := f.Svc.LibraryAdd(ctx, controltest.Operator, map[string][]byte{
		"item.json": []byte(`{"kind":"skill","name":"notes","description":"Takes notes."}`),
		"SKILL.md":  []byte("---\nname: notes\ndescription: Takes notes\n---\nTake notes.\n")})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _, _, err := f.Svc.LibraryAdd(ctx, controltest.Operator, map[string][]byte{
		"item.json": []byte(`{"kind":"agent","name":"reviewer","description":"Reviews changes.","agent":{"model":"p/n","models":["p/m","p/n"],` +
			`"permission":{"edit":"deny","bash":"ask"},"tools":{"webfetch":false},"library":["skill/notes"]}}`),
		"agent.md": []byte("---\ndescription: Reviews changes\n---\nYou review changes. Be brief.\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.CreateAgentFrom(ctx, controltest.Operator, agent.Agent{Name: "rev", Models: []string{"p/m"}, Model: "p/m"}, "agent/reviewer"); err != nil {
		t.Fatal(err)
	}
	a, err := f.Log.Agent(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	if a.Prompt != "You review changes. Be brief." || a.Model != "p/m" || !slices.Equal(a.Models, []string{"p/m"}) ||
		!strings.Contains(string(a.Permission), `"edit"`) || a.Tools["webfetch"] || !slices.Equal(a.Library, []string{"skill/notes@" + skill.Digest}) {
		t.Fatalf("made from the template: %+v", a)
	}

	// Through MCP: the approval shows the template's permission and the
	// pinned item, not a bare request.
	f.Svc.DefaultBudget = &agent.Budget{DailyTokens: 5000}
	done := make(chan error, 1)
	go func() {
		_, err := f.Svc.CreateAgentFrom(ctx, controltest.ViaMCP, agent.Agent{Name: "rev2"}, "agent/reviewer@"+tmpl.Digest)
		done <- err
	}()
	ap := f.Pending(t)
	if !strings.Contains(string(ap.Ask), `\"bash\": \"ask\"`) || !strings.Contains(string(ap.Ask), "skill/notes@"+skill.Digest) {
		t.Errorf("the approval does not show the agent as the template makes it: %s", ap.Ask)
	}
	if _, err := f.Svc.Decide(ctx, controltest.Operator, ap.ID, "reject", "no"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a rejected creation went through")
	}

	for _, bad := range []string{"agent/absent", "skill/notes", "agent/reviewer@" + strings.Repeat("0", 64)} {
		if _, err := f.Svc.CreateAgentFrom(ctx, controltest.Operator, agent.Agent{Name: "x"}, bad); !agent.IsInvalid(err) {
			t.Errorf("template %s: %v, want invalid", bad, err)
		}
	}
	if _, err := f.Log.Agent(ctx, "x"); err == nil {
		t.Error("a refused template made an agent")
	}
	refusals, _ := f.Log.AuditSearch(ctx, eventlog.AuditQuery{Outcome: "refused", Action: "agent.create"})
	if len(refusals) < 3 {
		t.Errorf("%d refusals audited, want 3", len(refusals))
	}
}
