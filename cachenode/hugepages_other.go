//go:build !linux

package cachenode

// adviseHugePages is a no-op where the kernel takes no such advice.
func adviseHugePages([]byte) {}
