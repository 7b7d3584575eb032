package fusefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/router"
)

// failingPuts fails the first Put of each path once it has read failAfter
// bytes (a node dying mid-write); every other Put goes through.
type failingPuts struct {
	router.Namespace
	failAfter int64
	mu        sync.Mutex
	failed    map[string]bool
}

var errNodeDied = errors.New("the node died mid-write")

func (f *failingPuts) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	f.mu.Lock()
	fail := !f.failed[p]
	f.failed[p] = true
	f.mu.Unlock()
	if fail {
		if _, err := io.CopyN(io.Discard, r, f.failAfter); err != nil {
			return router.Entry{}, err
		}
		return router.Entry{}, errNodeDied
	}
	return f.Namespace.Put(ctx, p, r)
}

// stalledPuts holds every Put's reading until release is closed (a node
// that stopped taking bytes).
type stalledPuts struct {
	router.Namespace
	release chan struct{}
	started atomic.Int64
}

func (s *stalledPuts) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	s.started.Add(1)
	<-s.release
	return s.Namespace.Put(ctx, p, r)
}

// writeInPieces writes data to f in pieces of the given size.
func writeInPieces(t *testing.T, f *os.File, data []byte, piece int) {
	t.Helper()
	for off := 0; off < len(data); off += piece {
		if _, err := f.Write(data[off:min(off+piece, len(data))]); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
}

// A streamed file reads back whole through its own handle while its last
// bytes are still in the upload's window, whatever the sizes and
// alignment of the appends, and the lake gets exactly what was written.
func TestMountStreamedFileReadsBack(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	for _, piece := range []int{1 << 20, 777_777, 4096} {
		data := randomBytes(streamAfter+3*windowBuffer+12345, uint64(piece))
		f, err := os.OpenFile(tm.path("rb.bin"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		writeInPieces(t, f, data, piece)
		got := make([]byte, len(data))
		if _, err := f.ReadAt(got, 0); err != nil {
			t.Fatalf("pieces of %d: read back before close: %v", piece, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("pieces of %d: read back before close differs", piece)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(tm.lake, "rb.bin")); !bytes.Equal(got, data) {
			t.Fatalf("pieces of %d: the lake has %d bytes, not the %d written", piece, len(got), len(data))
		}
	}
}

// A streaming upload that fails mid-file (its node died) costs nothing at
// close: the spool, which has every byte the window took, is uploaded
// whole.
func TestMountStreamFailsAndSpoolUploads(t *testing.T) {
	tm := mountLakes(t, mountOptions{wrap: func(ns router.Namespace) router.Namespace {
		return &failingPuts{Namespace: ns, failAfter: streamAfter + windowBuffer, failed: map[string]bool{}}
	}})
	data := randomBytes(streamAfter+6*windowBuffer+999, 3)
	f, err := os.Create(tm.path("fail.bin"))
	if err != nil {
		t.Fatal(err)
	}
	writeInPieces(t, f, data, 1<<20)
	if err := f.Close(); err != nil {
		t.Fatalf("close after a failed streaming upload: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "fail.bin")); !bytes.Equal(got, data) {
		t.Fatalf("the lake has %d bytes, not the %d written", len(got), len(data))
	}
}

// A Put that stops taking bytes does not stop the writer for long: once
// the window waited windowStall, its pieces go to the spool only, and the
// Put reads them from there when it resumes.
func TestMountStalledUploadDoesNotBlockWrites(t *testing.T) {
	stall := &stalledPuts{release: make(chan struct{})}
	tm := mountLakes(t, mountOptions{wrap: func(ns router.Namespace) router.Namespace {
		stall.Namespace = ns
		return stall
	}})
	data := randomBytes(streamAfter+8*windowBuffer, 4)
	f, err := os.Create(tm.path("stall.bin"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	writeInPieces(t, f, data, 1<<20)
	if took := time.Since(start); took > 10*windowStall {
		t.Errorf("writing past a stalled upload took %v", took)
	}
	if stall.started.Load() == 0 {
		t.Fatal("no streaming upload started")
	}
	close(stall.release)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "stall.bin")); !bytes.Equal(got, data) {
		t.Fatalf("the lake has %d bytes, not the %d written", len(got), len(data))
	}
}
