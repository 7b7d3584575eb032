package cachenode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The record of a disk page: everything needed to serve the page after a
// restart. It is stored in the page's data file at offset page size, past
// every block, as a little-endian uint32 length, the record, and zeros up
// to a multiple of DirectAlign (so a direct-I/O descriptor writes it with
// the blocks). The record, little-endian, in this order:
//
//	magic      "LMPM"
//	format     uint16 (sidecarFormat)
//	flags      uint16 (bit 0: pinned)
//	page size  int64   block size int64
//	index      int64   file size  int64
//	expires    int64   (unix nanos, 0 = no TTL)
//	mount, path, version: uint32 length + bytes each
//	blocks     uint32
//	bitmap     uint64 per 64 blocks (blocks held on disk)
//	checksums  uint32 per block (CRC-32C; meaningful where the bit is set)
//	trailer    uint32 CRC-32C of everything before it
//
// It is written after the blocks it lists, and rewritten in place (its
// length never changes for a page). Nothing is fsynced: blocks lost or
// torn by a crash fail their checksums and are refetched, and a record
// torn by a crash fails its trailer, which drops the page on the next
// open. Format 1 kept the record in a sidecar file of its own; creating
// that second file per page cost a third of a cold small-file fill's CPU.
const (
	sidecarMagic  = "LMPM"
	sidecarFormat = 2
	flagPinned    = 1
	maxNameLen    = 64 << 10
	// maxRecord bounds what is read back as a record: three names of
	// at most maxNameLen and a page of at most 2^24 blocks.
	maxRecord = 3*maxNameLen + 1<<24*5 + 1<<10
)

// pageMeta is the persisted state of one disk page.
type pageMeta struct {
	pageSize, blockSize int64
	ref                 FileRef
	index               int64
	pinned              bool
	expires             int64
	disk                bitmap
	crc                 []uint32
}

// snapshotMetaLocked copies what the record needs; e.mu is held.
func snapshotMetaLocked(e *entry) pageMeta {
	return pageMeta{
		ref:     e.ref,
		index:   e.id.Index,
		pinned:  e.pinned,
		expires: e.expires,
		disk:    append(bitmap(nil), e.disk...),
		crc:     append([]uint32(nil), e.crc...),
	}
}

func (m pageMeta) encode() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 64+len(m.ref.Mount)+len(m.ref.Path)+len(m.ref.Version)+8*len(m.disk)+4*len(m.crc))
	b = append(b, sidecarMagic...)
	b = le.AppendUint16(b, sidecarFormat)
	var flags uint16
	if m.pinned {
		flags |= flagPinned
	}
	b = le.AppendUint16(b, flags)
	for _, v := range []int64{m.pageSize, m.blockSize, m.index, m.ref.Size, m.expires} {
		b = le.AppendUint64(b, uint64(v))
	}
	for _, s := range []string{m.ref.Mount, m.ref.Path, m.ref.Version} {
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = le.AppendUint32(b, uint32(len(m.crc)))
	for _, w := range m.disk {
		b = le.AppendUint64(b, w)
	}
	for _, c := range m.crc {
		b = le.AppendUint32(b, c)
	}
	return le.AppendUint32(b, blockCRC(b))
}

// errBadSidecar: a sidecar that is truncated, garbled or of another format.
var errBadSidecar = errors.New("unreadable page sidecar")

type sidecarReader struct {
	b   []byte
	err error
}

func (r *sidecarReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errBadSidecar
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *sidecarReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *sidecarReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *sidecarReader) i64() int64 {
	if v := r.take(8); v != nil {
		return int64(binary.LittleEndian.Uint64(v))
	}
	return 0
}

func (r *sidecarReader) str() string {
	n := r.u32()
	if n > maxNameLen {
		r.err = errBadSidecar
		return ""
	}
	return string(r.take(int(n)))
}

func decodeMeta(b []byte) (pageMeta, error) {
	var m pageMeta
	if len(b) < 8 || string(b[:4]) != sidecarMagic {
		return m, errBadSidecar
	}
	body, trailer := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if blockCRC(body) != trailer {
		return m, fmt.Errorf("%w: checksum mismatch", errBadSidecar)
	}
	r := &sidecarReader{b: body[4:]}
	if f := r.u16(); f != sidecarFormat {
		return m, fmt.Errorf("%w: format %d", errBadSidecar, f)
	}
	flags := r.u16()
	m.pinned = flags&flagPinned != 0
	m.pageSize, m.blockSize = r.i64(), r.i64()
	m.index, m.ref.Size, m.expires = r.i64(), r.i64(), r.i64()
	m.ref.Mount, m.ref.Path, m.ref.Version = r.str(), r.str(), r.str()
	n := int(r.u32())
	if r.err != nil || n > 1<<24 {
		return m, errBadSidecar
	}
	m.disk = newBitmap(n)
	for i := range m.disk {
		m.disk[i] = uint64(r.i64())
	}
	m.crc = make([]uint32, n)
	for i := range m.crc {
		m.crc[i] = r.u32()
	}
	if r.err != nil || len(r.b) != 0 {
		return m, errBadSidecar
	}
	return m, nil
}

// writeMeta rewrites the record of a page held on disk (a pin, a TTL, a
// dropped block): in its data file, or in its pack slot's header. The
// caller holds the entry's diskMu, so record writes of one page never
// interleave.
func (s *Store) writeMeta(e *entry, m pageMeta) error {
	e.mu.RLock()
	slot := e.slot
	e.mu.RUnlock()
	if slot != nil {
		m.pageSize, m.blockSize = s.geo.pageSize, s.geo.blockSize
		return s.packs.writeHeader(slot, m.encode())
	}
	f, err := os.OpenFile(s.dataPath(e.id), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write record of page %s: %w", e.id, err)
	}
	w := &pageWriter{path: f.Name(), buffered: f}
	if err := s.writeRecord(w, m); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write record of page %s: %w", e.id, err)
	}
	return nil
}

// writeRecord writes a page's record through w at the page size.
func (s *Store) writeRecord(w *pageWriter, m pageMeta) error {
	m.pageSize, m.blockSize = s.geo.pageSize, s.geo.blockSize
	rec := m.encode()
	buf := AlignedBuffer((4 + len(rec) + DirectAlign - 1) &^ (DirectAlign - 1))
	binary.LittleEndian.PutUint32(buf, uint32(len(rec)))
	copy(buf[4:], rec)
	if err := w.WriteAt(buf, s.geo.pageSize); err != nil {
		return fmt.Errorf("write record of %s: %w", w.path, err)
	}
	return nil
}

// readRecord reads the record of the data file at path.
func (s *Store) readRecord(path string) (pageMeta, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return pageMeta{}, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pageMeta{}, nil, err
	}
	n := st.Size() - s.geo.pageSize
	if n < 4 || n > maxRecord+DirectAlign {
		return pageMeta{}, nil, fmt.Errorf("%w: no page record (file of %d bytes)", errBadSidecar, st.Size())
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, s.geo.pageSize); err != nil {
		return pageMeta{}, nil, err
	}
	rec := int64(binary.LittleEndian.Uint32(buf))
	if rec > n-4 {
		return pageMeta{}, nil, fmt.Errorf("%w: record of %d bytes in %d", errBadSidecar, rec, n-4)
	}
	m, err := decodeMeta(buf[4 : 4+rec])
	return m, st, err
}

// loadIndex rebuilds the index from Dir: every data file with a readable
// record whose identity and geometry check out is indexed with the blocks
// its record lists; everything else under Dir/pages (data files whose
// record does not decode, format 1 sidecars, leftover temporary files) is
// removed. Then the packs' pages (pack.go), which a page file of the same
// page takes precedence over.
func (s *Store) loadIndex() error {
	if err := s.makeDirs(); err != nil {
		return err
	}
	root := filepath.Join(s.cfg.Dir, pagesDir)
	subdirs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("scan %s: %w", root, err)
	}
	start := time.Now()
	var loaded, removed int
	for _, sd := range subdirs {
		if !sd.IsDir() {
			continue
		}
		dir := filepath.Join(root, sd.Name())
		names, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("scan %s: %w", dir, err)
		}
		for _, de := range names {
			name := de.Name()
			path := filepath.Join(dir, name)
			if !strings.HasSuffix(name, dataSuffix) {
				// Format 1 sidecars and temporary files.
				if err := os.Remove(path); err == nil {
					removed++
				}
				continue
			}
			if err := s.loadPage(path, strings.TrimSuffix(name, dataSuffix)); err != nil {
				s.log.Warn("cache page removed on open", "path", path, "err", err)
				os.Remove(path)
				removed++
				continue
			}
			loaded++
		}
	}
	packed, packsRemoved, err := s.loadPacks()
	if err != nil {
		return err
	}
	s.log.Info("page store index loaded", "dir", s.cfg.Dir, "pages", loaded+packed, "packed", packed, "removed", removed+packsRemoved,
		"disk_bytes", s.disk.usedBytes(), "took", time.Since(start))
	return nil
}

// loadPage indexes one page from the record in its data file.
func (s *Store) loadPage(path, base string) error {
	m, st, err := s.readRecord(path)
	if err != nil {
		return err
	}
	if err := s.checkLoaded(m); err != nil {
		return err
	}
	id := PageID{File: m.ref.ID(), Index: m.index}
	if filepath.Base(s.pageBase(id)) != base {
		return fmt.Errorf("record names %s, file is %s", id, base)
	}
	e := s.loadedEntry(id, m)
	mtime := st.ModTime()
	e.lastUse.Store(mtime.UnixNano())
	if mtime.UnixNano() > s.clock.Load() {
		s.clock.Store(mtime.UnixNano())
	}
	s.pages[id] = e
	// Loaded pages may exceed a limit lowered since the last run; the
	// evictor brings the tier down, and fills wait for it.
	s.disk.used += e.diskBytes
	return nil
}

// checkLoaded checks a record read back from disk: the store's geometry,
// a block list as long as the page, and at least one block held.
func (s *Store) checkLoaded(m pageMeta) error {
	if m.pageSize != s.geo.pageSize || m.blockSize != s.geo.blockSize {
		return fmt.Errorf("page geometry %d/%d, store uses %d/%d", m.pageSize, m.blockSize, s.geo.pageSize, s.geo.blockSize)
	}
	length := s.geo.pageLen(m.ref.Size, m.index)
	if length == 0 || s.geo.blocks(length) != len(m.crc) {
		return fmt.Errorf("page %d of %s: %d blocks listed for a page of %d bytes", m.index, m.ref, len(m.crc), length)
	}
	for b := range m.crc {
		if m.disk.has(b) {
			return nil
		}
	}
	return fmt.Errorf("page %d of %s holds no blocks", m.index, m.ref)
}

// loadedEntry is the entry of a page read back from disk with record m.
func (s *Store) loadedEntry(id PageID, m pageMeta) *entry {
	length := s.geo.pageLen(m.ref.Size, m.index)
	e := &entry{
		id: id, ref: m.ref, length: length, nblocks: len(m.crc),
		crc: m.crc, disk: m.disk, pinned: m.pinned, expires: m.expires,
	}
	for b := 0; b < e.nblocks; b++ {
		if e.disk.has(b) {
			e.diskBytes += s.geo.blockLen(length, b)
		}
	}
	return e
}

// pageFileName is the base name of a page's files.
func pageFileName(id PageID) string { return id.File.String() + "-" + strconv.FormatInt(id.Index, 10) }
