package cachenode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

func TestMetaCacheTTLAndNegativeEntries(t *testing.T) {
	m := newMetaCache(100)
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	var calls int
	load := func(context.Context) (ufs.FileInfo, error) {
		calls++
		return ufs.FileInfo{Path: "a", Size: int64(calls)}, nil
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		fi, err := m.stat(ctx, "/l/a", 10*time.Second, load)
		if err != nil || fi.Size != 1 {
			t.Fatalf("stat %d: %v %+v", i, err, fi)
		}
	}
	if calls != 1 {
		t.Fatalf("lake asked %d times within the TTL, want 1", calls)
	}
	now = now.Add(11 * time.Second)
	if fi, _ := m.stat(ctx, "/l/a", 10*time.Second, load); fi.Size != 2 || calls != 2 {
		t.Fatalf("after the TTL: size %d calls %d, want a fresh answer", fi.Size, calls)
	}

	missing := 0
	notFound := func(context.Context) (ufs.FileInfo, error) {
		missing++
		return ufs.FileInfo{}, fmt.Errorf("stat x: %w", ufs.ErrNotFound)
	}
	for i := 0; i < 3; i++ {
		if _, err := m.stat(ctx, "/l/x", 10*time.Second, notFound); !errors.Is(err, ufs.ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
	}
	if missing != 1 {
		t.Fatalf("negative answer asked the lake %d times, want 1", missing)
	}

	// Other errors are never cached.
	failures := 0
	failing := func(context.Context) (ufs.FileInfo, error) {
		failures++
		return ufs.FileInfo{}, errors.New("lake down")
	}
	m.stat(ctx, "/l/y", 10*time.Second, failing)
	m.stat(ctx, "/l/y", 10*time.Second, failing)
	if failures != 2 {
		t.Fatalf("a failure was cached: %d lake calls, want 2", failures)
	}
}

func TestMetaCacheInvalidate(t *testing.T) {
	m := newMetaCache(100)
	ctx := context.Background()
	ok := func(context.Context) (ufs.FileInfo, error) { return ufs.FileInfo{}, nil }
	page := func(context.Context) (ufs.ListPage, error) { return ufs.ListPage{}, nil }
	for _, p := range []string{"/l/d/a", "/l/d/b", "/l/d/sub/c", "/l/dx", "/l/e"} {
		m.stat(ctx, p, time.Hour, ok)
	}
	m.list(ctx, "/l", "", 10, time.Hour, page)
	m.list(ctx, "/l/d", "", 10, time.Hour, page)
	// Invalidating /l/d drops it and everything below, and the listing
	// of its parent /l, but not /l/dx or /l/e.
	n := m.invalidate("/l/d")
	if n != 5 {
		t.Fatalf("dropped %d entries, want 5 (/l/d/a, /l/d/b, /l/d/sub/c, list /l/d, list /l)", n)
	}
	if _, ok := m.entries["s\x00/l/dx"]; !ok {
		t.Fatal("/l/dx was dropped: invalidation must stop at a / boundary")
	}
}

func TestMetaCacheSingleflightAndBound(t *testing.T) {
	m := newMetaCache(10)
	var calls atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (ufs.FileInfo, error) {
		calls.Add(1)
		<-release
		return ufs.FileInfo{}, nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); m.stat(context.Background(), "/l/hot", time.Hour, load) }()
	}
	time.Sleep(50 * time.Millisecond) // let them all queue on the one call
	close(release)
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Fatalf("20 concurrent misses asked the lake %d times, want 1", c)
	}
	for i := 0; i < 50; i++ {
		m.stat(context.Background(), fmt.Sprintf("/l/f%d", i), time.Hour, func(context.Context) (ufs.FileInfo, error) { return ufs.FileInfo{}, nil })
	}
	if len(m.entries) != 10 || m.lru.Len() != 10 {
		t.Fatalf("cache holds %d entries, bound is 10", len(m.entries))
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	for _, sentinel := range []error{ufs.ErrNotFound, ufs.ErrVersionChanged, ufs.ErrNotEmpty, ufs.ErrInvalidPath, ErrNoMount, ErrReadOnly} {
		err := FromStatus(ToStatus(fmt.Errorf("stat /lake/x: %w", sentinel)))
		if !errors.Is(err, sentinel) {
			t.Errorf("%v did not survive the wire: got %v", sentinel, err)
		}
		if err.Error() != "stat /lake/x: "+sentinel.Error() {
			t.Errorf("message changed on the wire: %q", err.Error())
		}
	}
	if err := FromStatus(ToStatus(errors.New("boom"))); errors.Is(err, ufs.ErrNotFound) {
		t.Error("an unknown error became ErrNotFound")
	}
}
