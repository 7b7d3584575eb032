package ufstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

func testReadRange(t *testing.T, fs ufs.FS) {
	data := content(1000, 1)
	fi := create(t, fs, "r", data)
	cases := []struct {
		name   string
		off, n int64
		want   []byte
	}{
		{"start", 0, 10, data[:10]},
		{"middle", 100, 50, data[100:150]},
		{"end", 990, 10, data[990:]},
		{"whole", 0, 1000, data},
		{"one byte", 999, 1, data[999:]},
		{"beyond EOF returns the tail", 995, 100, data[995:]},
		{"huge n returns the tail", 900, 1 << 62, data[900:]},
		{"at EOF", 1000, 10, nil},
		{"past EOF", 5000, 10, nil},
		{"zero length", 10, 0, nil},
	}
	for _, tc := range cases {
		for _, version := range []string{"", fi.Version} {
			got := read(t, fs, "r", version, tc.off, tc.n)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("%s: read [%d,+%d) version %q = %s, want %s", tc.name, tc.off, tc.n, version, describe(got), describe(tc.want))
			}
		}
	}
	if _, err := fs.ReadRange(t.Context(), "r", "", -1, 10); err == nil {
		t.Errorf("read at offset -1 succeeded")
	}
}

func testReadRangeEmptyFile(t *testing.T, fs ufs.FS) {
	fi := create(t, fs, "empty", nil)
	if got := read(t, fs, "empty", fi.Version, 0, 10); len(got) != 0 {
		t.Fatalf("read of empty file = %s", describe(got))
	}
}

func testReadRangeErrors(t *testing.T, fs ufs.FS) {
	_, err := fs.ReadRange(t.Context(), "missing", "", 0, 10)
	wantErr(t, "read missing", err, ufs.ErrNotFound)
	// A zero-length read still needs the file.
	_, err = readErr(t.Context(), fs, "missing", "", 0, 0)
	wantErr(t, "zero-length read of missing", err, ufs.ErrNotFound)
	create(t, fs, "dir/f", []byte("x"))
	_, err = fs.ReadRange(t.Context(), "dir", "", 0, 10)
	wantErr(t, "read a directory", err, ufs.ErrIsDir, ufs.ErrNotFound)
}

// testLargeFile writes a file larger than one upload part on S3 from a
// stream of unknown size, then reads it back whole, in pieces, and in
// parallel, as cache nodes do.
func testLargeFile(t *testing.T, fs ufs.FS) {
	data := content(5<<20+4321, 2)
	want := sha256.Sum256(data)
	fi, err := fs.Create(t.Context(), "big/blob", streamOnly{bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("create big/blob: %v", err)
	}
	if fi.Size != int64(len(data)) {
		t.Fatalf("create reported %d bytes, wrote %d", fi.Size, len(data))
	}
	if st := stat(t, fs, "big/blob"); st.Size != int64(len(data)) || st.Version != fi.Version {
		t.Fatalf("stat = %+v, create said %+v", st, fi)
	}
	whole := read(t, fs, "big/blob", fi.Version, 0, int64(len(data)))
	if got := sha256.Sum256(whole); got != want {
		t.Fatalf("whole read: sha256 %x, want %x (%d bytes read)", got, want, len(whole))
	}
	h := sha256.New()
	const piece = 1 << 20
	for off := int64(0); off < int64(len(data)); off += piece {
		h.Write(read(t, fs, "big/blob", fi.Version, off, piece))
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("read in 1 MiB pieces: sha256 %x, want %x", got, want)
	}

	// Many ranges at once, at unaligned offsets.
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			off := r.Int64N(int64(len(data)))
			n := r.Int64N(256 << 10)
			got, err := readErr(t.Context(), fs, "big/blob", fi.Version, off, n)
			if err != nil {
				errs <- err.Error()
				return
			}
			if !bytes.Equal(got, data[off:min(off+n, int64(len(data)))]) {
				errs <- "parallel range read returned wrong bytes"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// testStaleVersion is the reason a read names its version: a cache must
// never mix pages of two versions of a file.
func testStaleVersion(t *testing.T, fs ufs.FS) {
	// Same size on purpose: a version made of mtime and size alone would not
	// see this change when both writes fall in one clock tick.
	old := create(t, fs, "s", []byte("version one"))
	oldStat := stat(t, fs, "s")
	if oldStat.Version != old.Version {
		t.Fatalf("stat version %q, create said %q", oldStat.Version, old.Version)
	}
	cur := create(t, fs, "s", []byte("version two"))
	if cur.Version == old.Version {
		t.Fatalf("two contents share version %q", cur.Version)
	}
	if st := stat(t, fs, "s"); st.Version != cur.Version {
		t.Fatalf("stat version %q after recreate, want %q", st.Version, cur.Version)
	}
	_, err := readErr(t.Context(), fs, "s", old.Version, 0, 5)
	wantErr(t, "read with a stale version", err, ufs.ErrVersionChanged)
	_, err = readErr(t.Context(), fs, "s", old.Version, 0, 0)
	wantErr(t, "zero-length read with a stale version", err, ufs.ErrVersionChanged)
	_, err = readErr(t.Context(), fs, "s", old.Version, 100, 5)
	wantErr(t, "read past EOF with a stale version", err, ufs.ErrVersionChanged)
	if got := read(t, fs, "s", cur.Version, 0, 100); string(got) != "version two" {
		t.Fatalf("read current version = %q", got)
	}
}

func testCancelMidRead(t *testing.T, fs ufs.FS) {
	data := content(8<<20, 3)
	create(t, fs, "c", data)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rc, err := fs.ReadRange(ctx, "c", "", 0, int64(len(data)))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 64<<10)); err != nil {
		t.Fatalf("read first 64 KiB: %v", err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Fatalf("reading on after cancel returned the remaining %d bytes without error", n)
	}
}
