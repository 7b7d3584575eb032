package region

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Static is a Membership whose set is given by the program rather than
// discovered: the single-process demo and tests use it. It is safe for
// concurrent use.
type Static struct {
	mu      sync.Mutex
	members []Member      // sorted by ID; replaced, never modified in place
	changed chan struct{} // closed and replaced when members changes
	closed  chan struct{}
	once    sync.Once
}

var _ Membership = (*Static)(nil)

// NewStatic returns a membership holding members.
func NewStatic(members ...Member) *Static {
	return &Static{
		members: sortedMembers(members),
		changed: make(chan struct{}),
		closed:  make(chan struct{}),
	}
}

// Members returns the current set sorted by ID; do not modify it.
func (s *Static) Members() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members
}

// Changed returns a channel closed by the next Set that changes the set.
func (s *Static) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Set replaces the set with members and, if that changes it, fires Changed.
// A Set that leaves the set as it was wakes nobody, as with Consul.
func (s *Static) Set(members ...Member) {
	next := sortedMembers(members)
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(next, s.members) {
		return
	}
	s.members = next
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor waits until pred holds for the current set, ctx ends or s is
// closed.
func (s *Static) WaitFor(ctx context.Context, pred func([]Member) bool) error {
	return waitFor(ctx, s, s.closed, pred)
}

// Close ends WaitFor calls; the set stays readable.
func (s *Static) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// sortedMembers returns a sorted copy, so callers may reuse their slice.
func sortedMembers(members []Member) []Member {
	out := slices.Clone(members)
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}
