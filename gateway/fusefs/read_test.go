package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// TestMountLargeReads checks that a sequential reader is sent large reads:
// with max_read at 1 MiB and the readahead window widened, most of the
// bytes arrive in reads of at least 512 KiB.
func TestMountLargeReads(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	data := randomBytes(32<<20, 3)
	if err := os.WriteFile(filepath.Join(tm.lake, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tm.path("big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(bufioSized(f, 1<<20))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	var large, total, biggest int
	for _, n := range tm.ns.readSizes() {
		total += n
		if n >= 512<<10 {
			large += n
		}
		biggest = max(biggest, n)
	}
	t.Logf("%d reads, largest %d KiB, %d%% of bytes in reads >= 512 KiB", len(tm.ns.readSizes()), biggest>>10, 100*large/max(total, 1))
	if biggest < 512<<10 || large < total*3/4 {
		t.Errorf("the kernel sent small reads: largest %d KiB, %d of %d bytes in reads >= 512 KiB", biggest>>10, large, total)
	}
}

// bufioSized reads r in pieces of n bytes (io.ReadAll's own are small).
func bufioSized(r io.Reader, n int) io.Reader {
	return &sizedReader{r: r, buf: make([]byte, n)}
}

type sizedReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.pos == s.end {
		n, err := s.r.Read(s.buf)
		if n == 0 {
			return 0, err
		}
		s.pos, s.end = 0, n
	}
	k := copy(p, s.buf[s.pos:s.end])
	s.pos += k
	return k, nil
}

func TestMountConcurrentReaders(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	const files = 4
	var want [][]byte
	for i := 0; i < files; i++ {
		b := randomBytes(4<<20+i, uint64(10+i))
		os.WriteFile(filepath.Join(tm.lake, fmt.Sprintf("f%d", i)), b, 0o644)
		want = append(want, b)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := g % files
			got, err := os.ReadFile(tm.path(fmt.Sprintf("f%d", i)))
			if err != nil || !bytes.Equal(got, want[i]) {
				errs <- fmt.Errorf("reader %d of f%d: %d bytes, %v", g, i, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMountVersionChanged: a handle stays on the version it opened; when
// the lake no longer has it, its reads fail with ESTALE, and a new open
// reads the new version.
func TestMountVersionChanged(t *testing.T) {
	tm := mountLakes(t, mountOptions{ttl: 100 * time.Millisecond})
	old := randomBytes(8<<20, 4)
	lakeFile := filepath.Join(tm.lake, "v.bin")
	os.WriteFile(lakeFile, old, 0o644)
	f, err := os.Open(tm.path("v.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, 0); err != nil || !bytes.Equal(b, old[:4096]) {
		t.Fatalf("first read: %v", err)
	}
	// Replace the file in the lake (new inode, size and mtime).
	neu := randomBytes(8<<20+1, 5)
	tmp := lakeFile + ".new"
	os.WriteFile(tmp, neu, 0o644)
	if err := os.Rename(tmp, lakeFile); err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(b, 6<<20)
	wantErrno(t, "read of a changed file through an old handle", err, syscall.ESTALE)

	eventually(t, 5*time.Second, func() error {
		got, err := os.ReadFile(tm.path("v.bin"))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, neu) {
			return fmt.Errorf("a new open read %d bytes, not the new version", len(got))
		}
		return nil
	})
}

// TestMountPageCacheKeptPerVersion: a file opened again at the same
// version is read from the kernel's page cache (no read reaches the
// namespace); once the lake holds another version and the TTL has
// passed, a new open reads the new bytes, not the pages of the old one.
// The new version has the old one's size and mtime (only the inode
// differs), so the kernel's own attribute checks would keep the old
// pages: only the missing FOPEN_KEEP_CACHE drops them.
func TestMountPageCacheKeptPerVersion(t *testing.T) {
	const ttl = 100 * time.Millisecond
	tm := mountLakes(t, mountOptions{ttl: ttl})
	old := randomBytes(4<<20, 6)
	lakeFile := filepath.Join(tm.lake, "k.bin")
	if err := os.WriteFile(lakeFile, old, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(lakeFile)
	if err != nil {
		t.Fatal(err)
	}
	readAll := func(what string) []byte {
		t.Helper()
		got, err := os.ReadFile(tm.path("k.bin"))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return got
	}
	if got := readAll("first read"); !bytes.Equal(got, old) {
		t.Fatalf("first read: %d bytes, not the file", len(got))
	}
	time.Sleep(2 * ttl) // the kernel asks again, the version is unchanged
	before := len(tm.ns.readSizes())
	if got := readAll("second read"); !bytes.Equal(got, old) {
		t.Fatalf("second read: %d bytes, not the file", len(got))
	}
	// The kernel may drop a clean page now and then on its own (seen
	// here: one to three 4 KiB pages of the 4 MiB, with no memory
	// pressure), and reads those again; an open that drops the cache
	// reads the whole file again.
	reread := 0
	for _, n := range tm.ns.readSizes()[before:] {
		reread += n
	}
	if reread > len(old)/16 {
		t.Errorf("a second open of an unchanged version read %d of the file's %d bytes from the namespace again, want at most a few pages (page cache not kept)", reread, len(old))
	}

	// Replace the file with another of the same size and mtime: a new
	// inode, so a new version.
	neu := randomBytes(len(old), 7)
	tmp := lakeFile + ".new"
	if err := os.WriteFile(tmp, neu, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, lakeFile); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl) // past the kernel's and the mount's TTL
	if got := readAll("read after the change"); !bytes.Equal(got, neu) {
		what := "neither version"
		if bytes.Equal(got, old) {
			what = "the old version's cached pages"
		}
		t.Fatalf("an open after the file changed in the lake (same size and mtime) read %s", what)
	}
}

// TestMountOpenWithinTTL: reading a file whose entry the kernel holds
// within its TTL (open, fstat, which follows a read that made the atime
// stale, read, close) asks the namespace nothing, however long ago the
// entry was fetched; an open for writing asks again.
func TestMountOpenWithinTTL(t *testing.T) {
	tm := mountLakes(t, mountOptions{ttl: time.Minute})
	data := randomBytes(100<<10, 8)
	if err := os.WriteFile(filepath.Join(tm.lake, "small.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(tm.path("small.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	time.Sleep(freshFor + 100*time.Millisecond) // past the moment an entry is fresh for
	before := tm.ns.stats.Load()
	for i := 0; i < 10; i++ {
		if got, err := os.ReadFile(tm.path("small.bin")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d: %d bytes, %v", i, len(got), err)
		}
	}
	if n := tm.ns.stats.Load() - before; n != 0 {
		t.Errorf("10 opens for reading within the TTL made %d Stat calls, want 0", n)
	}
	f, err := os.OpenFile(tm.path("small.bin"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := tm.ns.stats.Load() - before; n != 1 {
		t.Errorf("an open for writing made %d Stat calls, want 1", n)
	}
}

func TestErrnoMapping(t *testing.T) {
	remote := func(err error) error { return cachenode.FromStatus(cachenode.ToStatus(err)) }
	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("stat /lake/a/x: %w", ufs.ErrNotFound), syscall.ENOENT},
		{remote(fmt.Errorf("stat: %w", ufs.ErrNotFound)), syscall.ENOENT},
		{remote(ufs.ErrNotDir), syscall.ENOTDIR},
		{remote(ufs.ErrIsDir), syscall.EISDIR},
		{remote(ufs.ErrNotEmpty), syscall.ENOTEMPTY},
		{remote(ufs.ErrInvalidPath), syscall.EINVAL},
		{remote(ufs.ErrVersionChanged), syscall.ESTALE},
		{remote(cachenode.ErrReadOnly), syscall.EROFS},
		{remote(cachenode.ErrResidency), syscall.EACCES},
		{remote(cachenode.ErrNoMount), syscall.EROFS},
		{fmt.Errorf("%w: all 3 members failed", router.ErrNoNode), syscall.EIO},
		{remote(cachenode.ErrLineDown), syscall.EIO},
		{fmt.Errorf("put: %w", context.DeadlineExceeded), syscall.ETIMEDOUT},
		{errors.New("something else"), syscall.EIO},
	}
	for _, c := range cases {
		if got := Errno(c.err); got != c.want {
			t.Errorf("Errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
