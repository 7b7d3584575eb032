package cachenode

import (
	"sync"
	"sync/atomic"
)

// tier is the byte accounting of one tier. A fill reserves its bytes before
// it writes them, so used never exceeds limit; eviction releases them.
type tier struct {
	name             Tier
	limit, high, low int64

	mu          sync.Mutex
	used        int64
	wanted      int64 // bytes of the fills waiting for room since the last pass
	stuck       bool  // the last pass could not reach its target
	aboveWater  bool  // the last eviction pass ended above the high watermark
	stuckLogged bool  // "nothing evictable" was logged for this episode

	evictions, evictedBytes atomic.Int64
}

func newTier(name Tier, limit int64, high, low float64) *tier {
	return &tier{
		name:  name,
		limit: limit,
		high:  int64(float64(limit) * high),
		low:   int64(float64(limit) * low),
	}
}

// tryReserve takes n bytes of the tier if they fit under the hard limit.
// It reports whether they did and whether the tier is now past its high
// watermark (the caller wakes the evictor).
func (t *tier) tryReserve(n int64) (ok, overHigh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.used+n > t.limit {
		return false, true
	}
	t.used += n
	return true, t.used > t.high
}

// release gives back n reserved or stored bytes.
func (t *tier) release(n int64) {
	if n == 0 {
		return
	}
	t.mu.Lock()
	t.used -= n
	t.mu.Unlock()
}

func (t *tier) usedBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used
}

func (t *tier) snapshot() (used, limit int64, above bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used, t.limit, t.aboveWater
}

// putMemory stores blocks [b0, b0+len(crcs)) of data in the memory tier,
// those it does not hold yet. Each block gets its own buffer so that the
// tier's accounting is exact when blocks are dropped one by one. It
// reports whether the memory tier holds all of them afterwards.
func (s *Store) putMemory(e *entry, b0 int, data []byte, crcs []uint32) bool {
	bs := s.geo.blockSize
	var need int64
	todo := make([]bool, len(crcs))
	e.mu.RLock()
	for i := range crcs {
		if e.mem == nil || e.mem[b0+i] == nil {
			todo[i] = true
			need += s.geo.blockLen(e.length, b0+i)
		}
	}
	e.mu.RUnlock()
	if need == 0 {
		return true
	}
	if !s.reserve(s.mem, need) {
		return false
	}
	bufs := make([][]byte, len(crcs))
	for i := range crcs {
		if todo[i] {
			lo := int64(i) * bs
			hi := min(lo+bs, int64(len(data)))
			// Blocks are never written after they are stored, so the
			// tier keeps slices of the fill's buffer instead of copies
			// (capacity clipped: nothing can append into a neighbour).
			bufs[i] = data[lo:hi:hi]
		}
	}
	var stored int64
	e.mu.Lock()
	if e.mem == nil {
		e.mem = make([][]byte, e.nblocks)
	}
	for i, buf := range bufs {
		b := b0 + i
		if buf == nil || e.mem[b] != nil || !s.acceptCRCLocked(e, b, crcs[i]) {
			continue
		}
		e.mem[b] = buf
		e.crc[b] = crcs[i]
		stored += int64(len(buf))
	}
	e.memBytes += stored
	e.mu.Unlock()
	s.mem.release(need - stored)
	return true
}

// promote copies blocks read from disk into the memory tier if they fit
// now; it never waits for eviction (it is on a reader's path).
func (s *Store) promote(e *entry, blocks []int, bufs [][]byte, crcs []uint32) {
	var need int64
	for _, b := range bufs {
		need += int64(len(b))
	}
	if ok, _ := s.mem.tryReserve(need); !ok {
		s.ev.wake()
		return
	}
	defer s.wakeIfHigh()
	var stored int64
	e.mu.Lock()
	if !e.dead {
		if e.mem == nil {
			e.mem = make([][]byte, e.nblocks)
		}
		for i, buf := range bufs {
			b := blocks[i]
			if e.mem[b] == nil && e.disk.has(b) && e.crc[b] == crcs[i] {
				e.mem[b] = buf
				stored += int64(len(buf))
			}
		}
		e.memBytes += stored
	}
	e.mu.Unlock()
	s.mem.release(need - stored)
}

// dropMemoryLocked frees the whole memory copy of a page; e.mu is held.
func (s *Store) dropMemoryLocked(e *entry) int64 {
	freed := e.memBytes
	e.mem = nil
	e.memBytes = 0
	return freed
}

// acceptCRCLocked reports whether a block with checksum c may be stored:
// a page never holds two different contents for one block. If another
// tier holds the block with another checksum, the Source returned other
// bytes for the same file version; the copy already held wins and the
// conflict is logged.
func (s *Store) acceptCRCLocked(e *entry, b int, c uint32) bool {
	held := (e.mem != nil && e.mem[b] != nil) || (e.disk != nil && e.disk.has(b))
	if !held || e.crc[b] == c {
		return true
	}
	s.log.Warn("conflicting block content for one file version", "page", e.id, "file", e.ref, "block", b)
	return false
}
