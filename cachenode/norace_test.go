//go:build !race

package cachenode

const raceEnabled = false
