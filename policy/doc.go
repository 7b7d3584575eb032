// Package policy decides how the mesh treats a path: whether its pages
// are pinned, how long they stay (TTL), whether they are cached at all,
// when a write is acknowledged (write-through or write-back), how far
// sequential reads read ahead, and which regions its bytes may ever be in
// (residency).
//
// Rules come from the policies: section of topology.yaml; package
// federation parses and validates them into Rules (paths absolute and
// clean, each under a mount, regions declared). A Rule applies to its path
// and everything below it at a "/" boundary: "/lake/a" covers "/lake/a/b"
// but not "/lake/ab". Each of a Rule's settings may be left unset.
//
// A Set combines the rules for a path. Matching rules apply shortest path
// first, so the rule for the deeper subtree overrides exactly the settings
// it makes and inherits the rest from above; where nothing sets a value
// the defaults hold: no pin, no TTL, caching on, WriteThrough and
// DefaultReadahead. Residency is never merged across rules: the most
// specific rule that sets it decides the whole list, so a subtree can
// loosen or tighten what its parent said, and reading the nearest rule
// is enough to know where the bytes may go.
//
// Invariants:
//   - For is a pure function of the rules and the path; a Set never
//     changes after NewSet and is safe for concurrent use.
//   - Effective.MayEnter is the one place residency is decided; every
//     part that moves bytes into a region (fills, preloads, rollouts)
//     asks it before the bytes cross a line.
//
// The package knows nothing of regions, lines or nodes beyond region
// names, and imports no other lakemesh package, so every other package may
// import it.
package policy
