package cachenode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DiskPage is what the disk tier holds of one page at one moment: the
// blocks present in its data file and their checksums. It is what a
// short-circuit grant (shortcircuit.go) hands to a client on this host.
type DiskPage struct {
	// Base is the offset of the page's first byte in the file granted:
	// 0 for a page's own data file, the slot's blocks in a pack.
	Base      int64
	Length    int64    // bytes of the page
	BlockSize int64    // the store's block size
	Present   []bool   // per block: the data file holds it
	CRCs      []uint32 // per block: CRC-32C, meaningful where Present
}

// Blocks is the number of blocks present.
func (d DiskPage) Blocks() int {
	n := 0
	for _, p := range d.Present {
		if p {
			n++
		}
	}
	return n
}

// OpenDiskPage opens page index of ref's data file (or, for a packed
// page, its pack) read-only and returns it with where the page starts in
// it, the blocks the disk tier holds and their checksums. It
// fails with an error wrapping ErrMissing when the disk tier holds no
// block of the page. The blocks listed are never rewritten with other
// bytes while the file lives (a page's blocks are written once; a dropped
// page's file is unlinked, and the open file keeps its inode), so the
// caller may read them from the file for as long as it keeps it open,
// verifying each block against its checksum (a torn or corrupted block
// fails it). The page's access stamp is updated, as a Read would.
func (s *Store) OpenDiskPage(ref FileRef, index int64) (*os.File, DiskPage, error) {
	if s.closed.Load() {
		return nil, DiskPage{}, ErrStoreClosed
	}
	id := PageID{File: ref.ID(), Index: index}
	length := s.geo.pageLen(ref.Size, index)
	notOnDisk := fmt.Errorf("page %s of %s is not on disk: %w", id, ref, ErrMissing)
	if s.disk == nil || length == 0 {
		return nil, DiskPage{}, notOnDisk
	}
	e := s.lookup(id)
	if e == nil || e.length != length {
		return nil, DiskPage{}, notOnDisk
	}
	e.mu.RLock()
	slot := e.slot
	e.mu.RUnlock()
	path := s.dataPath(id)
	if slot != nil {
		// Its pack; a pack's name is never used for another, so the
		// file opened is the slot's unless the pack was removed.
		path = slot.pack.path
	}
	// Open first, snapshot after: every block the snapshot lists was in
	// the file named path when the snapshot was taken. The file opened is
	// that one unless the page was dropped and written again in between,
	// which the inode comparison below catches.
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, DiskPage{}, notOnDisk
	}
	if err != nil {
		return nil, DiskPage{}, fmt.Errorf("open page %s: %w", id, err)
	}
	dp := DiskPage{Length: length, BlockSize: s.geo.blockSize, Present: make([]bool, e.nblocks), CRCs: make([]uint32, e.nblocks)}
	if slot != nil {
		dp.Base = slot.data
	}
	e.mu.RLock()
	if !e.dead && e.disk != nil && e.slot == slot {
		for b := range e.nblocks {
			if e.disk.has(b) {
				dp.Present[b], dp.CRCs[b] = true, e.crc[b]
			}
		}
	}
	e.mu.RUnlock()
	if dp.Blocks() == 0 || (slot == nil && !sameFile(f, path)) {
		f.Close()
		return nil, DiskPage{}, notOnDisk
	}
	e.lastUse.Store(s.tick())
	return f, dp, nil
}

// sameFile reports whether the open file f is still the file at path
// (same device and inode).
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}
