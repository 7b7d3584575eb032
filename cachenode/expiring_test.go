package cachenode

import (
	"testing"
	"time"
)

// An expiringMap keeps at most limit values, dropping the expired ones
// first, and never answers an expired one.
func TestExpiringMap(t *testing.T) {
	e := expiringMap[int]{limit: 2}
	e.put("old", 1, time.Nanosecond)
	e.put("a", 2, time.Hour)
	time.Sleep(time.Millisecond)
	if _, ok := e.get("old"); ok {
		t.Error("an expired value was answered")
	}
	e.put("b", 3, time.Hour) // full: the expired one goes
	if v, ok := e.get("a"); !ok || v != 2 {
		t.Errorf("a = %d, %v; want 2 (only the expired value was to go)", v, ok)
	}
	e.put("a", 4, time.Hour) // a replacement drops nothing
	if v, ok := e.get("b"); !ok || v != 3 {
		t.Errorf("b = %d, %v after a was replaced; want 3", v, ok)
	}
	e.put("c", 5, time.Hour) // full of live values: one goes
	if len(e.m) != 2 {
		t.Errorf("%d values held, want the limit 2", len(e.m))
	}
	e.drop(func(k string) bool { return k == "c" })
	if _, ok := e.get("c"); ok {
		t.Error("c is held after it was dropped")
	}
}
