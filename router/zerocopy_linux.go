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

// verify checks, from a read-only mapping of the page's data file (or of
// its slot in a pack), the
// checksum of every block that bytes [off, end) of the page touch and,
// when they pass and use is not nil, passes use those bytes from the
// mapping (still mapped for the call). A page whose blocks are all on
// disk is mapped whole, once per grant (pageMaps); another page has just
// the blocks the range touches mapped, which the grant says are on disk,
// so fully written, and unmapped after. An error of use is returned as
// it is.
func (sc *shortCircuit) verify(key scKey, grant, own *os.File, dp cachenode.DiskPage, off, end int64, use func([]byte) error) error {
	if dp.Blocks() == len(dp.Present) {
		p, err := sc.maps.acquire(key, grant, own, dp.Base, dp.Length)
		if err != nil {
			return err
		}
		defer sc.maps.release(p)
		if err := verifyBlocks(p.mem, 0, dp, off, end); err != nil || use == nil {
			return err
		}
		return useMapped(p.mem[off:end], use)
	}
	bs := dp.BlockSize
	mapEnd := min((end+bs-1)/bs*bs, dp.Length) // end of the last block touched
	pageSize := int64(os.Getpagesize())
	mapAt := off / bs * bs / pageSize * pageSize // dp.Base is a multiple of pageSize too
	mem, err := mapFile(own, dp.Base+mapAt, dp.Base+mapEnd)
	if err != nil {
		return err
	}
	defer syscall.Munmap(mem)
	if err := verifyBlocks(mem, mapAt, dp, off, end); err != nil || use == nil {
		return err
	}
	return useMapped(mem[off-mapAt:end-mapAt], use)
}

// useMapped calls use with b, bytes of a mapping. A fault reading them
// all the same (a file shortened behind the store's back) is an error,
// not a crash; what use had done with the bytes before it is unknown, so
// the caller treats it as use's own failure (a reply cut short).
func useMapped(b []byte, use func([]byte) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("page file mapping faulted while its bytes were sent: %v", r)
		}
	}()
	return use(b)
}

// verifyBlocks checks the checksum of every block that bytes [off, end)
// of a page touch, in mem, a mapping of the page's data file from file
// offset memAt. A fault in the mapping all the same (a file shortened
// behind the store's back) is an error, not a crash.
func verifyBlocks(mem []byte, memAt int64, dp cachenode.DiskPage, off, end int64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("page file mapping faulted: %v", r)
		}
	}()
	bs := dp.BlockSize
	for b := off / bs; b*bs < end; b++ {
		lo := b*bs - memAt
		hi := min(b*bs+bs, dp.Length) - memAt
		if cachenode.ColdBlockCRC(mem[lo:hi]) != dp.CRCs[b] {
			return fmt.Errorf("block %d: %w", b, errBlockCRC)
		}
	}
	return nil
}
