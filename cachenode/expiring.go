package cachenode

import (
	"maps"
	"sync"
	"time"
)

// expiringMap holds values by path, each until a deadline, and at most
// limit of them: a put into a full map drops the expired values first,
// then any. Safe for concurrent use; set limit before the first put.
type expiringMap[V any] struct {
	limit int

	mu sync.Mutex
	m  map[string]expiring[V]
}

type expiring[V any] struct {
	v     V
	until time.Time
}

func (e *expiringMap[V]) put(k string, v V, ttl time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]expiring[V]{}
	}
	if _, ok := e.m[k]; !ok && len(e.m) >= e.limit {
		now := time.Now()
		maps.DeleteFunc(e.m, func(_ string, x expiring[V]) bool { return now.After(x.until) })
		for old := range e.m { // still full: any goes
			if len(e.m) < e.limit {
				break
			}
			delete(e.m, old)
		}
	}
	e.m[k] = expiring[V]{v: v, until: time.Now().Add(ttl)}
}

// get returns k's value while it holds.
func (e *expiringMap[V]) get(k string) (V, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[k]
	if !ok || time.Now().After(x.until) {
		var zero V
		return zero, false
	}
	return x.v, true
}

// drop forgets the keys match says.
func (e *expiringMap[V]) drop(match func(k string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	maps.DeleteFunc(e.m, func(k string, _ expiring[V]) bool { return match(k) })
}
