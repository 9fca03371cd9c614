package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// Unit returns taosagent's systemd unit: the daemon on home at addr,
// restarted on failure. It is ordered after the network only, never tied
// to the main taOS service, so that it can restart that service when it is
// the broken one.
func Unit(self, homeDir, addr string, user bool) string {
	wanted := "multi-user.target"
	if user {
		wanted = "default.target"
	}
	return unit(self, homeDir, addr, "", wanted)
}

// UnitFor is the system unit of `taosagent install`: Unit, run as owner
// (no User= line for root).
func UnitFor(self, homeDir, addr, owner string) string {
	if owner == "root" {
		owner = ""
	}
	return unit(self, homeDir, addr, owner, "multi-user.target")
}

func unit(self, homeDir, addr, owner, wanted string) string {
	userLine := ""
	if owner != "" {
		userLine = "User=" + owner + "\n"
	}
	return fmt.Sprintf(`[Unit]
Description=taosagent: host control plane for opencode agents
Documentation=https://github.com/taosagent/taosagent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
%sExecStart=%s serve --home %s --listen %s
Restart=on-failure
RestartSec=2
# A planned restart (an upgrade): the daemon hands over to its binary in
# place, its turns and opencode instances kept.
ExecReload=/bin/kill -HUP $MAINPID
# The daemon stops its opencode instances itself when it is stopped; when
# it dies, they go on, and the next daemon adopts them.
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=%s
`, userLine, quote(self), quote(homeDir), addr, wanted)
}

// quote quotes a path for an ExecStart line when it needs it.
func quote(s string) string {
	if strings.ContainsAny(s, " \t\"'\\") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	return s
}

// UnitDir is where a unit is installed: the system's, or the user's.
func UnitDir(user bool) string {
	if user {
		if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
			return filepath.Join(x, "systemd", "user")
		}
		h, _ := os.UserHomeDir()
		return filepath.Join(h, ".config", "systemd", "user")
	}
	return "/etc/systemd/system"
}

// InstallUnit writes taosagent's unit into dir (created if needed) and
// enables it through systemd.
func (e *Env) InstallUnit(ctx context.Context, dir string, user bool, step func(string)) error {
	path := filepath.Join(dir, e.unit())
	unit := Unit(e.Self, e.Home.Dir, e.Addr, user)
	if b, err := os.ReadFile(path); err == nil && string(b) == unit {
		step(path + " is up to date")
	} else {
		step("write " + path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(path, []byte(unit), 0o644); err != nil {
			return err
		}
	}
	step("systemctl daemon-reload; systemctl enable " + e.unit())
	return e.Systemd.Enable(ctx, e.unit(), user)
}

func installService(ctx context.Context, e *Env, _ string, dry bool, step func(string)) (string, error) {
	if e.Self == "" {
		return "", fmt.Errorf("the taosagent binary is unknown")
	}
	dir := e.UnitDir
	if dir == "" {
		dir = UnitDir(os.Geteuid() != 0)
	}
	if dry {
		step("write " + filepath.Join(dir, e.unit()) + " and enable it")
		return "", nil
	}
	return "", e.InstallUnit(ctx, dir, os.Geteuid() != 0, step)
}
