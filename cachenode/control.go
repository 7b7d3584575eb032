package cachenode

import "time"

// PageInfo describes one stored page, for status and for the match
// functions of SetPinned, Evict and Pages.
type PageInfo struct {
	ID          PageID
	Ref         FileRef
	Length      int64 // bytes of the page (short for the file's last page)
	MemoryBytes int64 // bytes of its blocks in the memory tier
	DiskBytes   int64 // bytes of its blocks in the disk tier
	Pinned      bool
	Expires     time.Time // zero: no TTL
	LastAccess  time.Time
}

func (e *entry) info() PageInfo {
	e.mu.RLock()
	defer e.mu.RUnlock()
	pi := PageInfo{
		ID: e.id, Ref: e.ref, Length: e.length,
		MemoryBytes: e.memBytes, DiskBytes: e.diskBytes,
		Pinned: e.pinned, LastAccess: time.Unix(0, e.lastUse.Load()),
	}
	if e.expires != 0 {
		pi.Expires = time.Unix(0, e.expires)
	}
	return pi
}

// matching returns the entries whose info match accepts (nil: all), with
// that info. match runs outside every lock.
func (s *Store) matching(match func(PageInfo) bool) ([]*entry, []PageInfo) {
	s.mu.RLock()
	all := make([]*entry, 0, len(s.pages))
	for _, e := range s.pages {
		all = append(all, e)
	}
	s.mu.RUnlock()
	var es []*entry
	var infos []PageInfo
	for _, e := range all {
		if pi := e.info(); match == nil || match(pi) {
			es = append(es, e)
			infos = append(infos, pi)
		}
	}
	return es, infos
}

// Pages describes the stored pages that match accepts (nil: all), in no
// particular order.
func (s *Store) Pages(match func(PageInfo) bool) []PageInfo {
	_, infos := s.matching(match)
	return infos
}

// SetPinned pins or unpins the stored pages that match accepts and
// returns how many it changed. The pin is persisted with disk pages.
// Pages stored later are pinned through StoreConfig.Classify.
func (s *Store) SetPinned(match func(PageInfo) bool, pinned bool) int {
	es, _ := s.matching(match)
	changed := 0
	for _, e := range es {
		e.diskMu.Lock()
		e.mu.Lock()
		if e.dead || e.pinned == pinned {
			e.mu.Unlock()
			e.diskMu.Unlock()
			continue
		}
		e.pinned = pinned
		onDisk := e.diskBytes > 0
		meta := snapshotMetaLocked(e)
		e.mu.Unlock()
		if onDisk {
			if err := s.writeMeta(e, meta); err != nil {
				s.log.Warn("page pin not persisted", "page", e.id, "pinned", pinned, "err", err)
			}
		}
		e.diskMu.Unlock()
		changed++
	}
	if !pinned && changed > 0 {
		s.ev.wake() // unpinned pages may be what a full tier was waiting for
	}
	return changed
}

// Evict removes the stored pages that match accepts from every tier,
// pinned or not, and returns how many pages it removed and the bytes it
// freed (both tiers). A fill in progress may store a page again.
func (s *Store) Evict(match func(PageInfo) bool) (pages int, bytes int64) {
	es, _ := s.matching(match)
	for _, e := range es {
		var freed int64
		for _, t := range []*tier{s.mem, s.disk} {
			if t != nil {
				freed += s.evictFromTier(e, t, true)
			}
		}
		if freed > 0 {
			pages++
			bytes += freed
		}
	}
	return pages, bytes
}
