package cachenode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// errPageRange: a page index, offset or length outside the file or page,
// or a Put that is not block-aligned.
var errPageRange = errors.New("outside page or not block-aligned")

// missingErr reports bytes of a page the store does not hold.
func missingErr(id PageID, off, end int64, block int) error {
	return fmt.Errorf("read page %s bytes [%d,%d): block %d: %w", id, off, end, block, ErrMissing)
}

// Read copies bytes [off, off+len(p)) of page index of ref into p, clipped
// at the end of the page, and reports the bytes copied and the tier they
// came from (TierDisk if any block came from disk). Every block it touches
// is verified against its checksum. If a block is absent or fails its
// checksum (it is then dropped from both tiers), Read returns an error
// wrapping ErrMissing and n = 0; it never returns unverified bytes. Blocks
// read from disk are promoted into memory when they fit.
func (s *Store) Read(ref FileRef, index, off int64, p []byte) (n int, tier Tier, err error) {
	if s.closed.Load() {
		return 0, "", ErrStoreClosed
	}
	id := PageID{File: ref.ID(), Index: index}
	length := s.geo.pageLen(ref.Size, index)
	if length == 0 || off < 0 || off > length {
		return 0, "", fmt.Errorf("read %s page %d at %d (page length %d): %w", ref, index, off, length, errPageRange)
	}
	end := min(off+int64(len(p)), length)
	if end == off {
		return 0, TierMemory, nil
	}
	e := s.lookup(id)
	if e == nil {
		s.misses.Add(1)
		return 0, "", missingErr(id, off, end, int(off/s.geo.blockSize))
	}
	if e.length != length {
		return 0, "", fmt.Errorf("read %s page %d: page holds %d bytes, ref says %d: %w", ref, index, e.length, length, errPageRange)
	}

	// Snapshot, under the entry lock, where each block is and its
	// checksum. Memory blocks are immutable, so they are verified and
	// copied after the lock is released.
	b0, b1 := s.geo.blockRange(off, end)
	var memArr [8][]byte
	var crcArr [8]uint32
	mem, crcs := memArr[:0], crcArr[:0]
	if b1-b0 > len(memArr) {
		mem, crcs = make([][]byte, 0, b1-b0), make([]uint32, 0, b1-b0)
	}
	onDisk := false
	e.mu.RLock()
	slot := e.slot
	for b := b0; b < b1; b++ {
		var m []byte
		if e.mem != nil {
			m = e.mem[b]
		}
		if m == nil {
			if e.disk == nil || !e.disk.has(b) {
				e.mu.RUnlock()
				s.misses.Add(1)
				return 0, "", missingErr(id, off, end, b)
			}
			onDisk = true
		}
		mem = append(mem, m)
		crcs = append(crcs, e.crc[b])
	}
	e.mu.RUnlock()
	e.lastUse.Store(s.tick())

	ok := true
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for i := 0; i < len(mem); {
		if m := mem[i]; m != nil {
			if coldBlockCRC(m) != crcs[i] {
				s.dropCorrupt(e, b0+i, TierMemory, crcs[i])
				ok = false
			} else {
				s.copyBlock(p, off, end, b0+i, m)
			}
			i++
			continue
		}
		j := i + 1
		for j < len(mem) && mem[j] == nil {
			j++
		}
		runOK, err := s.readDisk(e, slot, &f, b0+i, b0+j, crcs[i:j], p, off, end)
		if err != nil {
			return 0, "", err
		}
		ok = ok && runOK
		i = j
	}
	if !ok {
		s.misses.Add(1)
		return 0, "", fmt.Errorf("read page %s bytes [%d,%d): corrupt block dropped: %w", id, off, end, ErrMissing)
	}
	if onDisk {
		s.diskHits.Add(1)
		return int(end - off), TierDisk, nil
	}
	s.memHits.Add(1)
	return int(end - off), TierMemory, nil
}

// copyBlock copies the part of block b (data) that lies in [off, end) of
// the page into p, which starts at page offset off.
func (s *Store) copyBlock(p []byte, off, end int64, b int, data []byte) {
	start := int64(b) * s.geo.blockSize
	lo, hi := max(off, start), min(end, start+int64(len(data)))
	copy(p[lo-off:hi-off], data[lo-start:hi-start])
}

// readDisk reads blocks [b0, b1) of a page from its data file, or from
// slot when the snapshot found it packed, verifies each, copies the
// verified parts that lie in [off, end) into p and promotes them into
// memory. It reports false if a block failed its checksum or the copy was
// gone (evicted since the snapshot).
func (s *Store) readDisk(e *entry, slot *packSlot, f **os.File, b0, b1 int, crcs []uint32, p []byte, off, end int64) (bool, error) {
	file, base := *f, int64(0)
	if slot != nil {
		// The pack's descriptor is the store's: not closed by Read. A
		// slot freed since the snapshot reads as zeros, or fails to read
		// once its pack is removed; either way the copy is gone, not
		// corrupt.
		file, base = slot.pack.rw, slot.data
	} else if file == nil {
		opened, err := os.Open(s.dataPath(e.id))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read page %s: %w", e.id, err)
		}
		file, *f = opened, opened
	}
	bs := s.geo.blockSize
	runOff := int64(b0) * bs
	runLen := min(int64(b1)*bs, e.length) - runOff
	var buf []byte
	if s.mem != nil {
		buf = s.bufs.get(runLen) // kept as memory blocks when promoted
	} else {
		bp, pool := s.scratch(runLen)
		defer pool.Put(bp)
		buf = (*bp)[:runLen]
	}
	if err := readDiskRun(file, base+runOff, buf); err != nil {
		if slot != nil && s.slotGone(e, slot) {
			return false, nil
		}
		return false, fmt.Errorf("read page %s blocks [%d,%d): %w", e.id, b0, b1, err)
	}
	ok := true
	var promote []int
	var bufs [][]byte
	var verified []uint32
	for b := b0; b < b1; b++ {
		lo := int64(b-b0) * bs
		blk := buf[lo:min(lo+bs, runLen)]
		if blockCRC(blk) != crcs[b-b0] {
			if slot == nil || !s.slotGone(e, slot) {
				s.dropCorrupt(e, b, TierDisk, crcs[b-b0])
			}
			ok = false
			continue
		}
		s.copyBlock(p, off, end, b, blk)
		if s.mem != nil {
			promote = append(promote, b)
			bufs = append(bufs, blk)
			verified = append(verified, crcs[b-b0])
		}
	}
	if len(promote) > 0 {
		s.promote(e, promote, bufs, verified)
	}
	return ok, nil
}

// slotGone reports whether a page's disk copy is no longer in slot.
func (s *Store) slotGone(e *entry, slot *packSlot) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.slot != slot
}

// scratch returns a buffer of at least n bytes for a disk read that is not
// kept (no memory tier): runs of up to two blocks (random reads) and whole
// pages (sequential reads) come from separate pools.
func (s *Store) scratch(n int64) (*[]byte, *sync.Pool) {
	pool, size := &s.largeScratch, s.geo.pageSize
	if n <= 2*s.geo.blockSize {
		pool, size = &s.smallScratch, 2*s.geo.blockSize
	}
	if bp, _ := pool.Get().(*[]byte); bp != nil && int64(cap(*bp)) >= n {
		return bp, pool
	}
	b := make([]byte, size)
	return &b, pool
}

// dropCorrupt removes block b of a page from both tiers after a read from
// tier found it failing checksum c, unless the block was already dropped
// or replaced meanwhile.
func (s *Store) dropCorrupt(e *entry, b int, from Tier, c uint32) {
	e.mu.Lock()
	inMem := e.mem != nil && e.mem[b] != nil
	onDisk := e.disk != nil && e.disk.has(b)
	if e.dead || e.crc[b] != c || (from == TierMemory && !inMem) || (from == TierDisk && !onDisk) {
		e.mu.Unlock()
		return
	}
	var memFreed, diskFreed int64
	if inMem {
		memFreed = int64(len(e.mem[b]))
		e.mem[b] = nil
		e.memBytes -= memFreed
	}
	if onDisk {
		diskFreed = s.geo.blockLen(e.length, b)
		e.disk.clear(b)
		e.diskBytes -= diskFreed
	}
	empty := e.busy == 0 && e.emptyLocked()
	e.mu.Unlock()
	if memFreed > 0 {
		s.mem.release(memFreed)
	}
	if diskFreed > 0 {
		s.disk.release(diskFreed)
	}
	s.corrupt.Add(1)
	s.log.Warn("corrupt block dropped", "page", e.id, "file", e.ref, "block", b, "tier", from)
	if onDisk {
		// Persist the drop so a restart does not index the block again.
		e.diskMu.Lock()
		e.mu.RLock()
		dead, left, meta := e.dead, e.diskBytes, snapshotMetaLocked(e)
		e.mu.RUnlock()
		if !dead && left > 0 {
			if err := s.writeMeta(e, meta); err != nil {
				s.log.Warn("page record not written", "page", e.id, "err", err)
			}
		} else if !dead {
			s.removePageFiles(e)
		}
		e.diskMu.Unlock()
	}
	if empty {
		s.removeIfEmpty(e, true)
	}
}

// Missing returns the block-aligned spans of bytes [off, off+n) of page
// index of ref (clipped to the page) that no tier holds, in order; nil if
// all are held. It does not verify checksums (Read does).
func (s *Store) Missing(ref FileRef, index, off, n int64) []Span {
	length := s.geo.pageLen(ref.Size, index)
	off, end := max(off, 0), min(off+n, length)
	if end <= off {
		return nil
	}
	b0, b1 := s.geo.blockRange(off, end)
	bs := s.geo.blockSize
	span := func(from, to int) Span {
		lo := int64(from) * bs
		return Span{Off: lo, Len: min(int64(to)*bs, length) - lo}
	}
	e := s.lookup(PageID{File: ref.ID(), Index: index})
	if e == nil || e.length != length {
		return []Span{span(b0, b1)}
	}
	var spans []Span
	e.mu.RLock()
	defer e.mu.RUnlock()
	for b := b0; b < b1; {
		if held(e, b) {
			b++
			continue
		}
		j := b + 1
		for j < b1 && !held(e, j) {
			j++
		}
		spans = append(spans, span(b, j))
		b = j
	}
	return spans
}

// held reports whether a tier holds block b; e.mu is held.
func held(e *entry, b int) bool {
	return (e.mem != nil && e.mem[b] != nil) || (e.disk != nil && e.disk.has(b))
}

// Put stores data at page offset off of page index of ref, in the memory
// tier (if enabled) and the disk tier (if configured). off is
// block-aligned and data is whole blocks, except that it may end at the
// end of a short page (the file's last page). Blocks a tier already holds
// are not rewritten. Put keeps data (the memory tier holds slices of it):
// the caller must not modify it afterwards. A tier that
// cannot make room even after eviction is skipped; Put fails with
// ErrStoreFull only when no tier took the data.
func (s *Store) Put(ref FileRef, index, off int64, data []byte) error {
	bs := s.geo.blockSize
	crcs := make([]uint32, (int64(len(data))+bs-1)/bs)
	for i := range crcs {
		lo := int64(i) * bs
		crcs[i] = blockCRC(data[lo:min(lo+bs, int64(len(data)))])
	}
	return s.putChecked(ref, index, off, data, crcs)
}

// putChecked is Put of data whose blocks' checksums the caller computed
// (crcs[i] is the checksum of data's block i) as the bytes arrived.
func (s *Store) putChecked(ref FileRef, index, off int64, data []byte, crcs []uint32) error {
	p, err := s.stagePut(ref, index, off, data, crcs)
	if err != nil {
		return err
	}
	return p.finish()
}

// stagedPut is a put whose bytes are in the memory tier (if it took
// them) and not yet on disk: finish writes them there. Until then the
// page is held (busy), so its memory blocks stay for the disk write.
type stagedPut struct {
	s     *Store
	e     *entry
	b0    int
	data  []byte
	crcs  []uint32
	memOK bool
}

// stagePut is putChecked's first half: it checks the range and puts the
// bytes in the memory tier. Its caller must call finish on what it
// returns (nil, for no bytes, is fine).
func (s *Store) stagePut(ref FileRef, index, off int64, data []byte, crcs []uint32) (*stagedPut, error) {
	if s.closed.Load() {
		return nil, ErrStoreClosed
	}
	length := s.geo.pageLen(ref.Size, index)
	bs := s.geo.blockSize
	n := int64(len(data))
	if length == 0 || off < 0 || off%bs != 0 || off+n > length || (n%bs != 0 && off+n != length) || int64(len(crcs)) != (n+bs-1)/bs {
		return nil, fmt.Errorf("put %s page %d bytes [%d,%d) (page length %d, block size %d): %w",
			ref, index, off, off+n, length, bs, errPageRange)
	}
	if n == 0 {
		return nil, nil
	}
	e := s.acquire(ref, index, length)
	if e.length != length {
		s.release(e)
		s.wakeIfHigh()
		return nil, fmt.Errorf("put %s page %d: page holds %d bytes, ref says %d: %w", ref, index, e.length, length, errPageRange)
	}
	e.lastUse.Store(s.tick())
	p := &stagedPut{s: s, e: e, b0: int(off / bs), data: data, crcs: crcs}
	if s.mem != nil {
		p.memOK = s.putMemory(e, p.b0, data, crcs)
	}
	return p, nil
}

// finish writes a staged put's bytes to the disk tier and lets the page
// go.
func (p *stagedPut) finish() error {
	if p == nil {
		return nil
	}
	s, e := p.s, p.e
	defer s.wakeIfHigh() // after release: the pass may evict this page
	defer s.release(e)
	diskOK := false
	var diskErr error
	if s.disk != nil {
		diskOK, diskErr = s.putDisk(e, p.b0, p.data, p.crcs, p.memOK)
	}
	switch {
	case diskErr != nil:
		return fmt.Errorf("put %s page %d: %w", e.ref, e.id.Index, diskErr)
	case !p.memOK && !diskOK:
		return fmt.Errorf("put %s page %d (%d bytes): %w", e.ref, e.id.Index, len(p.data), ErrStoreFull)
	}
	return nil
}
