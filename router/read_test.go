package router

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
)

const (
	testPageSize  = 4 << 20
	smallFileSize = 100 << 10
)

// smallFiles returns n files of smallFileSize pseudo-random bytes.
func smallFiles(n int) map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for i := range n {
		data := make([]byte, smallFileSize)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		files[fmt.Sprintf("small/%04d", i)] = data
	}
	return files
}

// readFile opens p and reads it whole with reads of bufSize bytes (from
// a buffer the caller keeps, as a FUSE mount or io.Copy does).
func readFile(ctx context.Context, c *Client, p string, buf []byte, into io.Writer) error {
	f, err := c.Open(ctx, p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(struct{ io.Writer }{into}, f.Reader(ctx), buf)
	return err
}

// Reading a small file allocates about the file's bytes, never a whole
// page: a 100 KiB file read through 4 MiB pages used to cost a zeroed
// 4 MiB page buffer per open file, most of the CPU of a small-file
// workload.
func TestSmallFileReadAllocatesNoPage(t *testing.T) {
	const n = 40
	files := smallFiles(n)
	c := startTestRegion(t, 3, testPageSize, files).client(t)
	ctx := context.Background()
	for _, bufSize := range []int{1 << 20, 128 << 10, 8 << 10} {
		t.Run(fmt.Sprintf("reads of %d KiB", bufSize>>10), func(t *testing.T) {
			buf := make([]byte, bufSize)
			for name, want := range files { // warm the nodes and check the bytes
				var got bytes.Buffer
				if err := readFile(ctx, c, "/lake/a/"+name, buf, &got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("%s: read %d bytes that differ from the file's %d", name, got.Len(), len(want))
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for name := range files {
				if err := readFile(ctx, c, "/lake/a/"+name, buf, io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			// The nodes run in this process: their allocations count too.
			perFile := (after.TotalAlloc - before.TotalAlloc) / n
			t.Logf("%d bytes allocated per %d-byte file (client and nodes)", perFile, smallFileSize)
			if raceEnabled {
				return // the bytes were checked; the race detector's allocations are not the read's
			}
			if perFile >= testPageSize/2 {
				t.Errorf("reading a %d-byte file allocated %d bytes: a whole %d-byte page per file", smallFileSize, perFile, testPageSize)
			}
		})
	}
}

// BenchmarkSmallFiles opens and reads warm 100 KiB files through three
// in-process nodes, as a FUSE mount (1 MiB reads) or io.Copy (32 KiB
// reads) does; one op is one file.
//
//	go test ./router -run '^$' -bench SmallFiles -benchmem
func BenchmarkSmallFiles(b *testing.B) {
	const n = 200
	files := smallFiles(n)
	var names []string
	for name := range files {
		names = append(names, "/lake/a/"+name)
	}
	c := startTestRegion(b, 3, testPageSize, files).client(b)
	ctx := context.Background()
	for _, bufSize := range []int{1 << 20, 32 << 10} {
		b.Run(fmt.Sprintf("reads=%dKiB", bufSize>>10), func(b *testing.B) {
			buf := make([]byte, bufSize)
			for _, p := range names {
				if err := readFile(ctx, c, p, buf, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(smallFileSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := readFile(ctx, c, names[i%n], buf, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}

// A small sequential read that ends at the file's limit is read as it is,
// not through a whole buffered page: a ranged S3 GET whose range ends
// inside a page fetches the bytes of its range, not the rest of the page.
// A read that stops short of the limit still buffers its page, for the
// reads that follow it.
func TestReadAtLimitBuffersNoPage(t *testing.T) {
	const pageSize = 1 << 20
	data := make([]byte, 3*pageSize)
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	c := startTestRegion(t, 2, pageSize, map[string][]byte{"big": data}).client(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		off, n    int64
		limit     int64
		buffering bool
	}{
		{"ends at the limit", 0, 100 << 10, 100 << 10, false},
		{"ends past a page start at the limit", pageSize - 10, 20, pageSize + 10, false},
		{"stops short of the limit", 0, 100 << 10, 3 * pageSize, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := c.Open(ctx, "/lake/a/big")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Limit(tc.limit)
			f.lastEnd = tc.off // the read continues a sequence
			p := make([]byte, tc.n)
			if n, err := f.ReadAt(ctx, p, tc.off); err != nil || int64(n) != tc.n {
				t.Fatalf("read %d bytes at %d: %d, %v", tc.n, tc.off, n, err)
			}
			if !bytes.Equal(p, data[tc.off:tc.off+tc.n]) {
				t.Fatal("the bytes read differ from the file's")
			}
			f.pageMu.Lock()
			buffered := f.pageBuf != nil
			f.pageMu.Unlock()
			if buffered != tc.buffering {
				t.Errorf("page buffered: %v, want %v", buffered, tc.buffering)
			}
		})
	}
}

// Reads that a FUSE kernel's concurrent readahead delivers slightly out of
// order continue a sequential run; a random reader's reads do not start
// one, even when one lands near the last.
func TestSequentialToleratesReordering(t *testing.T) {
	const mib = 1 << 20
	f := &File{}
	// The order a mount's readahead was seen to arrive in: pairs swapped.
	for i, start := range []int64{0, 1, 2, 4, 3, 5, 6, 8, 7, 9} {
		if !f.sequential(start*mib, (start+1)*mib) {
			t.Fatalf("read %d (at %d MiB) not counted as sequential", i, start)
		}
	}
	r := &File{lastEnd: -1}
	rng := rand.New(rand.NewPCG(1, 2))
	started := 0
	for range 100000 {
		off := rng.Int64N(1<<30 - 4096)
		if r.sequential(off, off+4096) {
			started++
		}
	}
	// A run starts only where the last read ended exactly, which random
	// 4 KiB reads over 1 GiB almost never do.
	if started > 1 {
		t.Errorf("%d of 100,000 random 4 KiB reads counted as sequential", started)
	}
	// A random read right after another one is not a run either.
	r2 := &File{lastEnd: -1}
	r2.sequential(500*mib, 500*mib+4096)
	if r2.sequential(501*mib, 501*mib+4096) {
		t.Error("a second read near a random one counted as sequential")
	}
}
