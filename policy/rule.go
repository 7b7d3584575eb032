package policy

import "time"

// WriteMode says when a write is acknowledged.
type WriteMode string

const (
	WriteThrough WriteMode = "through" // after the lake has the bytes
	WriteBack    WriteMode = "back"    // after the region's cache journal has them
)

// Rule is one policies: entry of topology.yaml. It applies to Path and
// everything below it; a rule with a longer Path overrides the fields it
// sets for its subtree.
type Rule struct {
	Path string // absolute namespace path
	// Pointers and nil slices mean "not set by this rule".
	Pin       *bool
	TTL       *time.Duration // how long cached pages stay before they may be evicted/refreshed
	NoCache   *bool
	WriteMode *WriteMode
	Readahead *int64   // bytes of readahead for sequential reads; 0 disables
	Residency []string // regions these bytes may never leave
	// Line is the line of topology.yaml the rule starts at, for errors.
	Line int
}

// Matches says whether the rule applies to path: path is the rule's Path
// or lies below it at a "/" boundary ("/lake/a" matches "/lake/a/b" but
// not "/lake/ab"). Both are clean absolute paths.
func (r Rule) Matches(path string) bool {
	if r.Path == "/" {
		return len(path) > 0 && path[0] == '/'
	}
	return path == r.Path || len(path) > len(r.Path) && path[len(r.Path)] == '/' && path[:len(r.Path)] == r.Path
}
