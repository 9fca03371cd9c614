package control

import (
	"context"
	"fmt"
)

// ReloadOpencode switches the daemon to the opencode release its home now
// records (after `taosagent setup --opencode VERSION` or --rollback): each
// agent moves to it between two of its turns. Only a person does it.
func (s *Service) ReloadOpencode(ctx context.Context, a Actor) (string, error) {
	c := Call{Actor: a, Tool: "opencode.reload", Target: "opencode", Args: map[string]string{}}
	if !a.Person() {
		return "", s.Refuse(ctx, c, fmt.Errorf("%w: only a person switches opencode releases", ErrForbidden))
	}
	if s.Opencode == nil {
		return "", fmt.Errorf("this daemon cannot switch opencode releases")
	}
	var v string
	err := s.Do(ctx, c, func(ctx context.Context) (string, error) {
		var err error
		v, err = s.Opencode(ctx)
		return "", err
	})
	return v, err
}
