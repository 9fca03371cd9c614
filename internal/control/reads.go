package control

import (
	"context"
	"time"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// The rules of a read, whichever front end asks: how many entries it
// returns, what a "since" may be, what an audit query may name.

// Read limits. A read through MCP reaches a model's context: a smaller
// default and maximum than a read through the API.
const (
	APIReadDefault, APIReadMax = 1000, 10000
	MCPReadDefault, MCPReadMax = 50, 500
)

// ReadLimit is how many entries a read by a returns: want, or the
// channel's default when want is 0; beyond the channel's maximum is
// refused.
func ReadLimit(a Actor, want int) (int, error) {
	def, most := APIReadDefault, APIReadMax
	if a.Channel == MCP {
		def, most = MCPReadDefault, MCPReadMax
	}
	switch {
	case want == 0:
		return def, nil
	case want < 0 || want > most:
		return 0, Invalidf("limit: must be 1 to %d", most)
	}
	return want, nil
}

// ParseSince reads a lower bound in time: an RFC 3339 time, or a duration
// back from now ("15m"); "" is none.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, Invalidf("since: want an RFC 3339 time or a duration such as 15m")
}

// AuditRequest is a read of the audit, as any front end asks for it.
type AuditRequest struct {
	After, Before int64 // entry ids: only entries after, or before, these
	Newest        bool  // the newest Limit entries (before Before), not the oldest
	Limit         int   // 0: the channel's default (ReadLimit)
	Actor         string
	Tool          string // the action
	Outcome       string // pending, ok, refused or failed
	Since         string // ParseSince
}

// Audit reads the audit for a.
func (s *Service) Audit(ctx context.Context, a Actor, r AuditRequest) ([]eventlog.AuditEntry, error) {
	limit, err := ReadLimit(a, r.Limit)
	if err != nil {
		return nil, err
	}
	since, err := ParseSince(r.Since, time.Now())
	if err != nil {
		return nil, err
	}
	if err := api.CheckOutcome(r.Outcome); err != nil {
		return nil, Invalidf("%v", err)
	}
	if len(r.Actor) > 256 || len(r.Tool) > 128 {
		return nil, Invalidf("actor or tool: too long")
	}
	if r.After < 0 || r.Before < 0 {
		return nil, Invalidf("after, before: must not be negative")
	}
	return s.Log.AuditSearch(ctx, eventlog.AuditQuery{After: r.After, Before: r.Before, Newest: r.Newest, Limit: limit,
		Actor: r.Actor, Action: r.Tool, Outcome: r.Outcome, Since: since})
}
