package cachenode

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

// Directory revalidation: when stats miss for many paths of one directory
// (a data loader reopening the files of a directory once per epoch, epochs
// longer than the metadata TTL), the node lists the directory once, page by
// page, instead of asking the lake about each file (one HEAD per file on
// S3), and caches every entry of the listing with a fresh TTL. A listing
// entry carries the same size, mtime and version as a stat (the ufs
// contract, checked by the conformance suite), so these answers are as
// fresh as a stat's and the TTL contract holds; expired entries are never
// served.
//
// When: a stat miss in a directory whose last listing is still fresh
// never lists it (the path was not listed, or was invalidated since; it
// is asked for alone). Otherwise the miss lists the directory if its last
// listing paid for itself (its entries answered at least listTrigger stats
// per listed page: the directory is being scanned), or once listTrigger
// misses per expected page (the last listing's page count, else one) have
// come within dirMissWindow. A listing stops after maxListPages pages, or
// once it holds more entries than half the cache: the directory is then
// "too big", its misses go to the lake one by one, and it is not listed
// again for dirTooBigFor. So one stat of one file in a directory of
// millions lists nothing, and a burst of misses there lists a bounded
// number of pages once.
//
// Singleflight: one listing per directory at a time. Stat misses in the
// directory while it runs wait for it, then read their answer from the
// cache; a path the whole listing did not show is cached as not found (the
// listing always covers the whole directory when it fills anything). A
// waiter that finds nothing (the listing failed, was too big, or its path
// was invalidated) asks the lake for its own path as before.
//
// Invalidation: an invalidation during a listing is recorded on it (the
// child of the directory it touches, or the whole directory), and the
// listing's answers for those paths are dropped instead of cached, so a
// listing never puts back an answer older than a write, delete or rename
// it raced with. Entries are cached until the listing's start plus the
// TTL, and never replace an entry that expires later.
//
// Lakes whose listings lack versions (an adapter outside the contract) are
// found on their first listing and never listed for stats again.
//
// The write-back journal and the pending overlay are consulted by
// Node.Stat before the metadata cache, so a listing cannot hide a file that
// is not in its lake yet.
const (
	listTrigger   = 4
	dirMissWindow = 10 * time.Second
	maxListPages  = 16
	dirTooBigFor  = 10 * time.Minute
	maxDirStates  = 16384
)

var (
	errDirTooBig     = errors.New("directory too big to list for stats")
	errListUnversion = errors.New("listing entries carry no version")
)

// dirLister lists the directory of a stat's path, for revalidation.
type dirLister struct {
	mount string // the lake's mount path; entry paths are mount + "/" + FileInfo.Path
	dir   string // namespace path of the directory
	// list returns one page of the lake's listing, and when the lake was
	// asked for it (zero: during this call).
	list func(ctx context.Context, token string) (ufs.ListPage, time.Time, error)
}

// pageLister lists one page of a lake directory: dir is its namespace
// path, relDir the lake's path of it.
type pageLister func(ctx context.Context, lake Lake, dir, relDir, token string) (ufs.ListPage, time.Time, error)

// lakePages asks the lake itself.
func lakePages(ctx context.Context, lake Lake, _, relDir, token string) (ufs.ListPage, time.Time, error) {
	page, err := lake.FS.List(ctx, relDir, token, ufs.DefaultListLimit)
	return page, time.Time{}, err
}

// newDirLister returns the lister of p's directory, reading its pages with
// pages, or nil when p is the mount itself or not in canonical form (its
// cache key would not be the one a listing fills).
func newDirLister(lake Lake, p, rel string, pages pageLister) *dirLister {
	if rel == "" || p != lake.Path+"/"+rel {
		return nil
	}
	relDir, dir := "", lake.Path
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		relDir, dir = rel[:i], lake.Path+"/"+rel[:i]
	}
	return &dirLister{mount: lake.Path, dir: dir, list: func(ctx context.Context, token string) (ufs.ListPage, time.Time, error) {
		return pages(ctx, lake, dir, relDir, token)
	}}
}

// dirState is what the cache remembers about one directory. Guarded by
// metaCache.mu.
type dirState struct {
	dir         string
	el          *list.Element
	windowStart time.Time
	misses      int       // stat misses since windowStart
	pages       int       // pages of the last listing that filled the cache; 0 if none
	served      int       // stat hits answered by that listing's entries
	listedUntil time.Time // that listing's entries expire then
	tooBigUntil time.Time // no listing before then
	listing     *dirListing
	// changed is when this node last saw the directory or a path in it
	// invalidated (for a state made since, the last invalidation of
	// any path): a listing another node asked the lake for before then
	// may not show the change.
	changed time.Time
}

// dirListing is one listing in flight. Guarded by metaCache.mu; done is
// closed once its entries are in the cache (or it failed).
type dirListing struct {
	done        chan struct{}
	start       time.Time
	wanted      []string        // cache keys of the stats waiting for it
	invalidated map[string]bool // children of the directory invalidated while it ran
	all         bool            // the directory itself was invalidated while it ran
}

// statFromListing answers a stat of path from the cache, revalidating its
// directory with one listing when the rules above say so. ok is false when
// the caller should ask the lake for path itself.
func (m *metaCache) statFromListing(ctx context.Context, key, path string, ttl time.Duration, d *dirLister) (e *metaEntry, ok bool, err error) {
	m.mu.Lock()
	if e := m.fresh(key); e != nil {
		m.mu.Unlock()
		return e, true, nil
	}
	if m.unversioned[d.mount] {
		m.mu.Unlock()
		return nil, false, nil
	}
	st := m.dirState(d.dir)
	l := st.listing
	if l == nil {
		if !m.shouldList(st) {
			m.mu.Unlock()
			return nil, false, nil
		}
		l = &dirListing{done: make(chan struct{}), start: m.now(), invalidated: map[string]bool{}}
		// Whatever it brings, this listing answers for the evidence so
		// far: a failing one must not be retried at every miss.
		st.listing, st.served, st.misses = l, 0, 0
		m.listings[d.dir] = l
		l.wanted = append(l.wanted, key)
		m.mu.Unlock()
		// The listing must not die with the first caller's context:
		// other stats wait for it.
		m.runListing(context.WithoutCancel(ctx), st, l, d, ttl)
	} else {
		l.wanted = append(l.wanted, key)
		m.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("stat %s: waiting for the listing of %s: %w", path, d.dir, ctx.Err())
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.fresh(key); e != nil {
		return e, true, nil
	}
	return nil, false, nil
}

// shouldList counts a stat miss in st's directory and says whether it
// should be revalidated by a listing now. m.mu is held.
func (m *metaCache) shouldList(st *dirState) bool {
	now := m.now()
	if now.Before(st.tooBigUntil) || now.Before(st.listedUntil) {
		// A miss while the last listing is fresh is a path it did
		// not show, or one invalidated since: a listing would tell
		// nothing new.
		return false
	}
	expected := max(st.pages, 1)
	if st.pages > 0 && st.served >= listTrigger*expected {
		return true
	}
	if now.Sub(st.windowStart) > dirMissWindow {
		st.windowStart, st.misses = now, 0
	}
	st.misses++
	return st.misses >= listTrigger*expected
}

// dirState returns the state of dir, making it if needed. m.mu is held.
func (m *metaCache) dirState(dir string) *dirState {
	if st, ok := m.dirs[dir]; ok {
		m.dirLRU.MoveToFront(st.el)
		return st
	}
	st := &dirState{dir: dir, changed: m.lastChange}
	st.el = m.dirLRU.PushFront(st)
	m.dirs[dir] = st
	for m.dirLRU.Len() > maxDirStates {
		// A listing in flight keeps its own state and stays in
		// m.listings, so invalidations still reach it.
		old := m.dirLRU.Remove(m.dirLRU.Back()).(*dirState)
		delete(m.dirs, old.dir)
	}
	return st
}

// runListing lists d's directory, fills the cache from it and releases the
// stats waiting for it.
func (m *metaCache) runListing(ctx context.Context, st *dirState, l *dirListing, d *dirLister, ttl time.Duration) {
	entries, pages, asOf, err := m.listDir(ctx, d)
	m.mu.Lock()
	defer close(l.done)
	defer m.mu.Unlock()
	if st.listing == l {
		st.listing = nil
	}
	if m.listings[d.dir] == l {
		delete(m.listings, d.dir)
	}
	switch {
	case errors.Is(err, errDirTooBig):
		st.tooBigUntil, st.pages = m.now().Add(dirTooBigFor), 0
		return
	case errors.Is(err, errListUnversion):
		m.unversioned[d.mount] = true
		return
	case err != nil, l.all:
		return // the waiters ask the lake themselves
	}
	// A page the lake gave before the listing began (another node's,
	// or one cached here) is as fresh as then.
	expires := l.start.Add(ttl)
	older := !asOf.IsZero() && asOf.Before(l.start)
	if older {
		expires = asOf.Add(ttl)
	}
	if !m.now().Before(expires) {
		return
	}
	st.pages, st.served, st.misses, st.listedUntil = pages, 0, 0, expires
	listed := make(map[string]bool, len(entries))
	for _, fi := range entries {
		p := d.mount + "/" + fi.Path
		if listed[p] {
			// An S3 key "a" and keys below "a/": a stat finds the
			// object, which the listing shows first.
			continue
		}
		listed[p] = true
		if !l.invalidated[p] {
			m.putListed(&metaEntry{key: "s\x00" + p, path: p, expires: expires, info: fi, dir: st})
		}
	}
	if older {
		// A page older than the stats waiting for it: a path missing
		// from it may have been made since (a reader that wrote it to
		// the lake and opened it at once). They ask the lake.
		return
	}
	for _, key := range l.wanted {
		p := key[len("s\x00"):]
		if !listed[p] && !l.invalidated[p] {
			err := fmt.Errorf("%s is not in the listing of %s: %w", p, d.dir, ufs.ErrNotFound)
			m.putListed(&metaEntry{key: key, path: p, expires: expires, err: err, dir: st})
		}
	}
}

// listDir reads the whole directory, at most maxListPages pages and half
// the cache's entries. It returns errListUnversion if a file entry has no
// version. asOf is when the lake was asked for the oldest page, zero if
// every page was asked for during the call.
func (m *metaCache) listDir(ctx context.Context, d *dirLister) (entries []ufs.FileInfo, pages int, asOf time.Time, err error) {
	token := ""
	for {
		if pages == maxListPages {
			return nil, pages, asOf, errDirTooBig
		}
		page, at, err := d.list(ctx, token)
		if err != nil {
			return nil, pages, asOf, fmt.Errorf("list %s: %w", d.dir, err)
		}
		if !at.IsZero() && (asOf.IsZero() || at.Before(asOf)) {
			asOf = at
		}
		pages++
		for _, fi := range page.Entries {
			if !fi.IsDir && fi.Version == "" {
				return nil, pages, asOf, fmt.Errorf("list %s: %s: %w", d.dir, fi.Path, errListUnversion)
			}
		}
		entries = append(entries, page.Entries...)
		if len(entries) > m.max/2 {
			return nil, pages, asOf, errDirTooBig
		}
		if page.Next == "" {
			return entries, pages, asOf, nil
		}
		token = page.Next
	}
}

// changedSince reports whether this node saw dir or a path in it
// invalidated at or after t (or cannot tell: it keeps no state of dir and
// saw some invalidation then).
func (m *metaCache) changedSince(dir string, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.lastChange
	if st, ok := m.dirs[dir]; ok {
		changed = st.changed
	}
	return !changed.Before(t)
}

// putListed caches an entry from a listing unless the cache holds one for
// its key that expires later (a stat answered after the listing began).
// m.mu is held.
func (m *metaCache) putListed(e *metaEntry) {
	if el, ok := m.entries[e.key]; ok && el.Value.(*metaEntry).expires.After(e.expires) {
		return
	}
	m.putLocked(e)
}

// invalidateListings records an invalidation of path on the listings in
// flight, and forgets the listings of the directories it drops whole.
// m.mu is held.
func (m *metaCache) invalidateListings(path string) {
	now := m.now()
	m.lastChange = now
	parent := ""
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		parent = path[:i]
	}
	for dir, st := range m.dirs {
		if path == "" || dir == path || strings.HasPrefix(dir, path+"/") {
			st.listedUntil, st.changed = time.Time{}, now
		} else if dir == parent {
			st.changed = now
		}
	}
	for dir, l := range m.listings {
		switch {
		case path == "" || dir == path || strings.HasPrefix(dir, path+"/"):
			l.all = true
		case strings.HasPrefix(path, dir+"/"):
			child := path[len(dir)+1:]
			if i := strings.IndexByte(child, '/'); i >= 0 {
				child = child[:i]
			}
			l.invalidated[dir+"/"+child] = true
		}
	}
}
