package router

import (
	"container/list"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// pageMaps keeps read-only mappings of whole page files, one per grant,
// so that sections of a page read again (a warm object GET again) are
// verified without mapping and unmapping the page each time: mmap with
// MAP_POPULATE and munmap cost a fifth of a zero-copy GET's CPU. A
// mapping belongs to one grant's descriptor: a new grant of the page
// (asked again after scGrantTTL) maps anew. Bounded like the grants
// (scMaxGrants) and by age (scGrantTTL), because a mapping, like a
// descriptor, holds a dropped page's blocks on disk. Its mutex is a leaf:
// no mapping or unmapping under it.
type pageMaps struct {
	mu     sync.Mutex
	closed bool
	maps   map[scKey]*list.Element // of *pageMap
	lru    *list.List              // front: most recently used
}

// pageMap is one mapping of a whole page file. refs counts the verifiers
// using mem; it is unmapped once it is gone and none does.
type pageMap struct {
	key   scKey
	grant *os.File // the grant's descriptor the mapping was made for
	mem   []byte
	made  time.Time
	refs  int
	gone  bool
}

func newPageMaps() *pageMaps {
	return &pageMaps{maps: map[scKey]*list.Element{}, lru: list.New()}
}

// acquire returns the mapping of the page of grant (key), length bytes
// from file offset base, all of them on disk, mapping it from own (a
// descriptor of the same file) when there is none for this grant (and
// keeping it, unless the client has closed). The caller releases it.
func (pm *pageMaps) acquire(key scKey, grant, own *os.File, base, length int64) (*pageMap, error) {
	now := time.Now()
	pm.mu.Lock()
	if el, ok := pm.maps[key]; ok {
		p := el.Value.(*pageMap)
		if p.grant == grant && now.Sub(p.made) < scGrantTTL {
			p.refs++
			pm.lru.MoveToFront(el)
			pm.mu.Unlock()
			return p, nil
		}
	}
	pm.mu.Unlock()

	mem, err := mapFile(own, base, base+length)
	if err != nil {
		return nil, err
	}
	p := &pageMap{key: key, grant: grant, mem: mem, made: now, refs: 1}
	var unmap []*pageMap
	pm.mu.Lock()
	if pm.closed {
		// A section sent after its client closed: a mapping of its own,
		// unmapped by its release.
		pm.mu.Unlock()
		p.gone = true
		return p, nil
	}
	if el, ok := pm.maps[key]; ok {
		unmap = pm.removeLocked(el, unmap)
	}
	pm.maps[key] = pm.lru.PushFront(p)
	for pm.lru.Len() > scMaxGrants || pm.lru.Len() > 0 && now.Sub(pm.lru.Back().Value.(*pageMap).made) >= scGrantTTL {
		unmap = pm.removeLocked(pm.lru.Back(), unmap)
	}
	pm.mu.Unlock()
	for _, old := range unmap {
		syscall.Munmap(old.mem)
	}
	return p, nil
}

// removeLocked takes a mapping out of the cache and appends it to unmap
// when no verifier uses it.
func (pm *pageMaps) removeLocked(el *list.Element, unmap []*pageMap) []*pageMap {
	p := el.Value.(*pageMap)
	pm.lru.Remove(el)
	delete(pm.maps, p.key)
	p.gone = true
	if p.refs == 0 {
		unmap = append(unmap, p)
	}
	return unmap
}

// release ends a verifier's use of p.
func (pm *pageMaps) release(p *pageMap) {
	pm.mu.Lock()
	p.refs--
	last := p.gone && p.refs == 0
	pm.mu.Unlock()
	if last {
		syscall.Munmap(p.mem)
	}
}

// close unmaps every mapping no verifier uses; those in use are unmapped
// by their last release.
func (pm *pageMaps) close() {
	pm.mu.Lock()
	pm.closed = true
	var unmap []*pageMap
	for _, el := range pm.maps {
		unmap = pm.removeLocked(el, unmap)
	}
	pm.mu.Unlock()
	for _, p := range unmap {
		syscall.Munmap(p.mem)
	}
}

// mapFile maps bytes [at, end) of file read-only, at a multiple of the
// system's page size, after fstat says the file holds them all (a
// mapping past a file's end faults when read).
func mapFile(file *os.File, at, end int64) ([]byte, error) {
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var mem []byte
	var merr error
	err = rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if merr = syscall.Fstat(int(fd), &st); merr != nil {
			return
		}
		if st.Size < end {
			merr = fmt.Errorf("page file holds %d bytes, the grant's blocks end at %d", st.Size, end)
			return
		}
		// MAP_POPULATE maps every page at once: no fault per page.
		mem, merr = syscall.Mmap(int(fd), at, int(end-at), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	})
	if err == nil {
		err = merr
	}
	if err != nil {
		return nil, fmt.Errorf("map page file: %w", err)
	}
	return mem, nil
}
