package cachenode

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

	bs := s.geo.blockSize
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
	path := s.dataPath(e.id)
	f, err := openPageWriter(path, inMemory)
	if err != nil {
		s.disk.release(need)
		return false, err
	}
	// Write each run of missing blocks with one call.
	for i := 0; i < len(crcs); {
		if !todo[i] {
			i++
			continue
		}
		j := i
		for j < len(crcs) && todo[j] {
			j++
		}
		lo, hi := int64(i)*bs, min(int64(j)*bs, int64(len(data)))
		if err := f.WriteAt(data[lo:hi], int64(b0)*bs+lo); err != nil {
			f.Close()
			s.disk.release(need)
			return false, fmt.Errorf("write page %s blocks [%d,%d) to %s: %w", e.id, b0+i, b0+j, path, err)
		}
		i = j
	}
	// The record lists the blocks just written; e lists them only once
	// the file is closed (diskMu keeps other writers of the record out).
	e.mu.RLock()
	meta := snapshotMetaLocked(e)
	e.mu.RUnlock()
	for i := range crcs {
		if todo[i] {
			meta.disk.set(b0 + i)
			meta.crc[b0+i] = crcs[i]
		}
	}
	if err := s.writeRecord(f, meta); err != nil {
		// The blocks are on disk and will be indexed in memory; only a
		// restart would forget them.
		s.log.Warn("page record not written", "page", e.id, "err", err)
	}
	if err := f.Close(); err != nil {
		s.disk.release(need)
		return false, fmt.Errorf("close %s: %w", path, err)
	}
	e.mu.Lock()
	for i := range crcs {
		if todo[i] {
			e.disk.set(b0 + i)
			e.crc[b0+i] = crcs[i]
		}
	}
	e.diskBytes += need
	e.mu.Unlock()
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

// removePageFiles removes a page's data file, record and all; the caller
// holds the entry's diskMu.
func (s *Store) removePageFiles(id PageID) {
	if err := os.Remove(s.dataPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("remove page file", "page", id, "path", s.dataPath(id), "err", err)
	}
}
