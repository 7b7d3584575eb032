//go:build race

package cachenode

// raceEnabled: allocation figures mean nothing under the race detector
// (it allocates for itself, and sync.Pool drops items on purpose).
const raceEnabled = true
