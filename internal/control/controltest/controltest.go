// Package controltest builds a control service, its host operations and
// its App Builder's gate over a fresh home, for the tests of control,
// hostops and appgate.
package controltest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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

// Fixture is a control service over a fresh home, with its host
// operations and its App Builder's gate: one managed service (litellm)
// whose config file is declared as JSON, behind a fake systemd.
type Fixture struct {
	Svc  *control.Service
	Host *hostops.Ops
	Apps *appgate.Gate
	Log  *eventlog.Log
	Home string
	Conf string // a declared json config file
	Sysd *testenv.FakeSystemd
	Sup  *supervisor.Supervisor
}

// New builds a Fixture; each prep is given the database's path first.
func New(t *testing.T, prep ...func(dbPath string)) *Fixture {
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
	return &Fixture{Svc: svc, Host: host, Apps: &appgate.Gate{Control: svc}, Log: log, Home: home, Conf: conf, Sysd: f, Sup: sup}
}

// The operator, through MCP and through the API.
var (
	ViaMCP   = control.Actor{Kind: control.Operator, Channel: control.MCP}
	Operator = control.Actor{Kind: control.Operator, Channel: control.API}
)

// Pending waits until one approval is pending and returns it.
func (f *Fixture) Pending(t *testing.T) eventlog.Approval {
	t.Helper()
	for range 500 {
		as, err := f.Svc.Approvals(t.Context(), "pending")
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

// Audit is the audit entries of action.
func (f *Fixture) Audit(t *testing.T, action string) []eventlog.AuditEntry {
	t.Helper()
	es, err := f.Log.AuditSearch(t.Context(), eventlog.AuditQuery{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return es
}
