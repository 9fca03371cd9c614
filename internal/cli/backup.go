package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/taosagent/taosagent/internal/backup"
	"github.com/taosagent/taosagent/internal/home"
)

// runBackup writes a consistent backup of the home, the daemon running or
// not (backup.Make).
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("backup", stderr)
	dir := fs.String("home", defaultHome(), "taosagent home directory (env TAOSAGENT_HOME)")
	db := fs.String("db", "", "the PostgreSQL database the daemon keeps its store in, if it does (serve --db; env TAOSAGENT_DB): refused, see the message")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want backup FILE (a new file)", errUsage)
	}
	if *db != "" || os.Getenv("TAOSAGENT_DB") != "" {
		// A backup of the home alone would look whole and restore a
		// daemon with no events, no agents and no audit.
		return errors.New("the daemon keeps its store in PostgreSQL (--db, TAOSAGENT_DB): back the database up with PostgreSQL's own tools (pg_dump), and the home's files (its token, keys and agents' directories) as files; taosagent backup backs up a home whose store is its SQLite file")
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
