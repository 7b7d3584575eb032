package region

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by WaitFor once the membership has been closed.
var ErrClosed = errors.New("membership closed")

// waitFor is the Changed loop behind every WaitFor. The channel is taken
// before the set is read, so a change between the two is never missed.
func waitFor(ctx context.Context, m Membership, closed <-chan struct{}, pred func([]Member) bool) error {
	for {
		changed := m.Changed()
		members := m.Members()
		if pred(members) {
			return nil
		}
		select {
		case <-changed:
		case <-closed:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("wait for membership condition (last set: %s): %w", describe(members), ctx.Err())
		}
	}
}

// describe renders a member set for errors and logs: "[a@h:p b@h:p]".
func describe(members []Member) string {
	b := []byte{'['}
	for i, m := range members {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, m.ID...)
		b = append(b, '@')
		b = append(b, m.Addr...)
	}
	return string(append(b, ']'))
}
