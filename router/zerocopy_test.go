//go:build linux

package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// readSection sends a section whole into a buffer and closes it.
func readSection(t *testing.T, sec Section) []byte {
	t.Helper()
	defer sec.File.Close()
	return sendSection(t, sec)
}

// sendSection sends a section whole into a buffer.
func sendSection(t *testing.T, sec Section) []byte {
	t.Helper()
	var got bytes.Buffer
	n, err := sec.Send(&got)
	if err != nil {
		t.Fatal(err)
	}
	if n != sec.Length || int64(got.Len()) != n {
		t.Fatalf("sent %d bytes (%d in the buffer) of a section of %d", n, got.Len(), sec.Length)
	}
	return got.Bytes()
}

// sectionOf returns the section of [off, off+n) of f, waiting for the
// node to have the page's blocks on its disk tier (it writes them after
// the read that filled the page answered).
func sectionOf(t *testing.T, f *File, off, n int64) Section {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if sec, ok := f.Section(context.Background(), off, n); ok {
			return sec
		}
		if time.Now().After(deadline) {
			t.Fatalf("no section for [%d, %d) after 10s", off, off+n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sections of warm pages hand out the file's bytes: whole pages, ranges
// across block boundaries, the last short page; a range across pages is
// not one.
func TestSectionServesVerifiedRanges(t *testing.T) {
	const ps = testPageSize
	const bs = 32 << 10
	n := startSCNode(t, 3*ps+100<<10+7, 0)
	n.warm(t)
	c := n.client(t, true)
	ctx := context.Background()
	f := openFile(t, c)
	size := int64(len(n.data))
	ranges := []struct{ off, n int64 }{
		{0, ps},                   // a whole page
		{bs - 1, 2},               // across a block boundary
		{ps + 5, 3*bs + 11},       // inside a page, partial blocks both ends
		{2*ps - 10, 10},           // a page's last bytes
		{3 * ps, size - 3*ps},     // the last, short page whole
		{size - 9, 9},             // its last, partial block
		{3*ps + bs + 1, bs - 2},   // inside one block of it
		{ps + 2*bs, 2 * bs},       // whole blocks
		{2*ps + 100, ps - 100},    // to a page's end
		{3*ps + bs - 3, 2*bs + 6}, // the short page, across blocks
	}
	for _, r := range ranges {
		sec := sectionOf(t, f, r.off, r.n)
		if sec.Length != r.n {
			t.Fatalf("section of [%d, %d) is %d bytes", r.off, r.off+r.n, sec.Length)
		}
		if got := readSection(t, sec); !bytes.Equal(got, n.data[r.off:r.off+r.n]) {
			t.Fatalf("section [%d, %d): %d bytes that differ from the file's", r.off, r.off+r.n, len(got))
		}
	}
	if got := c.sc.sections.Load(); got != int64(len(ranges)) {
		t.Errorf("%d sections counted; want %d", got, len(ranges))
	}
	for _, r := range []struct{ off, n int64 }{{ps - 1, 2}, {size - 1, 2}, {-1, 5}, {0, 0}} {
		if sec, ok := f.Section(ctx, r.off, r.n); ok {
			sec.File.Close()
			t.Errorf("a section for [%d, %d), which is not inside one page", r.off, r.off+r.n)
		}
	}
}

// A section has a descriptor of its own: it reads its bytes after the
// client closed every grant, and from its own offset while another
// section of the same page is read.
func TestSectionOutlivesItsGrant(t *testing.T) {
	n := startSCNode(t, 2*testPageSize, 0)
	n.warm(t)
	c := n.client(t, true)
	f := openFile(t, c)
	a := sectionOf(t, f, 1000, 5000)
	b := sectionOf(t, f, 100000, 5000)
	c.sc.close()
	first := a
	first.Length = 2500
	half := sendSection(t, first)
	if got := readSection(t, b); !bytes.Equal(got, n.data[100000:105000]) {
		t.Fatal("second section: wrong bytes")
	}
	second := a
	second.Length, second.at = 2500, a.at+2500
	second.check = func(from, k int64) error { return a.check(2500+from, k) }
	rest := readSection(t, second)
	if !bytes.Equal(append(half, rest...), n.data[1000:6000]) {
		t.Fatal("first section: wrong bytes")
	}
}

// A byte flipped in a page file: a section over its block sends the
// pieces before it and stops at the piece that holds it, before any of
// its bytes go, and ReadAt, the caller's fallback for the rest, returns
// the file's bytes.
func TestSectionCorruptBlock(t *testing.T) {
	n := startSCNode(t, 3*testPageSize, 0)
	n.warm(t)
	// Page 1 whole on disk before its byte is flipped.
	n.page1OnDisk(t)
	n.corruptPage1(t)
	defer func(p int64) { sectionPiece = p }(sectionPiece)
	sectionPiece = 32 << 10 // a block a piece

	c := n.client(t, true)
	ctx := context.Background()
	f := openFile(t, c)
	const off, k = testPageSize + 90000, 20000 // blocks 2 and 3 of page 1; byte 100000 flipped
	sec, ok := f.Section(ctx, off, k)
	if !ok {
		t.Fatal("no section of page 1")
	}
	var got bytes.Buffer
	sent, err := sec.Send(&got)
	sec.File.Close()
	if !errors.Is(err, ErrSectionCheck) {
		t.Fatalf("sending a section over a corrupt block: %v; want ErrSectionCheck", err)
	}
	const good = 3*32<<10 - 90000 // the piece before block 3
	if sent != good || !bytes.Equal(got.Bytes(), n.data[off:off+good]) {
		t.Fatalf("sent %d bytes before the corrupt block (%d in the buffer, right: %v); want the %d of block 2",
			sent, got.Len(), bytes.Equal(got.Bytes(), n.data[off:off+int64(got.Len())]), good)
	}
	if c.sc.corrupt.Load() == 0 {
		t.Errorf("the client found no corrupt block")
	}
	buf := make([]byte, k-good)
	if _, err := f.ReadAt(ctx, buf, off+good); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, n.data[off+good:off+k]) {
		t.Fatal("the fallback read returned wrong bytes")
	}
	// Other pages still go by sections.
	sec = sectionOf(t, f, 2*testPageSize, 1000)
	if got := readSection(t, sec); !bytes.Equal(got, n.data[2*testPageSize:2*testPageSize+1000]) {
		t.Fatal("wrong bytes")
	}
}

// Sections of a page whose blocks are all on disk are verified from one
// mapping of it per grant, which no verifier holds between sections and
// which the client's close unmaps.
func TestSectionMapsAPageOnce(t *testing.T) {
	n := startSCNode(t, 2*testPageSize, 0)
	n.warm(t)
	// Page 1 whole on disk before this test's client asks for it.
	n.page1OnDisk(t)
	c := n.client(t, true)
	f := openFile(t, c)
	for i := range int64(4) {
		off := testPageSize + i*70000
		if got := readSection(t, sectionOf(t, f, off, 5000)); !bytes.Equal(got, n.data[off:off+5000]) {
			t.Fatalf("section at %d: wrong bytes", off)
		}
	}
	pm := c.sc.maps
	pm.mu.Lock()
	var maps []*pageMap
	for _, el := range pm.maps {
		maps = append(maps, el.Value.(*pageMap))
	}
	pm.mu.Unlock()
	if len(maps) != 1 || maps[0].refs != 0 || int64(len(maps[0].mem)) != testPageSize {
		t.Fatalf("%d mappings after sections of one page; want one of the whole page, unused", len(maps))
	}
	c.sc.close()
	if len(pm.maps) != 0 || !maps[0].gone {
		t.Fatal("a mapping left after close")
	}
}

// page1OnDisk has page 1 of /lake/a/f whole on the node's disk, through a
// client of its own.
func (n *scNode) page1OnDisk(t *testing.T) {
	t.Helper()
	f := openFile(t, n.client(t, true))
	sectionOf(t, f, testPageSize, testPageSize).File.Close()
}

// openFile opens the scNode's file through c.
func openFile(t *testing.T, c *Client) *File {
	t.Helper()
	f, err := c.Open(context.Background(), "/lake/a/f")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Send checks a section a piece at a time, each piece just before it
// goes, pieces ending at multiples of sectionPiece from the page's start,
// and stops before a piece that fails.
func TestSectionSendChecksEachPieceBeforeItGoes(t *testing.T) {
	defer func(p int64) { sectionPiece = p }(sectionPiece)
	sectionPiece = 16 << 10
	data, path := pageFile(t)
	const at, n = 5000, 60000 // the section's place in its page
	for _, failAt := range []int64{-1, 40000} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Seek(at, io.SeekStart)
		var out bytes.Buffer
		var pieces [][2]int64
		sec := Section{File: f, Length: n, at: at, check: func(from, k int64) error {
			if int64(out.Len()) != from {
				t.Errorf("piece at %d checked with %d bytes sent", from, out.Len())
			}
			pieces = append(pieces, [2]int64{at + from, at + from + k})
			if failAt >= from && failAt < from+k {
				return errors.New("bad block")
			}
			return nil
		}}
		sent, err := sec.Send(&out)
		f.Close()
		want := [][2]int64{{5000, 16384}, {16384, 32768}, {32768, 49152}, {49152, 65000}}
		wantSent := int64(n)
		if failAt >= 0 {
			want, wantSent = want[:3], 32768-at
			if !errors.Is(err, ErrSectionCheck) {
				t.Errorf("Send over a piece that fails its check: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(pieces) != fmt.Sprint(want) {
			t.Errorf("pieces checked (page offsets) %v; want %v", pieces, want)
		}
		if sent != wantSent || !bytes.Equal(out.Bytes(), data[at:at+wantSent]) {
			t.Errorf("sent %d bytes (right: %v); want %d", sent, bytes.Equal(out.Bytes(), data[at:at+int64(out.Len())]), wantSent)
		}
	}
}

// failingWriter takes limit bytes, then fails.
type failingWriter struct {
	bytes.Buffer
	limit int
}

var errWriterFailed = errors.New("the writer failed")

func (w *failingWriter) Write(p []byte) (int, error) {
	if room := w.limit - w.Len(); len(p) > room {
		w.Buffer.Write(p[:room])
		return room, errWriterFailed
	}
	return w.Buffer.Write(p)
}

// Write sends a section's bytes from the mapping its check read them in:
// the right bytes from a page whole on disk and from a page with only
// some blocks there, a piece at a time; the piece with a corrupt block
// and those after it are not written; a writer's own failure is its
// error, not taken for a corrupt block.
func TestSectionWriteFromMapping(t *testing.T) {
	const bs = 32 << 10
	defer func(p int64) { sectionPiece = p }(sectionPiece)
	sectionPiece = bs // a block a piece
	n := startSCNode(t, 3*testPageSize, 0)
	ctx := context.Background()

	// Page 2 with one block on disk: a random read of 4 KiB fills the
	// block it touches.
	c := n.client(t, true)
	f := openFile(t, c)
	const blockOff = 2*testPageSize + 3*bs
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(ctx, buf, blockOff+100); err != nil {
		t.Fatal(err)
	}
	sec := sectionOf(t, f, blockOff+100, 4096)
	var got bytes.Buffer
	if _, err := sec.Write(&got); err != nil {
		t.Fatal(err)
	}
	sec.File.Close()
	if !bytes.Equal(got.Bytes(), n.data[blockOff+100:blockOff+100+4096]) {
		t.Fatal("section of a page partly on disk: wrong bytes")
	}
	if len(c.sc.maps.maps) != 0 {
		t.Fatal("a page partly on disk was mapped whole")
	}

	n.warm(t)
	n.page1OnDisk(t)
	for _, r := range []struct{ off, n int64 }{
		{0, testPageSize},
		{testPageSize + 5, 3*bs + 11},
		{2*testPageSize + bs - 1, 2},
	} {
		sec := sectionOf(t, f, r.off, r.n)
		var got bytes.Buffer
		sent, err := sec.Write(&got)
		sec.File.Close()
		if err != nil || sent != r.n || !bytes.Equal(got.Bytes(), n.data[r.off:r.off+r.n]) {
			t.Fatalf("section [%d, %d): wrote %d bytes, %v; right bytes: %v", r.off, r.off+r.n, sent, err, bytes.Equal(got.Bytes(), n.data[r.off:r.off+int64(got.Len())]))
		}
	}

	// A writer that fails in the second piece.
	sec = sectionOf(t, f, testPageSize, 3*bs)
	w := &failingWriter{limit: bs + 10}
	sent, err := sec.Write(w)
	sec.File.Close()
	if !errors.Is(err, errWriterFailed) || errors.Is(err, ErrSectionCheck) || sent != bs+10 {
		t.Fatalf("Write to a writer that failed after %d bytes: %d sent, %v", bs+10, sent, err)
	}
	if c.sc.corrupt.Load() != 0 {
		t.Fatal("a writer's failure counted as a corrupt block")
	}

	// Byte 100000 of page 1 (block 3) flipped: blocks 1 and 2 go, not 3.
	n.corruptPage1(t)
	sec = sectionOf(t, f, testPageSize+bs, 3*bs)
	got.Reset()
	sent, err = sec.Write(&got)
	sec.File.Close()
	if !errors.Is(err, ErrSectionCheck) {
		t.Fatalf("writing a section over a corrupt block: %v; want ErrSectionCheck", err)
	}
	if sent != 2*bs || !bytes.Equal(got.Bytes(), n.data[testPageSize+bs:testPageSize+3*bs]) {
		t.Fatalf("wrote %d bytes before the corrupt block; want the %d of blocks 1 and 2", sent, 2*bs)
	}
	if c.sc.corrupt.Load() == 0 {
		t.Error("the client found no corrupt block")
	}
}

// A section of other bytes (NewSection) writes each piece after its
// check, read from its file, and stops before a piece that fails.
func TestNewSectionWrite(t *testing.T) {
	defer func(p int64) { sectionPiece = p }(sectionPiece)
	sectionPiece = 16 << 10
	data, path := pageFile(t)
	for _, failAt := range []int64{-1, 40000} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Seek(5000, io.SeekStart)
		var out bytes.Buffer
		sec := NewSection(f, 60000, func(from, k int64) error {
			if int64(out.Len()) != from {
				t.Errorf("piece at %d checked with %d bytes written", from, out.Len())
			}
			if failAt >= from && failAt < from+k {
				return errors.New("bad block")
			}
			return nil
		})
		sent, err := sec.Write(&out)
		f.Close()
		want := int64(60000)
		if failAt >= 0 {
			want = 32 << 10 // two pieces of 16 KiB: byte 40000 is in the third
			if !errors.Is(err, ErrSectionCheck) {
				t.Errorf("Write over a piece that fails its check: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if sent != want || !bytes.Equal(out.Bytes(), data[5000:5000+want]) {
			t.Errorf("wrote %d bytes (right: %v); want %d", sent, bytes.Equal(out.Bytes(), data[5000:5000+int64(out.Len())]), want)
		}
	}
}

// pageFile writes 100 KiB of patterned bytes to a file and returns them
// and its path.
func pageFile(t *testing.T) ([]byte, string) {
	t.Helper()
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "page")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data, path
}
