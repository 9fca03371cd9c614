package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// Postgres is a throwaway PostgreSQL cluster (Debian's postgresql, 15 on
// Debian 12) in a temporary directory, listening on a Unix socket only,
// run as the postgres user when the test runs as root (initdb refuses
// root). Each test takes a database of its own (Database).
type Postgres struct {
	Dir  string // the cluster's data, its socket and its log
	bin  string // the server's programs (initdb, pg_ctl)
	cred *syscall.Credential
	dbs  atomic.Int64
}

// PostgresBin finds the newest installed server's programs.
func PostgresBin() (string, error) {
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(ms) == 0 {
		return "", fmt.Errorf("PostgreSQL's server is not installed: apt-get install postgresql (make test does)")
	}
	slices.SortFunc(ms, func(a, b string) int { return version(a) - version(b) })
	return filepath.Dir(ms[len(ms)-1]), nil
}

func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// NewPostgres starts a cluster for t, stopped when t ends.
func NewPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := PostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	// A short path: the socket's must fit a sun_path.
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Dir: dir, bin: bin}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("no postgres user to run the cluster as (initdb refuses root): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	p.run(t, "initdb", "-D", p.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	p.Start(t)
	t.Cleanup(func() { p.pgctl("stop", "-m", "immediate") })
	return p
}

func (p *Postgres) data() string { return filepath.Join(p.Dir, "data") }

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

func (p *Postgres) run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := p.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func (p *Postgres) pgctl(args ...string) error {
	args = append([]string{"-D", p.data(), "-l", filepath.Join(p.Dir, "log"), "-w"}, args...)
	out, err := p.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Start starts the cluster (again): on its socket only, no TCP.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if err := p.pgctl("-o", "-k "+p.Dir+" -c listen_addresses=''", "start"); err != nil {
		b, _ := os.ReadFile(filepath.Join(p.Dir, "log"))
		t.Fatalf("%v\n%s", err, b)
	}
}

// Kill stops the cluster as a crash would (immediate: no checkpoint, the
// WAL replayed at the next start).
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	if err := p.pgctl("stop", "-m", "immediate"); err != nil {
		t.Fatal(err)
	}
}

// DSN is the connection string of database db.
func (p *Postgres) DSN(db string) string {
	return "host=" + p.Dir + " user=postgres dbname=" + db + " sslmode=disable"
}

// Database creates a new, empty database and returns its DSN.
func (p *Postgres) Database(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", p.dbs.Add(1))
	cmd := p.command("psql", "-h", p.Dir, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE "+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create database %s: %v\n%s", name, err, out)
	}
	return p.DSN(name)
}
