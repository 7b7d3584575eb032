//go:build linux

package router

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// readSection reads a section whole and closes it.
func readSection(t *testing.T, sec Section) []byte {
	t.Helper()
	defer sec.File.Close()
	got, err := io.ReadAll(sec.Reader())
	if err != nil {
		t.Fatal(err)
	}
	return got
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
	half := make([]byte, 2500)
	if _, err := io.ReadFull(a.Reader(), half); err != nil {
		t.Fatal(err)
	}
	if got := readSection(t, b); !bytes.Equal(got, n.data[100000:105000]) {
		t.Fatal("second section: wrong bytes")
	}
	rest := readSection(t, Section{File: a.File, Length: 2500})
	if !bytes.Equal(append(half, rest...), n.data[1000:6000]) {
		t.Fatal("first section: wrong bytes")
	}
}

// A byte flipped in a page file: no section of its block is handed out,
// and ReadAt, the caller's fallback, returns the file's bytes.
func TestSectionCorruptBlock(t *testing.T) {
	n := startSCNode(t, 3*testPageSize, 0)
	n.warm(t)
	// Page 1 whole on disk before its byte is flipped.
	n.page1OnDisk(t)
	n.corruptPage1(t)

	c := n.client(t, true)
	ctx := context.Background()
	f := openFile(t, c)
	const off, k = testPageSize + 90000, 20000 // blocks 2 and 3 of page 1
	if sec, ok := f.Section(ctx, off, k); ok {
		got := readSection(t, sec)
		t.Fatalf("a section over a corrupt block (its bytes right: %v)", bytes.Equal(got, n.data[off:off+k]))
	}
	if c.sc.corrupt.Load() == 0 {
		t.Errorf("the client found no corrupt block")
	}
	buf := make([]byte, k)
	if _, err := f.ReadAt(ctx, buf, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, n.data[off:off+k]) {
		t.Fatal("the fallback read returned wrong bytes")
	}
	// Other pages still go by sections.
	sec := sectionOf(t, f, 2*testPageSize, 1000)
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
