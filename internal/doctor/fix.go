package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// Fixer applies recipes for a person: each destructive one is confirmed
// first, each step is reported, and each recipe is audited in the home's
// recovery audit before it runs (if that cannot be written, it does not
// run) and after.
type Fixer struct {
	Env *Env
	// Confirm asks the person whether to run a destructive recipe; nil
	// refuses every destructive recipe.
	Confirm func(r Recipe, arg string, plan []string) bool
	// Step reports what is being done.
	Step func(recipe, step string)
	// Actor names who fixes, for the audit (e.g. "recovery (uid 0)").
	Actor string
}

// ErrDeclined: the person did not confirm a destructive recipe.
var ErrDeclined = errors.New("declined")

// Apply runs recipe id ("restart-service:litellm"); with dry it only
// reports what it would do.
func (f *Fixer) Apply(ctx context.Context, id string, dry bool) error {
	r, arg, ok := Lookup(id)
	if !ok {
		return fmt.Errorf("unknown recipe %q (taosagent fix --list)", id)
	}
	step := func(s string) {
		if f.Step != nil {
			f.Step(id, s)
		}
	}
	if dry {
		_, err := r.Run(ctx, f.Env, arg, true, step)
		return err
	}
	if r.Destructive {
		var plan []string
		if _, err := r.Run(ctx, f.Env, arg, true, func(s string) { plan = append(plan, s) }); err != nil {
			f.audit(id, "outcome", api.OutcomeRefused, err.Error(), "", 0)
			return err
		}
		if f.Confirm == nil || !f.Confirm(r, arg, plan) {
			f.audit(id, "outcome", api.OutcomeRefused, "not confirmed by a person", "", 0)
			return fmt.Errorf("%s: %w", id, ErrDeclined)
		}
	}
	if err := f.audit(id, "intent", api.OutcomePending, "", "", 0); err != nil {
		return fmt.Errorf("the recovery audit cannot be written (%v), so nothing was done", err)
	}
	start := time.Now()
	snap, err := r.Run(ctx, f.Env, arg, false, step)
	outcome, detail := api.OutcomeOK, ""
	if err != nil {
		outcome, detail = api.OutcomeFailed, err.Error()
	}
	f.audit(id, "outcome", outcome, detail, snap, time.Since(start))
	return err
}

func (f *Fixer) audit(id, phase, outcome, detail, snap string, d time.Duration) error {
	actor := f.Actor
	if actor == "" {
		actor = fmt.Sprintf("recovery (uid %d)", os.Getuid())
	}
	r, arg, _ := Lookup(id)
	tier := "write"
	if r.Destructive {
		tier = "destructive"
	}
	return AppendAudit(f.Env.Home, eventlog.AuditEntry{Actor: actor, Action: "fix." + r.ID, Tier: tier, Target: arg, Phase: phase,
		Outcome: outcome, Detail: detail, Snapshot: snap, DurationMS: d.Milliseconds()})
}

// Planned returns the recipes that fs call for, each once, in the order
// of Recipes: what blocks a start first, the daemon's start last.
func Planned(fs []Finding) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fs {
		if f.Recipe != "" && f.Severity > OK && !seen[f.Recipe] {
			seen[f.Recipe] = true
			out = append(out, f.Recipe)
		}
	}
	order := map[string]int{}
	for i, r := range Recipes() {
		order[r.ID] = i
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ra, _, _ := Lookup(a)
		rb, _, _ := Lookup(b)
		return order[ra.ID] - order[rb.ID]
	})
	return out
}
