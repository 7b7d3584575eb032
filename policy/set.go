package policy

import (
	"slices"
	"time"
)

// DefaultReadahead is the readahead for sequential reads where no rule
// sets one.
const DefaultReadahead int64 = 64 << 20

// Effective is what the rules say about one path, all rules combined.
// The zero value is not the default; use Set.For.
type Effective struct {
	Pin       bool
	TTL       time.Duration // 0: no rule set one; pages age out by eviction alone
	NoCache   bool
	WriteMode WriteMode
	Readahead int64    // bytes; 0 disables readahead
	Residency []string // regions the bytes may be in; empty: anywhere
}

// MayEnter says whether the bytes may be in region: true when no rule
// restricts residency, or when region is listed.
func (e Effective) MayEnter(region string) bool {
	return len(e.Residency) == 0 || slices.Contains(e.Residency, region)
}

// Set answers what the rules say about a path. It is immutable after
// NewSet, so one Set is safe for any number of goroutines; a new topology
// makes a new Set.
type Set struct {
	rules []Rule // by Path length, shortest first; equal lengths in input order
}

// NewSet returns the set of rules. It copies the slice, so the caller may
// reuse it, but not what the rules point to: do not change a Rule's
// fields after handing it over.
func NewSet(rules []Rule) *Set {
	s := &Set{rules: slices.Clone(rules)}
	slices.SortStableFunc(s.rules, func(a, b Rule) int { return len(a.Path) - len(b.Path) })
	return s
}

// For combines every rule that matches path, shorter paths first, so a
// rule for a deeper subtree overrides the fields it sets and inherits the
// rest. Residency too is taken whole from the most specific rule that
// sets it, never merged. A nil Set gives the defaults.
//
// It is linear in the number of rules: topologies hold tens of them; a
// caller on a hot path may keep the result per open file.
func (s *Set) For(path string) Effective {
	e := Effective{WriteMode: WriteThrough, Readahead: DefaultReadahead}
	if s == nil {
		return e
	}
	for _, r := range s.rules {
		if !r.Matches(path) {
			continue
		}
		if r.Pin != nil {
			e.Pin = *r.Pin
		}
		if r.TTL != nil {
			e.TTL = *r.TTL
		}
		if r.NoCache != nil {
			e.NoCache = *r.NoCache
		}
		if r.WriteMode != nil {
			e.WriteMode = *r.WriteMode
		}
		if r.Readahead != nil {
			e.Readahead = *r.Readahead
		}
		if r.Residency != nil {
			e.Residency = r.Residency
		}
	}
	e.Residency = slices.Clone(e.Residency) // the caller's to keep or change
	return e
}

// Rules returns the rules of the set, shortest path first.
func (s *Set) Rules() []Rule {
	if s == nil {
		return nil
	}
	return slices.Clone(s.rules)
}
