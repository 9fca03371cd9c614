package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/taosagent/taosagent/internal/backup"
	"github.com/taosagent/taosagent/internal/home"
)

// runBackup writes a consistent backup of the home, the daemon running or
// not (backup.Make).
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("backup", stderr)
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want backup FILE (a new file)", errUsage)
	}
	m, err := backup.Make(ctx, home.Home{Dir: *dir}, fs.Arg(0), Version)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s (0600): the event log up to event %d, schema %d\n", *dir, fs.Arg(0), m.Head, m.Schema)
	return nil
}

// runRestore brings a backup back into a new, empty home (backup.Restore).
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("restore", stderr)
	dir := fs.String("home", defaultHome(), "the new taosagent home (empty, or not there yet; env TAOSAGENT_HOME)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want restore FILE", errUsage)
	}
	m, moved, err := backup.Restore(ctx, fs.Arg(0), home.Home{Dir: *dir})
	if err != nil {
		return err
	}
	if moved {
		fmt.Fprintf(stdout, "the backup was made of %s: at this new path each agent's next message starts a new conversation (opencode's sessions name the old path); every event is here\n", m.Home)
	}
	fmt.Fprintf(stdout, "restored %s into %s: made by taosagent %s at %s, the event log up to event %d; start the daemon on it (taosagent serve --home %s)\n",
		fs.Arg(0), *dir, m.Version, m.Created.Format("2006-01-02 15:04:05Z"), m.Head, *dir)
	return nil
}
