package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/eventlog"
)

// In a cluster, what only an agent's owner can do (its opencode answers
// it: an abort, an approval's answer, a question's answer) is forwarded
// when asked of another daemon: the asking runner encodes it (Forwarded),
// Config.Forward carries it to the owner (stored, and picked up there),
// the owner's runner does it (Serve) and encodes the answer, with its
// error's kind, for the asker to return as its own.

// Forwarded is what is asked of an agent's owner.
type Forwarded struct {
	Kind     string             `json:"kind"` // abort, approval, answer
	ID       string             `json:"id,omitempty"`
	Decision string             `json:"decision,omitempty"`
	Message  string             `json:"message,omitempty"`
	Answer   *api.AnswerRequest `json:"answer,omitempty"`
	By       string             `json:"by,omitempty"`
}

// The kinds of error that cross daemons, and back to their sentinels.
var errCodes = []struct {
	code string
	err  error
}{
	{"invalid", ErrInvalid}, {"idle", ErrIdle}, {"not_found", eventlog.ErrNotFound}, {"conflict", eventlog.ErrConflict},
}

// errCode is err's kind (errCodes), "" if none of them.
func errCode(err error) string {
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// Serve does f for agent name on this daemon, its owner, and returns the
// answer encoded, or the error's kind and message.
func (m *Manager) Serve(ctx context.Context, name string, body []byte) (result []byte, code, msg string) {
	var f Forwarded
	var out any
	err := json.Unmarshal(body, &f)
	if err == nil && !m.here(name) {
		err = m.elsewhere(name) // it moved meanwhile
	}
	if err == nil {
		switch f.Kind {
		case "abort":
			out, err = m.Abort(ctx, name)
		case "approval":
			out, err = m.Reply(ctx, f.ID, f.Decision, f.Message, f.By)
		case "answer":
			if f.Answer == nil {
				err = fmt.Errorf("%w: no answer", ErrInvalid)
			} else {
				out, err = m.Answer(ctx, f.ID, *f.Answer, f.By)
			}
		default:
			err = fmt.Errorf("%w: a forwarded request of kind %q", ErrInvalid, f.Kind)
		}
	}
	if err != nil {
		return nil, errCode(err), err.Error()
	}
	result, err = json.Marshal(out)
	if err != nil {
		return nil, "", err.Error()
	}
	return result, "", ""
}

// forward asks f of agent name's owner through Config.Forward, decoding
// its answer into out; without Forward, it is the elsewhere error.
func (m *Manager) forward(ctx context.Context, name string, f Forwarded, out any) error {
	if m.cfg.Forward == nil {
		return m.elsewhere(name)
	}
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	result, code, msg, err := m.cfg.Forward(ctx, name, body)
	if err != nil {
		return err
	}
	if code != "" || msg != "" {
		for _, c := range errCodes {
			if c.code == code {
				return fmt.Errorf("%s: %w", msg, c.err)
			}
		}
		return errors.New(msg)
	}
	return json.Unmarshal(result, out)
}
