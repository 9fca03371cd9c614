package hostops_test

import (
	"strings"
	"testing"

	"github.com/taosagent/taosagent/internal/control"
	"github.com/taosagent/taosagent/internal/control/controltest"
	"github.com/taosagent/taosagent/internal/hostops"
)

func TestInvalidContentIsRefusedBeforeAnyoneIsAsked(t *testing.T) {
	f := controltest.New(t)
	for _, c := range []struct{ path, content string }{
		{f.Conf, `{"port": `},                   // not JSON
		{"/etc/passwd", "root::0:0::/:/bin/sh"}, // not declared
		{f.Conf, strings.Repeat("x", hostops.MaxConfig+1)},
	} {
		if _, err := f.Host.ConfigWrite(t.Context(), controltest.ViaMCP, c.path, c.content); err == nil {
			t.Errorf("write of %s accepted", c.path)
		}
	}
	if as, _ := f.Svc.Approvals(t.Context(), ""); len(as) != 0 {
		t.Errorf("a person was asked about bad input: %+v", as)
	}
	if es := f.Audit(t, "config_write"); len(es) != 3 || es[0].Outcome != "refused" {
		t.Errorf("refusals not audited: %+v", es)
	}
}

func TestReadsAreBoundedRedactedAndMarkedUntrusted(t *testing.T) {
	f := controltest.New(t)
	ctx := t.Context()
	cf, err := f.Host.ConfigShow(ctx, f.Conf)
	if err != nil || strings.Contains(cf.Content, "sk-live") || !strings.Contains(cf.Content, "4000") || cf.Note != control.UntrustedNote {
		t.Errorf("config show: %+v %v", cf, err)
	}
	if _, err := f.Host.ConfigShow(ctx, "/etc/shadow"); err == nil {
		t.Error("an undeclared file was shown")
	}
	lg, err := f.Host.Logs(ctx, controltest.Operator, hostops.LogsRequest{Service: "litellm", Lines: 10})
	if err != nil || len(lg.Lines) != 1 || strings.Contains(lg.Lines[0], "sk-live") || !strings.Contains(lg.Lines[0], "token=[secret: ") {
		t.Errorf("logs: %+v %v", lg, err)
	}
	for _, bad := range []hostops.LogsRequest{{}, {Service: "a", Agent: "b"}, {Service: "nope"}, {Service: "litellm", Since: "yesterday"}} {
		if _, err := f.Host.Logs(ctx, controltest.Operator, bad); err == nil {
			t.Errorf("logs %+v accepted", bad)
		}
	}
	st, err := f.Host.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 2 || st.Services[1].Status == nil || st.Services[1].Status.ActiveState != "active" || st.Memory.TotalBytes == 0 {
		t.Errorf("status: %+v", st)
	}
}
