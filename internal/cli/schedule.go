package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/taosagent/taosagent/internal/client"
)

// runSchedule is `taosagent schedule add|list|rm|run`.
func runSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: schedule add|list|rm|run", errUsage)
	}
	verb, args := args[0], args[1:]
	fs := flags("schedule "+verb, stderr)
	mk := clientFlags(fs)
	var r client.ScheduleRequest
	asJSON := fs.Bool("json", false, "print JSON")
	if verb == "add" {
		fs.StringVar(&r.Cron, "cron", "", `a cron expression: five fields ("0 9 * * 1-5") or a descriptor (@daily)`)
		fs.StringVar(&r.TZ, "tz", "", "the time zone of --cron (default UTC), e.g. Europe/Paris")
		fs.StringVar(&r.Every, "every", "", "an interval instead of --cron (90m, 24h)")
		fs.StringVar(&r.Conversation, "conversation", "", "the conversation each run goes to (default: the agent's current one)")
		fs.StringVar(&r.Missed, "missed", "", "slots missed while the daemon was down: once (default: the last runs once, late) or skip")
		fs.StringVar(&r.Overlap, "overlap", "", "a slot while the previous run goes on: skip (default) or queue")
	}
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if err := checkVerb("schedule", verb, fs.NArg(), map[string]string{"add": "AGENT MESSAGE", "list": "AGENT", "rm": "AGENT SCHEDULE", "run": "AGENT SCHEDULE"}); err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	switch verb {
	case "add":
		r.Message = fs.Arg(1)
		sc, err := c.CreateSchedule(ctx, name, r)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(sc)
		}
		printSchedule(stdout, sc)
	case "list":
		ss, err := c.Schedules(ctx, name)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(ss)
		}
		for _, sc := range ss {
			printSchedule(stdout, sc)
		}
		if len(ss) == 0 {
			fmt.Fprintln(stdout, "no schedules")
		}
	case "rm":
		if err := c.DeleteSchedule(ctx, name, fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(1))
	case "run":
		acc, err := c.RunSchedule(ctx, name, fs.Arg(1))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sent: input %d (%s)\n", acc.Input, acc.State)
	}
	return nil
}

func printSchedule(w io.Writer, sc client.Schedule) {
	when := "every " + sc.Every
	if sc.Cron != "" {
		when = "cron " + sc.Cron
		if sc.TZ != "" {
			when += " (" + sc.TZ + ")"
		}
	}
	fmt.Fprintf(w, "%s  %s  missed: %s, overlap: %s  %q\n", sc.ID, when, sc.Missed, sc.Overlap, sc.Message)
	for _, t := range sc.Next {
		fmt.Fprintf(w, "    next %s\n", t.Local().Format("2006-01-02 15:04:05 MST"))
	}
}
