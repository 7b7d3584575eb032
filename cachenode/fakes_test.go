package cachenode

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSource serves files from memory and counts what it is asked.
type fakeSource struct {
	mu     sync.Mutex
	files  map[FileID][]byte
	ranges []Span // absolute [off, off+n) of every Fetch, in order

	calls, bytes atomic.Int64
	started      atomic.Int64 // Fetch calls entered (before the gate)

	// gate, if set, holds every Fetch until it is closed.
	gate chan struct{}
	// fail, if set, is returned by Fetch.
	fail error
	// short, if > 0, cuts every response to this many bytes.
	short int64
}

func newFakeSource() *fakeSource { return &fakeSource{files: map[FileID][]byte{}} }

// add registers content for a file and returns its ref.
func (s *fakeSource) add(path, version string, data []byte) FileRef {
	ref := FileRef{Mount: "/lake/test", Path: path, Version: version, Size: int64(len(data))}
	s.mu.Lock()
	s.files[ref.ID()] = data
	s.mu.Unlock()
	return ref
}

func (s *fakeSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	s.started.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	data, ok := s.files[ref.ID()]
	if !ok {
		return nil, fmt.Errorf("fake source: no file %s", ref)
	}
	if off < 0 || off > int64(len(data)) {
		return nil, fmt.Errorf("fake source: offset %d outside %s", off, ref)
	}
	end := min(off+n, int64(len(data)))
	if s.short > 0 {
		end = min(end, off+s.short)
	}
	s.calls.Add(1)
	s.bytes.Add(end - off)
	s.ranges = append(s.ranges, Span{Off: off, Len: n})
	return io.NopCloser(bytes.NewReader(data[off:end])), nil
}

func (s *fakeSource) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *fakeSource) setShort(n int64) {
	s.mu.Lock()
	s.short = n
	s.mu.Unlock()
}

// fetchRanges returns the ranges fetched since the first from calls, sorted
// by offset (concurrent fetches of one read arrive in any order).
func (s *fakeSource) fetchRanges(from int) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Span(nil), s.ranges[from:]...)
	slices.SortFunc(out, func(a, b Span) int { return cmp.Compare(a.Off, b.Off) })
	return out
}

func (s *fakeSource) fetchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ranges)
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// logRecorder is a slog handler that keeps records for assertions.
type logRecorder struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func newLogRecorder() (*slog.Logger, *logRecorder) {
	h := &logRecorder{mu: &sync.Mutex{}, recs: &[]slog.Record{}}
	return slog.New(h), h
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// find returns the records with this message, as "key=value ..." strings.
func (h *logRecorder) find(msg string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range *h.recs {
		if r.Message != msg {
			continue
		}
		var sb strings.Builder
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&sb, "%s=%v ", a.Key, a.Value)
			return true
		})
		out = append(out, sb.String())
	}
	return out
}

// eventually retries cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openTestStore opens a store with small pages and fails the test on error.
func openTestStore(t testing.TB, cfg StoreConfig) *Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestCache(t testing.TB, s *Store, src Source, cfg CacheConfig) *Cache {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c := NewCache(s, src, cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads a whole file through the cache in chunks and checks it.
func readAll(t testing.TB, c *Cache, ref FileRef, want []byte, chunk int, sequential bool) {
	t.Helper()
	got := make([]byte, len(want))
	for off := 0; off < len(want); off += chunk {
		end := min(off+chunk, len(want))
		n, _, err := c.ReadAt(context.Background(), ref, got[off:end], int64(off), sequential)
		if err != nil || n != end-off {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, end-off, n, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes of %s differ", ref)
	}
}
