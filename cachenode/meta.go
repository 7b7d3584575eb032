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
// too (negative entries), for the same TTL. Stat misses in one directory
// may be answered by one listing of it instead (metadir.go).
type metaCache struct {
	max   int
	group singleflight.Group
	now   func() time.Time

	mu      sync.Mutex // guards everything below
	entries map[string]*list.Element
	lru     *list.List // of *metaEntry, most recent at front

	dirs        map[string]*dirState // by namespace directory, bounded by dirLRU
	dirLRU      *list.List           // of *dirState, most recent at front
	listings    map[string]*dirListing
	unversioned map[string]bool // mounts whose listings lack versions
	lastChange  time.Time       // the last invalidation of any path
	// loads are the lake calls of get in flight, by key: an invalidation
	// while one runs marks it stale, so its answer, which may predate the
	// change, is not cached, and callers after it do not share it.
	loads map[string]*metaLoad
}

// metaLoad is one lake call of get in flight.
type metaLoad struct {
	path  string
	stale bool
}

type metaEntry struct {
	key     string
	path    string // namespace path the entry is about, for Invalidate
	expires time.Time
	info    ufs.FileInfo
	page    ufs.ListPage
	asOf    time.Time // when the lake was asked for it (the listing's start for listed entries)
	err     error     // ufs.ErrNotFound for negative entries; no other errors are cached
	dir     *dirState // the directory whose listing filled the entry, if one did
}

func newMetaCache(max int) *metaCache {
	if max <= 0 {
		max = 1 << 20
	}
	return &metaCache{
		max: max, now: time.Now, entries: map[string]*list.Element{}, lru: list.New(),
		dirs: map[string]*dirState{}, dirLRU: list.New(), listings: map[string]*dirListing{}, unversioned: map[string]bool{},
		loads: map[string]*metaLoad{},
	}
}

// stat returns the cached FileInfo of path or asks load.
func (m *metaCache) stat(ctx context.Context, path string, ttl time.Duration, load func(context.Context) (ufs.FileInfo, error)) (ufs.FileInfo, error) {
	return m.statIn(ctx, path, ttl, load, nil)
}

// statIn is stat where a miss may be answered by a listing of path's
// directory, which dir lists (metadir.go); dir may be nil.
func (m *metaCache) statIn(ctx context.Context, path string, ttl time.Duration, load func(context.Context) (ufs.FileInfo, error), dir *dirLister) (ufs.FileInfo, error) {
	key := "s\x00" + path
	if dir != nil && ttl > 0 {
		e, ok, err := m.statFromListing(ctx, key, path, ttl, dir)
		if err != nil {
			return ufs.FileInfo{}, err
		}
		if ok {
			return e.info, e.err
		}
	}
	e, err := m.get(ctx, key, path, ttl, func(ctx context.Context) (*metaEntry, error) {
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
	page, _, err := m.listAt(ctx, dir, token, limit, ttl, load)
	return page, err
}

// listAt is list, with the time the lake was asked for the page: a page
// served from the cache is as old as that, not as the call.
func (m *metaCache) listAt(ctx context.Context, dir, token string, limit int, ttl time.Duration, load func(context.Context) (ufs.ListPage, error)) (ufs.ListPage, time.Time, error) {
	key := "l\x00" + dir + "\x00" + token + "\x00" + strconv.Itoa(limit)
	e, err := m.get(ctx, key, dir, ttl, func(ctx context.Context) (*metaEntry, error) {
		p, err := load(ctx)
		return &metaEntry{page: p}, err
	})
	if err != nil {
		return ufs.ListPage{}, time.Time{}, err
	}
	return e.page, e.asOf, e.err
}

func (m *metaCache) get(ctx context.Context, key, path string, ttl time.Duration, load func(context.Context) (*metaEntry, error)) (*metaEntry, error) {
	m.mu.Lock()
	if e := m.fresh(key); e != nil {
		m.mu.Unlock()
		return e, nil
	}
	m.mu.Unlock()

	v, err, _ := m.group.Do(key, func() (any, error) {
		ml := &metaLoad{path: path}
		m.mu.Lock()
		m.loads[key] = ml
		asked := m.now()
		m.mu.Unlock()
		// The lake call must not die with the first caller's context:
		// other callers may be waiting on it.
		e, err := load(context.WithoutCancel(ctx))
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.loads[key] == ml {
			delete(m.loads, key)
		}
		if err != nil && !errors.Is(err, ufs.ErrNotFound) {
			return nil, err
		}
		if e == nil {
			e = &metaEntry{}
		}
		e.err = err
		e.key, e.path, e.asOf = key, path, asked
		if ttl > 0 && !ml.stale {
			e.expires = m.now().Add(ttl)
			m.putLocked(e)
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*metaEntry), nil
}

// fresh returns the unexpired entry of key, or nil; it drops an expired
// one. m.mu is held.
func (m *metaCache) fresh(key string) *metaEntry {
	el, ok := m.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*metaEntry)
	if !m.now().Before(e.expires) {
		m.lru.Remove(el)
		delete(m.entries, key)
		return nil
	}
	m.lru.MoveToFront(el)
	if e.dir != nil {
		e.dir.served++
	}
	return e
}

func (m *metaCache) put(e *metaEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(e)
}

// putLocked caches e, evicting the least recently used entries beyond the
// bound. m.mu is held.
func (m *metaCache) putLocked(e *metaEntry) {
	if el, ok := m.entries[e.key]; ok {
		m.lru.Remove(el)
	}
	m.entries[e.key] = m.lru.PushFront(e)
	for m.lru.Len() > m.max {
		old := m.lru.Remove(m.lru.Back()).(*metaEntry)
		delete(m.entries, old.key)
	}
}

// invalidateSelf drops the entries about path itself, its stat and its
// listings, and not what is below it.
func (m *metaCache) invalidateSelf(path string) int {
	path = strings.TrimSuffix(path, "/")
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.lastChange = now
	if st := m.dirs[path]; st != nil {
		st.listedUntil, st.changed = time.Time{}, now
	}
	if l := m.listings[path]; l != nil {
		l.all = true
	}
	return m.dropLocked(func(key, p string) bool { return p == path })
}

// dropLocked drops the cached entries that affected says are changed,
// and marks the lake calls in flight for them stale: an answer the lake
// gave before the change is not cached, and later callers make a call of
// their own instead of waiting for it. m.mu is held.
func (m *metaCache) dropLocked(affected func(key, path string) bool) int {
	n := 0
	for key, el := range m.entries {
		if e := el.Value.(*metaEntry); affected(key, e.path) {
			m.lru.Remove(el)
			delete(m.entries, key)
			n++
		}
	}
	for key, ml := range m.loads {
		if affected(key, ml.path) {
			ml.stale = true
			delete(m.loads, key)
			m.group.Forget(key)
		}
	}
	return n
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
	m.invalidateListings(path)
	return m.dropLocked(func(key, p string) bool {
		below := path == "" || p == path || strings.HasPrefix(p, path+"/")
		parentList := key[0] == 'l' && p == parent
		return below || parentList
	})
}
