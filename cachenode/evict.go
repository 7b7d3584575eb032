package cachenode

import (
	"sort"
	"sync"
	"time"
)

// evictor is the store's one background eviction goroutine. Fills wake it
// when a tier crosses its high watermark, or when a fill does not fit under
// a tier's hard limit and waits for the next pass.
type evictor struct {
	s      *Store
	wakeCh chan struct{} // capacity 1: wakes coalesce
	stopCh chan struct{}
	done   chan struct{}

	mu        sync.Mutex
	running   bool          // a pass is in progress
	completed uint64        // passes finished
	pass      chan struct{} // closed (and replaced) when a pass ends
}

func (ev *evictor) start(s *Store) {
	ev.s = s
	ev.wakeCh = make(chan struct{}, 1)
	ev.stopCh = make(chan struct{})
	ev.done = make(chan struct{})
	ev.pass = make(chan struct{})
	go ev.loop()
}

func (ev *evictor) wake() {
	select {
	case ev.wakeCh <- struct{}{}:
	default:
	}
}

func (ev *evictor) stop() {
	close(ev.stopCh)
	<-ev.done
}

// requestPass wakes the evictor and waits until a pass that started after
// the call has finished. It reports false if the store is closing.
func (ev *evictor) requestPass() bool {
	ev.mu.Lock()
	want := ev.completed + 1
	if ev.running {
		want++ // the pass in progress may have missed the request
	}
	ch := ev.pass
	ev.mu.Unlock()
	ev.wake()
	for {
		select {
		case <-ch:
		case <-ev.stopCh:
			return false
		}
		ev.mu.Lock()
		done := ev.completed >= want
		ch = ev.pass
		ev.mu.Unlock()
		if done {
			return true
		}
	}
}

func (ev *evictor) loop() {
	defer close(ev.done)
	for {
		select {
		case <-ev.stopCh:
			return
		case <-ev.wakeCh:
		}
		ev.mu.Lock()
		ev.running = true
		ev.mu.Unlock()
		for _, t := range []*tier{ev.s.mem, ev.s.disk} {
			if t != nil {
				ev.s.evictTier(t)
			}
		}
		ev.mu.Lock()
		ev.running = false
		ev.completed++
		close(ev.pass)
		ev.pass = make(chan struct{})
		ev.mu.Unlock()
	}
}

// reserve takes n bytes of tier t for a fill. If they do not fit under the
// hard limit it asks the evictor for room and waits for its pass, as long
// as passes free something; it reports false if the tier cannot take them
// (everything left is pinned or being written, the fill is larger than the
// tier, or the store is closing).
func (s *Store) reserve(t *tier, n int64) bool {
	if n > t.limit {
		return false
	}
	stuck := false
	for attempt := 0; ; attempt++ {
		// Past high water is handled by wakeIfHigh once the fill is
		// committed, so that the pass sees (and may evict) it.
		if ok, _ := t.tryReserve(n); ok {
			return true
		}
		if stuck || attempt == maxReserveAttempts {
			return false
		}
		t.mu.Lock()
		t.wanted += n
		t.mu.Unlock()
		if !s.ev.requestPass() {
			return false
		}
		t.mu.Lock()
		stuck = t.stuck
		t.mu.Unlock()
	}
}

// maxReserveAttempts bounds the eviction passes one fill waits for when
// other fills keep taking the room the passes make.
const maxReserveAttempts = 16

// wakeIfHigh wakes the evictor if a tier is past its high watermark.
func (s *Store) wakeIfHigh() {
	for _, t := range []*tier{s.mem, s.disk} {
		if t != nil && t.usedBytes() > t.high {
			s.ev.wake()
			return
		}
	}
}

type candidate struct {
	e       *entry
	expired bool
	lastUse int64
}

// evictTier brings tier t from above its high watermark (or from too full
// for a waiting fill) down to its low watermark: expired pages first, then
// least recently used; pinned pages never.
func (s *Store) evictTier(t *tier) {
	t.mu.Lock()
	used, wanted := t.used, t.wanted
	t.wanted = 0
	t.mu.Unlock()
	if used <= t.high && used+wanted <= t.limit {
		t.mu.Lock()
		t.aboveWater, t.stuckLogged, t.stuck = false, false, false
		t.mu.Unlock()
		return
	}
	// Down to low water, and further if the fills waiting for room need
	// it; never below zero.
	target := max(0, min(t.low, t.limit-wanted))
	var pinnedBytes int64
	cands, empties := s.candidates(t, &pinnedBytes)
	for _, e := range empties {
		s.removeIfEmpty(e, false) // left over from a race with a pin command
	}
	var freed int64
	for _, c := range cands {
		if t.usedBytes() <= target {
			break
		}
		freed += s.evictFromTier(c.e, t, false)
	}
	if t == s.mem && freed > 0 {
		s.bufs.reclaim() // the blocks' buffers, for the next fills
	}
	used = t.usedBytes()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stuck = used > target
	if used <= t.high {
		t.aboveWater, t.stuckLogged = false, false
		return
	}
	t.aboveWater = true
	if !t.stuckLogged {
		t.stuckLogged = true
		s.log.Warn("cache tier above its high watermark with nothing evictable",
			"tier", t.name, "used", used, "limit", t.limit, "pinned_bytes", pinnedBytes)
	}
}

// candidates lists the unpinned pages holding bytes in tier t in eviction
// order: expired first, then least recently used; and the entries that
// hold nothing at all.
func (s *Store) candidates(t *tier, pinnedBytes *int64) (cands []candidate, empties []*entry) {
	s.mu.RLock()
	all := make([]*entry, 0, len(s.pages))
	for _, e := range s.pages {
		all = append(all, e)
	}
	s.mu.RUnlock()
	now := time.Now().UnixNano()
	cands = make([]candidate, 0, len(all))
	for _, e := range all {
		e.mu.RLock()
		n := e.memBytes
		if t == s.disk {
			n = e.diskBytes
		}
		pinned, expires := e.pinned, e.expires
		if e.busy == 0 && e.emptyLocked() {
			empties = append(empties, e)
		}
		e.mu.RUnlock()
		switch {
		case n == 0:
		case pinned:
			*pinnedBytes += n
		default:
			cands = append(cands, candidate{e: e, expired: expires != 0 && expires <= now, lastUse: e.lastUse.Load()})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].expired != cands[j].expired {
			return cands[i].expired
		}
		return cands[i].lastUse < cands[j].lastUse
	})
	return cands, empties
}

// evictFromTier drops a page's copy in tier t and returns the bytes freed.
// Without force it skips pinned pages and pages whose disk copy is being
// written (it never waits on a fill); with force (Evict) it does neither.
func (s *Store) evictFromTier(e *entry, t *tier, force bool) int64 {
	if t == s.disk {
		if force {
			e.diskMu.Lock()
		} else if !e.diskMu.TryLock() {
			return 0
		}
	}
	e.mu.Lock()
	if e.dead || (e.pinned && !force) {
		e.mu.Unlock()
		if t == s.disk {
			e.diskMu.Unlock()
		}
		return 0
	}
	var freed int64
	if t == s.disk {
		freed = s.dropDiskLocked(e)
	} else {
		freed = s.dropMemoryLocked(e)
	}
	empty := e.busy == 0 && e.emptyLocked()
	e.mu.Unlock()
	if t == s.disk {
		if freed > 0 {
			s.removePageFiles(e)
		}
		e.diskMu.Unlock()
	}
	if freed > 0 {
		t.release(freed)
		t.evictions.Add(1)
		t.evictedBytes.Add(freed)
	}
	if empty {
		s.removeIfEmpty(e, force)
	}
	return freed
}
