//go:build linux

package cachenode

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The short-circuit socket hands out a read-only descriptor of a page's
// data file with exactly the blocks the disk tier holds and their
// checksums, says "not on disk" for pages it does not hold, and refuses
// another page size.
func TestShortCircuitGrantsDiskBlocks(t *testing.T) {
	const pageSize, blockSize = 256 << 10, 64 << 10
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, MemoryBytes: 16 << 20, PageSize: pageSize, BlockSize: blockSize})
	data := randomBytes(3, 2*pageSize+1000)
	ref := FileRef{Mount: "/lake/test", Path: "d/f", Version: "v1", Size: int64(len(data))}
	// Page 0: blocks 1 and 2; page 2 (1000 bytes): whole; page 1: none.
	if err := s.Put(ref, 0, blockSize, data[blockSize:3*blockSize]); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ref, 2, 0, data[2*pageSize:]); err != nil {
		t.Fatal(err)
	}

	dir, err := os.MkdirTemp("", "lmsc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := ShortCircuitSocket(filepath.Join(dir, "node.sock"))
	if filepath.Base(sock) != "node.fd.sock" {
		t.Fatalf("short-circuit socket of node.sock is %s", sock)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewShortCircuitServer(ShortCircuitConfig{Lakes: NewLakes([]Lake{{Path: "/lake/test"}}), Store: s})
	go srv.Serve(lis)
	defer srv.Close()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := nc.(*net.UnixConn)
	ask := func(page, ps int64) (*os.File, DiskPage, error) {
		return OpenShortCircuit(c, ShortCircuitRequest{Path: "/lake/test/d/f", Version: "v1", Size: ref.Size, PageSize: ps, Page: page}, time.Now().Add(5*time.Second))
	}

	f, dp, err := ask(0, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, false}; dp.Length != pageSize || dp.BlockSize != blockSize || len(dp.Present) != 4 ||
		dp.Present[0] != want[0] || dp.Present[1] != want[1] || dp.Present[2] != want[2] || dp.Present[3] != want[3] {
		t.Fatalf("grant of page 0: %+v", dp)
	}
	blk := make([]byte, blockSize)
	for b := 1; b <= 2; b++ {
		if _, err := f.ReadAt(blk, int64(b)*blockSize); err != nil {
			t.Fatal(err)
		}
		if BlockCRC(blk) != dp.CRCs[b] || string(blk) != string(data[b*blockSize:(b+1)*blockSize]) {
			t.Fatalf("block %d read through the descriptor does not match", b)
		}
	}
	if _, err := f.WriteAt([]byte{1}, blockSize); err == nil {
		t.Fatal("the descriptor handed out is writable")
	}
	f.Close()

	f, dp, err = ask(2, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if dp.Length != 1000 || len(dp.Present) != 1 || !dp.Present[0] {
		t.Fatalf("grant of the short last page: %+v", dp)
	}
	f.Close()

	if _, _, err := ask(1, pageSize); !errors.Is(err, ErrMissing) {
		t.Fatalf("page not on disk: %v; want ErrMissing", err)
	}
	if _, _, err := ask(0, 2*pageSize); !errors.Is(err, errShortCircuitRefused) {
		t.Fatalf("another page size: %v; want a refusal", err)
	}
	if st := srv.Stats(); st.Grants != 2 || st.NotOnDisk != 1 || st.Errors != 1 {
		t.Fatalf("server stats %+v; want 2 grants, 1 not on disk, 1 error", st)
	}
}
