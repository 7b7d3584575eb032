package cachenode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Packed pages. A page shorter than StoreConfig.PackBelow (on a node,
// every page: DefaultPackBelow) gets no data file of its own on disk: it
// takes a slot in a pack, a file shared by many pages, appended to and
// never rewritten elsewhere. Creating a file per page cost a cold
// small-file fill more CPU than anything else the node did (inode
// allocation: 43% of the nodes' CPU in the FUSE small-file benchmark on
// this project's machine, whose ext4 has no journal and so scans past
// every inode freed in the last minutes), and a cold sequential read of
// 4 MiB pages 23% of the nodes' CPU on a day of many deletes; a slot
// costs a few writes to an open file.
//
//	Dir/packs/<seq, 16 hex>.pack   slots, back to back from offset 0
//
// A slot is a header, padded to a multiple of DirectAlign, then the
// page's blocks at their page offsets (sparse where not filled), padded
// to a multiple of DirectAlign. The header, little-endian:
//
//	magic        "LMPK"
//	flags        uint16 (bit 0: free)
//	format       uint16 (packFormat)
//	slot bytes   uint64 (header and data: the next slot starts there)
//	record bytes uint32, then the page's record (index.go; 0 when free)
//	checksum     uint32 CRC-32C of everything before it
//
// A new slot holding a whole page that is also in the memory tier (a
// cold small file's fill) is written with one direct write, header and
// blocks together; otherwise the blocks are written before the header.
// A header on disk whose blocks are not (a crash in the middle) lists
// blocks that fail their checksums when read, as torn blocks do. The
// header is rewritten in place when the record changes (its length never
// does for a page). A page whose disk copy is dropped has its header rewritten
// as free and the rest of its slot's blocks given back to the file
// system (a hole punched). A pack that is full (packLimit) is sealed, and
// removed once its last page is dropped.
//
// A free slot is taken again by a later page that fits in it (spare),
// before the active pack grows: otherwise a pack where a few pages stay
// (a hot set: 2% of the pages read again and again) never went, and every
// dropped slot in it kept its header's block, so the packs' disk space
// and descriptors grew without bound (30 MiB of packs for an 8 MiB tier
// after 6,000 small pages in the test that showed it). A reader holding a
// descriptor of the pack, with the dropped page's checksums, finds zeros
// or another page's bytes there, which fail them both, where an unlinked
// page file's reader finds the old bytes.
//
// On open, every pack is read slot by slot from its first; a header that
// does not decode ends the pack there (a crash while its slot was being
// written; the slots after it are lost to the cache), and the space from
// there to the pack's end is given back. Packs are never appended to
// after a restart: new slots go to a new pack.
const (
	packsDir   = "packs"
	packSuffix = ".pack"
	packMagic  = "LMPK"
	packFormat = 1
	packFree   = 1
	// packBytes is the most a pack grows before the next one is started.
	packBytes = 64 << 20
	// packHeaderFixed is the header's size before the record, and the
	// trailer's.
	packHeaderFixed   = 4 + 2 + 2 + 8 + 4
	packHeaderTrailer = 4
	// DefaultPackBelow is the PackBelow a node uses: every page is
	// packed, whole pages of large files too (16 of 4 MiB to a pack).
	DefaultPackBelow = math.MaxInt64
)

var errBadPackHeader = errors.New("unreadable pack slot header")

// packSlot is a page's place in a pack.
type packSlot struct {
	pack *packFile
	off  int64 // the header's offset in the pack
	data int64 // block 0's offset in the pack
	size int64 // header and data
}

// packFile is one pack. Its descriptors stay open until it is removed.
type packFile struct {
	seq    uint64
	path   string
	rw     *os.File // reads, headers, pieces that are not aligned, holes
	direct *os.File // aligned block writes bypassing the page cache; nil when sealed or refused

	// Guarded by packs.mu.
	end     int64 // where the next slot starts (the active pack)
	live    int   // slots holding a page
	writing int   // block writes in progress through direct
	sealed  bool  // takes no more slots
	removed bool
	spares  int // its free slots in packs.spare
}

// packs is a store's set of packs.
type packs struct {
	dir   string
	below int64
	limit int64 // packLimit; tests lower it
	log   *slog.Logger

	mu     sync.Mutex
	active *packFile
	seq    uint64 // the last pack's sequence number
	all    map[uint64]*packFile
	closed bool
	spare  map[int64][]*packSlot // free slots by size, taken before the active pack grows
	// spareLen counts spare's slots, spareStale those of removed packs,
	// left until a slot of their size is asked for or they are half of
	// spare (then swept): removing a pack never walks every free slot.
	spareLen, spareStale int

	punchRefused atomic.Bool
	reused       atomic.Int64 // spare slots taken again
}

func newPacks(dir string, below, diskBytes int64, log *slog.Logger) *packs {
	return &packs{dir: filepath.Join(dir, packsDir), below: below, limit: packLimit(diskBytes), log: log, all: map[uint64]*packFile{}, spare: map[int64][]*packSlot{}}
}

// packLimit is how long a store's packs grow: packBytes, or a 16th of a
// small disk tier (a pack's space is allocated when it is started).
func packLimit(diskBytes int64) int64 {
	return max(min(packBytes, alignUp(diskBytes/16)), 1<<20)
}

// takes reports whether a page of length bytes goes to a pack.
func (ps *packs) takes(length int64) bool {
	return ps != nil && length < ps.below
}

func alignUp(n int64) int64 { return (n + DirectAlign - 1) &^ (DirectAlign - 1) }

// slotOverhead is what a pack slot with a header of hdrLen bytes takes on
// disk beyond a page's length bytes: the header and the padding of its
// last block. The disk tier charges it with the page's blocks (toNewSlot),
// and again when a pack is opened (loadPack).
func slotOverhead(hdrLen, length int64) int64 { return hdrLen + alignUp(length) - length }

// packHeaderLen is the padded length of a header holding a record of n
// bytes.
func packHeaderLen(n int) int64 {
	return alignUp(int64(packHeaderFixed + n + packHeaderTrailer))
}

// encodePackHeader returns the header of a slot of size bytes holding rec
// (nil: a free slot), padded to hdrLen bytes, in an aligned buffer.
func encodePackHeader(size int64, rec []byte, hdrLen int64) []byte {
	le := binary.LittleEndian
	b := AlignedBuffer(int(hdrLen))
	copy(b, packMagic)
	flags := uint16(0)
	if rec == nil {
		flags = packFree
	}
	le.PutUint16(b[4:], flags)
	le.PutUint16(b[6:], packFormat)
	le.PutUint64(b[8:], uint64(size))
	le.PutUint32(b[16:], uint32(len(rec)))
	copy(b[packHeaderFixed:], rec)
	n := packHeaderFixed + len(rec)
	le.PutUint32(b[n:], blockCRC(b[:n]))
	return b
}

// packHeader is a decoded slot header.
type packHeader struct {
	free bool
	size int64
	rec  []byte
}

// readPackHeader reads and checks the header of the slot at off of a
// pack of fileSize bytes.
func readPackHeader(f *os.File, off, fileSize int64) (packHeader, error) {
	var h packHeader
	buf := make([]byte, DirectAlign)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return h, err
	}
	buf = buf[:n]
	le := binary.LittleEndian
	if len(buf) < packHeaderFixed+packHeaderTrailer || string(buf[:4]) != packMagic {
		return h, errBadPackHeader
	}
	if le.Uint16(buf[6:]) != packFormat {
		return h, fmt.Errorf("%w: format %d", errBadPackHeader, le.Uint16(buf[6:]))
	}
	h.free = le.Uint16(buf[4:])&packFree != 0
	h.size = int64(le.Uint64(buf[8:]))
	recLen := int64(le.Uint32(buf[16:]))
	if recLen > maxRecord || h.size < packHeaderLen(int(recLen)) || h.size%DirectAlign != 0 || off+h.size > fileSize {
		return h, fmt.Errorf("%w: slot of %d bytes with a record of %d", errBadPackHeader, h.size, recLen)
	}
	end := packHeaderFixed + recLen + packHeaderTrailer
	if end > int64(len(buf)) {
		more := make([]byte, end)
		if _, err := f.ReadAt(more, off); err != nil {
			return h, err
		}
		buf = more
	}
	body := buf[:end-packHeaderTrailer]
	if blockCRC(body) != le.Uint32(buf[end-packHeaderTrailer:]) {
		return h, fmt.Errorf("%w: checksum mismatch", errBadPackHeader)
	}
	if !h.free {
		h.rec = body[packHeaderFixed:]
	}
	return h, nil
}

// alloc takes a slot of size bytes in the active pack, starting a new
// pack when it is full, and counts a block write in progress on it
// (endWrite ends it).
func (ps *packs) alloc(size int64) (*packSlot, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, ErrStoreClosed
	}
	if slot := ps.takeSpareLocked(size); slot != nil {
		slot.pack.live++
		slot.pack.writing++
		return slot, nil
	}
	if p := ps.active; p == nil || (p.end > 0 && p.end+size > ps.limit) {
		if p != nil {
			ps.sealLocked(p)
		}
		np, err := ps.createLocked()
		if err != nil {
			return nil, err
		}
		ps.active = np
	}
	p := ps.active
	slot := &packSlot{pack: p, off: p.end, size: size}
	p.end += size
	p.live++
	p.writing++
	return slot, nil
}

// spareProbes is how many sizes from a page's own a spare slot may be
// larger by, a DirectAlign each: a slot taken by a shorter page keeps the
// rest as a hole, which costs no disk.
const spareProbes = 16

// takeSpareLocked takes a free slot of size bytes, or of up to
// spareProbes aligned blocks more, for a new page, opening its pack's
// direct descriptor again if the pack was sealed. It returns nil when
// there is none.
func (ps *packs) takeSpareLocked(size int64) *packSlot {
	for i := int64(0); i <= spareProbes; i++ {
		want := size + i*DirectAlign
		list := ps.spare[want]
		for len(list) > 0 {
			free := list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			ps.spareLen--
			if free.pack.removed {
				ps.spareStale--
				continue
			}
			if len(list) == 0 {
				delete(ps.spare, want)
			} else {
				ps.spare[want] = list
			}
			p := free.pack
			p.spares--
			ps.reused.Add(1)
			if p.direct == nil {
				if d, err := openDirect(p.path); err == nil {
					p.direct = d
				}
			}
			return &packSlot{pack: p, off: free.off, size: free.size}
		}
		delete(ps.spare, want)
	}
	return nil
}

// addSpareLocked makes a free slot of a pack that stays spare.
func (ps *packs) addSpareLocked(sl *packSlot) {
	ps.spare[sl.size] = append(ps.spare[sl.size], sl)
	sl.pack.spares++
	ps.spareLen++
}

// sweepSpareLocked drops the spare slots of removed packs.
func (ps *packs) sweepSpareLocked() {
	for size, list := range ps.spare {
		kept := list[:0]
		for _, sl := range list {
			if !sl.pack.removed {
				kept = append(kept, sl)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(ps.spare, size)
		} else {
			ps.spare[size] = kept
		}
	}
	ps.spareLen -= ps.spareStale
	ps.spareStale = 0
}

// createLocked creates the next pack, its space allocated up front when
// the file system allows (direct writes into allocated space run side by
// side; writes that allocate are serialized on the file).
func (ps *packs) createLocked() (*packFile, error) {
	seq := ps.seq + 1
	path := filepath.Join(ps.dir, fmt.Sprintf("%016x%s", seq, packSuffix))
	rw, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create pack: %w", err)
	}
	ps.seq = seq
	_ = preallocate(rw, ps.limit)
	p := &packFile{seq: seq, path: path, rw: rw}
	if d, err := openDirect(path); err == nil {
		p.direct = d
	}
	ps.all[seq] = p
	return p, nil
}

// sealLocked stops p taking slots; a sealed pack without pages goes.
func (ps *packs) sealLocked(p *packFile) {
	p.sealed = true
	if ps.active == p {
		ps.active = nil
	}
	ps.closeDirectLocked(p)
	if p.live == 0 {
		ps.removeLocked(p)
	}
}

func (ps *packs) closeDirectLocked(p *packFile) {
	if p.sealed && p.writing == 0 && p.direct != nil {
		p.direct.Close()
		p.direct = nil
	}
}

func (ps *packs) removeLocked(p *packFile) {
	if p.removed {
		return
	}
	p.removed = true
	delete(ps.all, p.seq)
	ps.spareStale += p.spares
	p.spares = 0
	if ps.spareStale > ps.spareLen/2 {
		ps.sweepSpareLocked()
	}
	if p.direct != nil {
		p.direct.Close()
		p.direct = nil
	}
	// A reader between its snapshot and its read finds the file closed
	// and the slot gone from its entry: the page was dropped (Read,
	// OpenDiskPage).
	p.rw.Close()
	if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		ps.log.Warn("remove pack", "path", p.path, "err", err)
	}
}

// beginWrite counts a block write in progress on slot's pack and returns
// a writer for it: direct writes while the pack has its direct
// descriptor and direct is asked for, through the page cache otherwise.
func (ps *packs) beginWrite(slot *packSlot, direct bool) *pageWriter {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	slot.pack.writing++
	w := &pageWriter{path: slot.pack.path, buffered: slot.pack.rw}
	if direct {
		w.direct = slot.pack.direct
	}
	return w
}

// endWrite ends a block write that alloc or beginWrite counted.
func (ps *packs) endWrite(slot *packSlot) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	slot.pack.writing--
	ps.closeDirectLocked(slot.pack)
}

// writeHeader writes slot's header holding rec.
func (ps *packs) writeHeader(slot *packSlot, rec []byte) error {
	hdr := encodePackHeader(slot.size, rec, slot.data-slot.off)
	w := ps.beginWrite(slot, true)
	defer ps.endWrite(slot)
	if err := w.WriteAt(hdr, slot.off); err != nil {
		return fmt.Errorf("write slot header in %s: %w", slot.pack.path, err)
	}
	return nil
}

// free drops what slot holds: its header says free, its blocks go back
// to the file system, and its pack goes once sealed and empty.
func (ps *packs) free(slot *packSlot) {
	p := slot.pack
	ps.mu.Lock()
	if p.removed {
		ps.mu.Unlock()
		return
	}
	p.writing++ // keeps the descriptors open
	ps.mu.Unlock()
	hdr := encodePackHeader(slot.size, nil, DirectAlign)
	if _, err := p.rw.WriteAt(hdr, slot.off); err != nil {
		ps.log.Warn("pack slot not marked free", "path", p.path, "offset", slot.off, "err", err)
	}
	if slot.size > DirectAlign {
		if err := punchHole(p.rw, slot.off+DirectAlign, slot.size-DirectAlign); err != nil && !ps.punchRefused.Swap(true) {
			ps.log.Warn("this file system does not punch holes: a dropped packed page's space comes back only when its whole pack is removed", "path", p.path, "err", err)
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p.writing--
	p.live--
	ps.closeDirectLocked(p)
	if p.live == 0 && p.sealed {
		ps.removeLocked(p)
		return
	}
	if !ps.closed {
		// A new packSlot, not slot: a reader compares the one it holds
		// with its entry's to tell that the page left it (slotGone).
		ps.addSpareLocked(&packSlot{pack: p, off: slot.off, size: slot.size})
	}
}

// close closes every pack's descriptors.
func (ps *packs) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closed = true
	for _, p := range ps.all {
		if p.direct != nil {
			p.direct.Close()
			p.direct = nil
		}
		p.rw.Close()
	}
}

// packSeq parses a pack's file name.
func packSeq(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, packSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil
}

// loadPacks indexes the pages of every pack in Dir/packs, oldest first;
// a pack that holds none is removed, as is anything else in the
// directory.
func (s *Store) loadPacks() (loaded, removed int, err error) {
	ps := s.packs
	if err := os.MkdirAll(ps.dir, 0o755); err != nil {
		return 0, 0, fmt.Errorf("create %s: %w", ps.dir, err)
	}
	des, err := os.ReadDir(ps.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("scan %s: %w", ps.dir, err)
	}
	var seqs []uint64
	for _, de := range des {
		seq, ok := packSeq(de.Name())
		if !ok || de.IsDir() {
			os.RemoveAll(filepath.Join(ps.dir, de.Name()))
			removed++
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		ps.seq = max(ps.seq, seq)
		n, err := s.loadPack(seq)
		if err != nil {
			return loaded, removed, err
		}
		loaded += n
	}
	return loaded, removed, nil
}

// loadPack indexes the pages of one pack, sealed, and removes it when it
// holds none.
func (s *Store) loadPack(seq uint64) (int, error) {
	ps := s.packs
	path := filepath.Join(ps.dir, fmt.Sprintf("%016x%s", seq, packSuffix))
	rw, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	st, err := rw.Stat()
	if err != nil {
		rw.Close()
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	// Unsealed while it is read, so freeing a slot does not remove it.
	p := &packFile{seq: seq, path: path, rw: rw}
	ps.all[seq] = p
	var slots []*packSlot
	var metas []pageMeta
	var spare []*packSlot
	end, err := walkPack(rw, st.Size(), func(off, data int64, h packHeader) {
		if h.free {
			spare = append(spare, &packSlot{pack: p, off: off, size: h.size})
			return
		}
		slot := &packSlot{pack: p, off: off, data: data, size: h.size}
		m, err := decodeMeta(h.rec)
		if err == nil {
			err = s.checkLoaded(m)
		}
		if err == nil && s.geo.pageLen(m.ref.Size, m.index)+slot.data-slot.off > slot.size {
			err = fmt.Errorf("page of %d bytes in a slot of %d", s.geo.pageLen(m.ref.Size, m.index), slot.size)
		}
		if err != nil {
			s.log.Warn("packed cache page removed on open", "path", path, "offset", slot.off, "err", err)
			p.live++
			ps.free(slot)
			return
		}
		slots, metas = append(slots, slot), append(metas, m)
	})
	if err != nil {
		if !isZeros(rw, end) {
			s.log.Warn("pack read up to a slot it cannot read; the slots after it are dropped", "path", path, "offset", end, "err", err)
		}
		// Nothing after end is read again: its space, allocated when the
		// pack was started or by the slots dropped, goes.
		_ = punchHole(rw, end, st.Size()-end)
	}
	stamp := st.ModTime().UnixNano() - int64(len(slots))
	for i, slot := range slots {
		m := metas[i]
		id := PageID{File: m.ref.ID(), Index: m.index}
		p.live++
		if s.pages[id] != nil {
			ps.free(slot) // a copy indexed already
			continue
		}
		e := s.loadedEntry(id, m)
		// As toNewSlot charged it: a slot taken again may be larger, the
		// rest a hole.
		e.slot, e.slotBytes = slot, slotOverhead(slot.data-slot.off, e.length)
		e.lastUse.Store(stamp + int64(i))
		s.pages[id] = e
		s.disk.used += e.diskBytes + e.slotBytes
	}
	if stamp+int64(len(slots)) > s.clock.Load() {
		s.clock.Store(stamp + int64(len(slots)))
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p.sealed = true
	if p.live == 0 {
		ps.removeLocked(p)
		return 0, nil
	}
	for _, sl := range spare {
		ps.addSpareLocked(sl)
	}
	return p.live, nil
}

// isZeros reports whether the pack holds only zeros from off for a block:
// where a slot was taken and never written, or the file's end.
func isZeros(f *os.File, off int64) bool {
	buf := make([]byte, DirectAlign)
	n, _ := f.ReadAt(buf, off)
	for _, c := range buf[:n] {
		if c != 0 {
			return false
		}
	}
	return true
}

// PackedPage is a page held in a pack, as ReadPackSlots finds it.
type PackedPage struct {
	File   FileRef
	Index  int64 // the page's index in its file
	Data   int64 // the offset in the pack of the page's first byte (block 0)
	Length int64 // the page's length
}

// ReadPackSlots lists the pages a pack file holds, slot by slot as a
// store reads it on open, up to a slot it cannot read. For tools and
// tests that look into a node's cache directory; read while a node runs,
// it sees the slots written so far.
func ReadPackSlots(path string) ([]PackedPage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var pages []PackedPage
	var bad error
	walkPack(f, st.Size(), func(off, data int64, h packHeader) {
		if h.free || bad != nil {
			return
		}
		m, err := decodeMeta(h.rec)
		if err != nil {
			bad = fmt.Errorf("%s: slot at %d: %w", path, off, err)
			return
		}
		length := min(m.pageSize, m.ref.Size-m.index*m.pageSize)
		pages = append(pages, PackedPage{File: m.ref, Index: m.index, Data: data, Length: length})
	})
	return pages, bad
}

// walkPack calls fn with each slot of the pack f, of size bytes, in order
// from its first, free ones too: the slot's offset, its block 0's and its
// header. It stops at a header that does not read and returns its offset
// and error (size and nil when every slot read).
func walkPack(f *os.File, size int64, fn func(off, data int64, h packHeader)) (int64, error) {
	for off := int64(0); off < size; {
		h, err := readPackHeader(f, off, size)
		if err != nil {
			return off, err
		}
		fn(off, off+packHeaderLen(len(h.rec)), h)
		off += h.size
	}
	return size, nil
}
