package router

import (
	"fmt"
	"os"
	"runtime/debug"
	"syscall"

	"github.com/lakemesh/lakemesh/cachenode"
)

// reopen opens the file that file is a descriptor of again, through
// /proc/self/fd (which works for an unlinked file too): a new open file
// description, with an offset of its own (a dup would share the grant's,
// and sendfile moves it) and a life of its own (the grant's descriptor
// may be closed by the LRU while the caller sends).
func reopen(file *os.File) (*os.File, error) {
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var own *os.File
	var oerr error
	// Control holds the descriptor open, so its number names the grant's
	// file for the whole call.
	err = rc.Control(func(fd uintptr) {
		own, oerr = os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	})
	if err != nil {
		return nil, err
	}
	return own, oerr
}

// verifyMapped checks, from a read-only mapping, the checksum of every
// block of a page's data file that bytes [off, end) of the page touch.
// Only those blocks are mapped (the grant says they are on disk, so fully
// written), after fstat says the file holds them all; the mapping is
// gone when it returns. A fault in the mapping all the same (a file
// shortened behind the store's back) is an error, not a crash.
func verifyMapped(file *os.File, dp cachenode.DiskPage, off, end int64) (err error) {
	bs := dp.BlockSize
	first := off / bs
	mapEnd := min((end+bs-1)/bs*bs, dp.Length) // end of the last block touched
	pageSize := int64(os.Getpagesize())
	mapAt := first * bs / pageSize * pageSize
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var mem []byte
	var merr error
	err = rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if merr = syscall.Fstat(int(fd), &st); merr != nil {
			return
		}
		if st.Size < mapEnd {
			merr = fmt.Errorf("page file holds %d bytes, the grant's blocks end at %d", st.Size, mapEnd)
			return
		}
		// MAP_POPULATE maps every page at once: no fault per page.
		mem, merr = syscall.Mmap(int(fd), mapAt, int(mapEnd-mapAt), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	})
	if err == nil {
		err = merr
	}
	if err != nil {
		return fmt.Errorf("map page file: %w", err)
	}
	defer syscall.Munmap(mem)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("page file mapping faulted: %v", r)
		}
	}()
	for b := first; b*bs < mapEnd; b++ {
		lo := b*bs - mapAt
		hi := min(b*bs+bs, dp.Length) - mapAt
		if cachenode.BlockCRC(mem[lo:hi]) != dp.CRCs[b] {
			return fmt.Errorf("block %d: %w", b, errBlockCRC)
		}
	}
	return nil
}
