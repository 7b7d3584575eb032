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

// The sidecar of a disk page: everything needed to serve the page after a
// restart. Little-endian, in this order:
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
// It is written to a temporary file and renamed over the old one after
// the blocks it lists are written, so a reader of the directory sees the
// old or the new sidecar, never a mix. Nothing is fsynced: blocks lost or
// torn by a crash fail their checksums and are refetched.
const (
	sidecarMagic  = "LMPM"
	sidecarFormat = 1
	flagPinned    = 1
	maxNameLen    = 64 << 10
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

// snapshotMetaLocked copies what the sidecar needs; e.mu is held.
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

// writeMeta replaces a page's sidecar atomically; the caller holds the
// entry's diskMu, so sidecar writes of one page never interleave.
func (s *Store) writeMeta(id PageID, m pageMeta) error {
	m.pageSize, m.blockSize = s.geo.pageSize, s.geo.blockSize
	path := s.metaPath(id)
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+tmpMarker+"*")
	if err != nil {
		return fmt.Errorf("write sidecar of page %s: %w", id, err)
	}
	if _, err := f.Write(m.encode()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write sidecar %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("close sidecar %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("rename sidecar to %s: %w", path, err)
	}
	return nil
}

// loadIndex rebuilds the index from Dir: every page with a readable
// sidecar whose identity, geometry and data file check out is indexed with
// the blocks its sidecar lists; everything else under Dir/pages (sidecars
// that do not decode, data without a sidecar, leftover temporary files) is
// removed.
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
		indexed := make(map[string]bool)
		for _, de := range names {
			name := de.Name()
			if !strings.HasSuffix(name, metaSuffix) {
				continue
			}
			base := strings.TrimSuffix(name, metaSuffix)
			if err := s.loadPage(dir, base); err != nil {
				s.log.Warn("cache page removed on open", "path", filepath.Join(dir, name), "err", err)
				os.Remove(filepath.Join(dir, name))
				os.Remove(filepath.Join(dir, base+dataSuffix))
				removed++
				continue
			}
			indexed[base] = true
			loaded++
		}
		for _, de := range names {
			name := de.Name()
			switch {
			case strings.Contains(name, tmpMarker):
			case strings.HasSuffix(name, dataSuffix) && !indexed[strings.TrimSuffix(name, dataSuffix)]:
			default:
				continue
			}
			if err := os.Remove(filepath.Join(dir, name)); err == nil {
				removed++
			}
		}
	}
	s.log.Info("page store index loaded", "dir", s.cfg.Dir, "pages", loaded, "removed", removed,
		"disk_bytes", s.disk.usedBytes(), "took", time.Since(start))
	return nil
}

// loadPage indexes one page from its sidecar.
func (s *Store) loadPage(dir, base string) error {
	metaPath := filepath.Join(dir, base+metaSuffix)
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		return err
	}
	m, err := decodeMeta(raw)
	if err != nil {
		return err
	}
	if m.pageSize != s.geo.pageSize || m.blockSize != s.geo.blockSize {
		return fmt.Errorf("page geometry %d/%d, store uses %d/%d", m.pageSize, m.blockSize, s.geo.pageSize, s.geo.blockSize)
	}
	id := PageID{File: m.ref.ID(), Index: m.index}
	if filepath.Base(s.pageBase(id)) != base {
		return fmt.Errorf("sidecar names %s, file is %s", id, base)
	}
	length := s.geo.pageLen(m.ref.Size, m.index)
	if length == 0 || s.geo.blocks(length) != len(m.crc) {
		return fmt.Errorf("page %s: %d blocks listed for a page of %d bytes", id, len(m.crc), length)
	}
	st, err := os.Stat(filepath.Join(dir, base+dataSuffix))
	if err != nil {
		return fmt.Errorf("data file: %w", err)
	}
	mtime := st.ModTime()
	if mst, err := os.Stat(metaPath); err == nil && mst.ModTime().After(mtime) {
		mtime = mst.ModTime()
	}
	e := &entry{
		id: id, ref: m.ref, length: length, nblocks: len(m.crc),
		crc: m.crc, disk: m.disk, pinned: m.pinned, expires: m.expires,
	}
	for b := 0; b < e.nblocks; b++ {
		if e.disk.has(b) {
			e.diskBytes += s.geo.blockLen(length, b)
		}
	}
	if e.diskBytes == 0 {
		return fmt.Errorf("page %s holds no blocks", id)
	}
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

// pageFileName is the base name of a page's files.
func pageFileName(id PageID) string { return id.File.String() + "-" + strconv.FormatInt(id.Index, 10) }
