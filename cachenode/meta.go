package cachenode

import (
	"container/list"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/lakemesh/lakemesh/ufs"
)

// metaCache holds stat and list answers from the lakes for at most their
// mount's metadata TTL. It is bounded (least recently used entries go
// first) and singleflights concurrent misses of the same key, so a burst
// of stats of one path asks the lake once. Not-found answers are cached
// too (negative entries), for the same TTL.
type metaCache struct {
	max   int
	group singleflight.Group
	now   func() time.Time

	mu      sync.Mutex // guards entries, lru
	entries map[string]*list.Element
	lru     *list.List // of *metaEntry, most recent at front
}

type metaEntry struct {
	key     string
	path    string // namespace path the entry is about, for Invalidate
	expires time.Time
	info    ufs.FileInfo
	page    ufs.ListPage
	err     error // ufs.ErrNotFound for negative entries; no other errors are cached
}

func newMetaCache(max int) *metaCache {
	if max <= 0 {
		max = 1 << 20
	}
	return &metaCache{max: max, now: time.Now, entries: map[string]*list.Element{}, lru: list.New()}
}

// stat returns the cached FileInfo of path or asks load.
func (m *metaCache) stat(ctx context.Context, path string, ttl time.Duration, load func(context.Context) (ufs.FileInfo, error)) (ufs.FileInfo, error) {
	e, err := m.get(ctx, "s\x00"+path, path, ttl, func(ctx context.Context) (*metaEntry, error) {
		fi, err := load(ctx)
		return &metaEntry{info: fi}, err
	})
	if err != nil {
		return ufs.FileInfo{}, err
	}
	return e.info, e.err
}

// list returns the cached listing page of dir at token or asks load.
func (m *metaCache) list(ctx context.Context, dir, token string, limit int, ttl time.Duration, load func(context.Context) (ufs.ListPage, error)) (ufs.ListPage, error) {
	key := "l\x00" + dir + "\x00" + token + "\x00" + strconv.Itoa(limit)
	e, err := m.get(ctx, key, dir, ttl, func(ctx context.Context) (*metaEntry, error) {
		p, err := load(ctx)
		return &metaEntry{page: p}, err
	})
	if err != nil {
		return ufs.ListPage{}, err
	}
	return e.page, e.err
}

func (m *metaCache) get(ctx context.Context, key, path string, ttl time.Duration, load func(context.Context) (*metaEntry, error)) (*metaEntry, error) {
	m.mu.Lock()
	if el, ok := m.entries[key]; ok {
		e := el.Value.(*metaEntry)
		if m.now().Before(e.expires) {
			m.lru.MoveToFront(el)
			m.mu.Unlock()
			return e, nil
		}
		m.lru.Remove(el)
		delete(m.entries, key)
	}
	m.mu.Unlock()

	v, err, _ := m.group.Do(key, func() (any, error) {
		// The lake call must not die with the first caller's context:
		// other callers may be waiting on it.
		e, err := load(context.WithoutCancel(ctx))
		if err != nil && !errors.Is(err, ufs.ErrNotFound) {
			return nil, err
		}
		if e == nil {
			e = &metaEntry{}
		}
		e.err = err
		e.key, e.path = key, path
		if ttl > 0 {
			e.expires = m.now().Add(ttl)
			m.put(e)
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*metaEntry), nil
}

func (m *metaCache) put(e *metaEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.entries[e.key]; ok {
		m.lru.Remove(el)
	}
	m.entries[e.key] = m.lru.PushFront(e)
	for m.lru.Len() > m.max {
		old := m.lru.Remove(m.lru.Back()).(*metaEntry)
		delete(m.entries, old.key)
	}
}

// invalidate drops every entry about path or anything below it, and the
// listings of its parent directory (which show it). It returns how many
// entries it dropped.
func (m *metaCache) invalidate(path string) int {
	path = strings.TrimSuffix(path, "/")
	parent := path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		parent = path[:i]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for key, el := range m.entries {
		e := el.Value.(*metaEntry)
		below := path == "" || e.path == path || strings.HasPrefix(e.path, path+"/")
		parentList := key[0] == 'l' && e.path == parent
		if below || parentList {
			m.lru.Remove(el)
			delete(m.entries, key)
			n++
		}
	}
	return n
}
