package cachenode

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A page's data file holds exactly what was written, whether a piece went
// to the disk directly (aligned) or through the page cache (a short last
// page's tail, a buffer that is not aligned, a hole left between pieces).
func TestPageWriterWritesAlignedAndUnalignedPieces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.page")
	data := randomBytes(7, 4<<20)
	w, err := openPageWriter(path, true)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3<<20+12345)
	pieces := []struct{ off, n int64 }{
		{0, 1 << 20},                // aligned
		{2 << 20, 1<<20 + 12345},    // aligned head, unaligned tail
		{1<<20 + 32<<10, 64 << 10},  // aligned, after a hole
		{1<<20 + 96<<10, 100 << 10}, // unaligned length
	}
	for _, p := range pieces {
		buf := data[p.off : p.off+p.n]
		if err := w.WriteAt(buf, p.off); err != nil {
			t.Fatalf("write [%d,+%d): %v", p.off, p.n, err)
		}
		copy(want[p.off:], buf)
	}
	// A buffer whose address is not aligned goes through the page cache.
	odd := append([]byte{0}, data[:8192]...)[1:]
	if err := w.WriteAt(odd, 1<<20+196<<10+4096); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20+196<<10+4096:], odd)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("data file differs from what was written (%d bytes, want %d)", len(got), len(want))
	}
}
