package cachenode

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// On-disk layout of the disk tier (see doc.go):
//
//	Dir/pages/<first 2 hex of FileID>/<FileID>-<index>.page   block data at block offsets (sparse),
//	                                                          then the page record (index.go) at the page size
//
// Before format 2 the record was a sidecar file next to the data
// (<FileID>-<index>.meta, replaced through a temporary file); opening a
// store removes such leftovers.
const (
	pagesDir   = "pages"
	dataSuffix = ".page"
	metaSuffix = ".meta"
	tmpMarker  = ".tmp"
)

func (s *Store) pageBase(id PageID) string {
	return filepath.Join(s.cfg.Dir, pagesDir, id.File.String()[:2], pageFileName(id))
}

func (s *Store) dataPath(id PageID) string { return s.pageBase(id) + dataSuffix }

// makeDirs creates the 256 fan-out directories once, so fills never stat
// or create directories.
func (s *Store) makeDirs() error {
	for i := 0; i < 256; i++ {
		dir := filepath.Join(s.cfg.Dir, pagesDir, fmt.Sprintf("%02x", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// putDisk writes blocks [b0, b0+len(crcs)) of data that the disk tier does
// not hold yet to the page's data file, then records them in the page's
// record, through the same descriptor: a cold fill creates one file.
// It reports whether the disk tier holds all of them afterwards. inMemory
// says the memory tier holds them too: then they bypass the page cache
// (see pagewriter.go); otherwise the page cache is the only copy in RAM.
func (s *Store) putDisk(e *entry, b0 int, data []byte, crcs []uint32, inMemory bool) (bool, error) {
	if s.diskGate != nil {
		s.diskGate()
	}
	e.diskMu.Lock()
	defer e.diskMu.Unlock()

	var need int64
	todo := make([]bool, len(crcs))
	e.mu.RLock()
	for i := range crcs {
		b := b0 + i
		if !e.disk.has(b) && s.acceptCRCLocked(e, b, crcs[i]) {
			todo[i] = true
			need += s.geo.blockLen(e.length, b)
		}
	}
	e.mu.RUnlock()
	if need == 0 {
		return true, nil
	}
	if !s.reserve(s.disk, need) {
		return false, nil
	}
	d := &diskPut{s: s, e: e, b0: b0, data: data, crcs: crcs, todo: todo, need: need}
	e.mu.RLock()
	slot, first := e.slot, e.diskBytes == 0
	e.mu.RUnlock()
	switch {
	case slot == nil && first && s.packs.takes(e.length):
		return d.toNewSlot(inMemory)
	case slot != nil:
		w := s.packs.beginWrite(slot, inMemory)
		defer s.packs.endWrite(slot)
		return d.toSlot(slot, w, d.record().encode())
	}
	path := s.dataPath(e.id)
	f, err := openPageWriter(path, inMemory)
	if err != nil {
		s.disk.release(need)
		return false, err
	}
	if err := d.writeBlocks(f, 0); err != nil {
		f.Close()
		return false, err
	}
	// The record lists the blocks just written; e lists them only once
	// the file is closed (diskMu keeps other writers of the record out).
	if err := s.writeRecord(f, d.record()); err != nil {
		// The blocks are on disk and will be indexed in memory; only a
		// restart would forget them.
		s.log.Warn("page record not written", "page", e.id, "err", err)
	}
	if err := f.Close(); err != nil {
		s.disk.release(need)
		return false, fmt.Errorf("close %s: %w", path, err)
	}
	d.commit(nil)
	return true, nil
}

// diskPut is one putDisk's blocks: those of data (blocks from b0) that
// todo marks, need bytes of them, reserved in the disk tier. diskMu is
// held.
type diskPut struct {
	s    *Store
	e    *entry
	b0   int
	data []byte
	crcs []uint32
	todo []bool
	need int64 // the blocks' bytes, reserved in the disk tier
	// slotBytes is reserved too for a new pack slot: its header and the
	// padding of its blocks (a block each for a small file's page, which
	// the tier would otherwise not count).
	slotBytes int64
}

// unreserve gives back what d reserved in the disk tier, after a failed
// write.
func (d *diskPut) unreserve() { d.s.disk.release(d.need + d.slotBytes) }

// writeBlocks writes each run of the blocks to write with one call
// through w, at base plus their page offsets. On failure the reserved
// bytes are released.
func (d *diskPut) writeBlocks(w *pageWriter, base int64) error {
	bs := d.s.geo.blockSize
	for i := 0; i < len(d.crcs); {
		if !d.todo[i] {
			i++
			continue
		}
		j := i
		for j < len(d.crcs) && d.todo[j] {
			j++
		}
		lo, hi := int64(i)*bs, min(int64(j)*bs, int64(len(d.data)))
		if err := w.WriteAt(d.data[lo:hi], base+int64(d.b0)*bs+lo); err != nil {
			d.unreserve()
			return fmt.Errorf("write page %s blocks [%d,%d) to %s: %w", d.e.id, d.b0+i, d.b0+j, w.path, err)
		}
		i = j
	}
	return nil
}

// record is the page's record listing the blocks written too.
func (d *diskPut) record() pageMeta {
	d.e.mu.RLock()
	meta := snapshotMetaLocked(d.e)
	d.e.mu.RUnlock()
	for i := range d.crcs {
		if d.todo[i] {
			meta.disk.set(d.b0 + i)
			meta.crc[d.b0+i] = d.crcs[i]
		}
	}
	meta.pageSize, meta.blockSize = d.s.geo.pageSize, d.s.geo.blockSize
	return meta
}

// commit lists the blocks written in the entry, in slot when packed.
func (d *diskPut) commit(slot *packSlot) {
	e := d.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if slot != nil && e.slot == nil {
		e.slotBytes = d.slotBytes
	}
	e.slot = slot
	for i := range d.crcs {
		if d.todo[i] {
			e.disk.set(d.b0 + i)
			e.crc[d.b0+i] = d.crcs[i]
		}
	}
	e.diskBytes += d.need
}

// toNewSlot writes the first blocks of a page that goes to a pack: a new
// slot, the blocks, then the header listing them.
func (d *diskPut) toNewSlot(inMemory bool) (bool, error) {
	s := d.s
	rec := d.record().encode()
	hdrLen := packHeaderLen(len(rec))
	over := slotOverhead(hdrLen, d.e.length)
	if !s.reserve(s.disk, over) {
		d.unreserve()
		return false, nil
	}
	d.slotBytes = over
	slot, err := s.packs.alloc(d.e.length + over)
	if err != nil {
		d.unreserve()
		return false, err
	}
	slot.data = slot.off + hdrLen
	w := &pageWriter{path: slot.pack.path, buffered: slot.pack.rw}
	var ok, once bool
	if inMemory {
		w.direct = slot.pack.direct // alloc counted this write: open until it ends
		once, err = d.toNewSlotOnce(slot, w, rec)
		ok = once && err == nil
	}
	if !once {
		ok, err = d.toSlot(slot, w, rec)
	}
	s.packs.endWrite(slot)
	if err != nil {
		s.packs.free(slot)
	}
	return ok, err
}

// toNewSlotOnce writes a new slot's header and its page's blocks, the
// whole page, with one direct write (pwritev): a small file's fill costs
// one write to the disk where blocks then header cost two, and three
// when the page's length is not a multiple of DirectAlign (its tail went
// through the page cache; here it is padded with zeros, which the slot
// has room for). It reports false, having written nothing, when it
// cannot: d is not the whole page, the page's buffer is not aligned,
// direct writes are off or refused; the caller writes blocks, then
// header. A crash in the middle of the write may leave the header on
// disk without all the blocks: they fail their checksums when read, as a
// torn block does, and the page is filled again.
func (d *diskPut) toNewSlotOnce(slot *packSlot, w *pageWriter, rec []byte) (bool, error) {
	if w.direct == nil || w.refused.Load() || d.b0 != 0 || int64(len(d.data)) != d.e.length || slot.off%directAlign != 0 {
		return false, nil
	}
	for _, t := range d.todo {
		if !t {
			return false, nil
		}
	}
	bufs := [][]byte{encodePackHeader(slot.size, rec, slot.data-slot.off)}
	head := len(d.data) &^ (directAlign - 1)
	if head > 0 {
		if !directAligned(d.data[:head], 0) {
			return false, nil
		}
		bufs = append(bufs, d.data[:head])
	}
	if tail := d.data[head:]; len(tail) > 0 {
		b := AlignedBuffer(directAlign)
		copy(b, tail)
		bufs = append(bufs, b)
	}
	switch err := writeDirectv(w.direct, bufs, slot.off); {
	case err == nil:
	case errors.Is(err, syscall.EINVAL):
		// The device wants a larger alignment: no more direct writes.
		w.refused.Store(true)
		return false, nil
	case errors.Is(err, io.ErrShortWrite), errors.Is(err, errNoDirectIO):
		return false, nil // the two writes rewrite it all
	default:
		d.unreserve()
		return true, fmt.Errorf("write page %s to %s: %w", d.e.id, w.path, err)
	}
	d.commit(slot)
	return true, nil
}

// toSlot writes the blocks through w into slot, then its header holding
// rec, the record that lists them: the first blocks of a new slot, or
// more of a page already packed (a block filled after the first, or
// written again after a bad checksum).
func (d *diskPut) toSlot(slot *packSlot, w *pageWriter, rec []byte) (bool, error) {
	if err := d.writeBlocks(w, slot.data); err != nil {
		return false, err
	}
	if err := d.s.packs.writeHeader(slot, rec); err != nil {
		d.unreserve()
		return false, err
	}
	d.commit(slot)
	return true, nil
}

// readDiskRun reads blocks [b0, b1) of a page from its data file into buf,
// which is exactly their length. A file that is missing or short (torn or
// removed) reads as zeros, which fail their checksums.
func readDiskRun(f *os.File, off int64, buf []byte) error {
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(buf[n:])
	return nil
}

// dropDiskLocked forgets the disk copy of a page; e.mu is held, and the
// caller removes the files while holding e.diskMu.
func (s *Store) dropDiskLocked(e *entry) int64 {
	freed := e.diskBytes
	if e.disk != nil {
		e.disk.reset()
	}
	e.diskBytes = 0
	return freed
}

// removePageFiles removes a page's disk copy: its data file, record and
// all, or its pack slot. The caller holds the entry's diskMu.
func (s *Store) removePageFiles(e *entry) {
	e.mu.Lock()
	slot, slotBytes := e.slot, e.slotBytes
	e.slot, e.slotBytes = nil, 0
	e.mu.Unlock()
	if slot != nil {
		s.packs.free(slot)
		s.disk.release(slotBytes)
		return
	}
	if err := os.Remove(s.dataPath(e.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("remove page file", "page", e.id, "path", s.dataPath(e.id), "err", err)
	}
}
