package cachenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
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

// A lake call in flight when its path (or, for a listing, a child) is
// invalidated may have been answered before the change: its answer is not
// cached, and a caller after the invalidation does not share it.
func TestMetaCacheLoadRacingInvalidation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		invalidated string
		call        func(m *metaCache, size int64, release chan struct{}) (int64, error)
	}{
		{"stat", "/l/d/f", func(m *metaCache, size int64, release chan struct{}) (int64, error) {
			fi, err := m.stat(context.Background(), "/l/d/f", time.Hour, func(context.Context) (ufs.FileInfo, error) {
				<-release
				return ufs.FileInfo{Path: "d/f", Size: size}, nil
			})
			return fi.Size, err
		}},
		{"listOfTheParent", "/l/d/f", func(m *metaCache, size int64, release chan struct{}) (int64, error) {
			page, err := m.list(context.Background(), "/l/d", "", 10, time.Hour, func(context.Context) (ufs.ListPage, error) {
				<-release
				return ufs.ListPage{Entries: []ufs.FileInfo{{Path: "d/f", Size: size}}}, nil
			})
			if err != nil || len(page.Entries) != 1 {
				return 0, fmt.Errorf("page %+v: %v", page, err)
			}
			return page.Entries[0].Size, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetaCache(100)
			oldRelease, newRelease := make(chan struct{}), make(chan struct{})
			close(newRelease)
			old := make(chan int64, 1)
			go func() {
				size, err := tc.call(m, 1, oldRelease)
				if err != nil {
					t.Error(err)
				}
				old <- size
			}()
			time.Sleep(50 * time.Millisecond) // the old answer's lake call is in flight
			m.invalidate(tc.invalidated)
			after := make(chan int64, 1)
			go func() {
				size, _ := tc.call(m, 2, newRelease)
				after <- size
			}()
			select {
			case size := <-after:
				if size != 2 {
					t.Errorf("a call after the invalidation answered size %d, want the lake's new 2", size)
				}
			case <-time.After(2 * time.Second):
				close(oldRelease)
				t.Fatalf("a call after the invalidation waited for the call before it (and answered %d)", <-after)
			}
			close(oldRelease)
			if size := <-old; size != 1 {
				t.Fatalf("the call before the invalidation answered %d, want its own 1", size)
			}
			// The cache keeps the newer answer; a call now asks nothing.
			if size, err := tc.call(m, 3, newRelease); err != nil || size != 2 {
				t.Fatalf("after both: size %d (%v), want the cached 2", size, err)
			}
		})
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

// countingLake is an in-memory lake of files in directories that counts
// Stat and List calls. A listing page is read from the lake before the
// gate (if set) holds it, as a slow LIST that raced a write would be.
type countingLake struct {
	mu    sync.Mutex
	files map[string]ufs.FileInfo // rel path -> info
	dirs  map[string][]string     // rel dir -> sorted child names

	stats, lists atomic.Int64
	listEntered  chan struct{} // if set, gets a value each time a List is read
	gate         chan struct{} // if set, every List waits for it to close
	noVersions   bool          // List leaves versions out
}

func newCountingLake() *countingLake {
	return &countingLake{files: map[string]ufs.FileInfo{}, dirs: map[string][]string{}}
}

// put creates or replaces a file with a version of its own.
func (l *countingLake) put(rel string, size int64, version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	dir, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	if _, ok := l.files[rel]; !ok {
		names := l.dirs[dir]
		i, _ := slices.BinarySearch(names, name)
		l.dirs[dir] = slices.Insert(names, i, name)
	}
	l.files[rel] = ufs.FileInfo{Path: rel, Size: size, ModTime: time.Unix(size, 0), Version: version}
}

func (l *countingLake) remove(rel string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.files, rel)
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	names := l.dirs[dir]
	if i, ok := slices.BinarySearch(names, name); ok {
		l.dirs[dir] = slices.Delete(names, i, i+1)
	}
}

func (l *countingLake) Stat(ctx context.Context, p string) (ufs.FileInfo, error) {
	l.stats.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if fi, ok := l.files[p]; ok {
		return fi, nil
	}
	if _, ok := l.dirs[p]; ok {
		return ufs.FileInfo{Path: p, IsDir: true}, nil
	}
	return ufs.FileInfo{}, fmt.Errorf("fake stat %s: %w", p, ufs.ErrNotFound)
}

func (l *countingLake) List(ctx context.Context, dir, token string, limit int) (ufs.ListPage, error) {
	l.lists.Add(1)
	if limit <= 0 {
		limit = ufs.DefaultListLimit
	}
	l.mu.Lock()
	names, ok := l.dirs[dir]
	if !ok {
		l.mu.Unlock()
		return ufs.ListPage{}, fmt.Errorf("fake list %s: %w", dir, ufs.ErrNotFound)
	}
	i := 0
	if token != "" {
		i = sort.SearchStrings(names, token+"\x00")
	}
	var page ufs.ListPage
	for ; i < len(names) && len(page.Entries) < limit; i++ {
		fi := l.files[path.Join(dir, names[i])]
		if l.noVersions {
			fi.Version = ""
		}
		page.Entries = append(page.Entries, fi)
	}
	if i < len(names) {
		page.Next = names[i-1]
	}
	l.mu.Unlock()
	if l.listEntered != nil {
		l.listEntered <- struct{}{}
	}
	if l.gate != nil {
		<-l.gate
	}
	return page, nil
}

func (l *countingLake) ReadRange(context.Context, string, string, int64, int64) (io.ReadCloser, error) {
	return nil, errors.New("fake lake: no reads")
}
func (l *countingLake) Create(context.Context, string, io.Reader) (ufs.FileInfo, error) {
	return ufs.FileInfo{}, errors.New("fake lake: read-only")
}
func (l *countingLake) Mkdir(context.Context, string) error {
	return errors.New("fake lake: read-only")
}
func (l *countingLake) Delete(context.Context, string) error {
	return errors.New("fake lake: read-only")
}
func (l *countingLake) Rename(context.Context, string, string) error {
	return errors.New("fake lake: read-only")
}
func (l *countingLake) String() string { return "fake://lake" }
func (l *countingLake) Close() error   { return nil }

// testClock is a clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testTTL = 30 * time.Second

// newMetaNode returns a node serving one lake mounted at /lake/t, with its
// metadata cache on a clock the test moves.
func newMetaNode(t *testing.T, lake ufs.FS, entries int) (*Node, *testClock) {
	t.Helper()
	n := NewNode(NodeConfig{
		Lakes:           NewLakes([]Lake{{Path: "/lake/t", FS: lake, MetadataTTL: testTTL}}),
		MetadataEntries: entries,
	})
	clock := &testClock{now: time.Unix(1_000_000, 0)}
	n.meta.now = clock.Now
	return n, clock
}

// statOf asks the node for p and checks the answer against want (nil
// for not found).
func statOf(n *Node, p string, want *ufs.FileInfo) error {
	r, err := n.Stat(context.Background(), &nodepb.StatRequest{Path: p})
	if want == nil {
		if err == nil {
			return fmt.Errorf("stat %s = %+v, want not found", p, r.GetEntry())
		}
		if !errors.Is(FromStatus(err), ufs.ErrNotFound) {
			return fmt.Errorf("stat %s: %v, want not found", p, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %v", p, err)
	}
	e := r.GetEntry()
	if e.GetPath() != p || e.GetSize() != want.Size || e.GetVersion() != want.Version || e.GetMtimeUnixNano() != want.ModTime.UnixNano() || e.GetDir() != want.IsDir {
		return fmt.Errorf("stat %s = %+v, want %+v", p, e, *want)
	}
	return nil
}

// statAll stats the files of names from workers goroutines, each a
// strided share, and checks every answer against the lake's current one.
func statAll(t *testing.T, n *Node, lake *countingLake, names []string, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(names); i += workers {
				lake.mu.Lock()
				fi, ok := lake.files[names[i]]
				lake.mu.Unlock()
				var want *ufs.FileInfo
				if ok {
					want = &fi
				}
				if err := statOf(n, "/lake/t/"+names[i], want); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// 1,000 files of one directory stat'ed once per epoch, epochs longer than
// the TTL: past the TTL the directory is revalidated by one listing, not
// one lake stat per file, and the answers are the lake's new ones.
func TestStatsPastTTLRevalidateTheDirectoryByOneListing(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 1000 {
		names = append(names, fmt.Sprintf("d/f%04d", i))
		lake.put(names[i], int64(100+i), fmt.Sprintf("v1-%d", i))
	}
	n, clock := newMetaNode(t, lake, 0)

	statAll(t, n, lake, names, 1)
	t.Logf("first pass: %d lake stats, %d list pages", lake.stats.Load(), lake.lists.Load())
	if s := lake.stats.Load() + lake.lists.Load(); s > 1000 {
		t.Fatalf("first pass asked the lake %d times for 1000 files", s)
	}

	// Past the TTL, with a tenth of the files changed in the lake and one
	// gone.
	clock.Advance(testTTL + time.Second)
	for i := 0; i < 1000; i += 10 {
		lake.put(names[i], int64(5000+i), fmt.Sprintf("v2-%d", i))
	}
	lake.remove(names[999])
	lake.stats.Store(0)
	lake.lists.Store(0)
	statAll(t, n, lake, append(names, "d/never-there"), 16)
	stats, lists := lake.stats.Load(), lake.lists.Load()
	t.Logf("second pass past the TTL, 16 goroutines: %d lake stats, %d list pages", stats, lists)
	if lists > 2 || stats > listTrigger {
		t.Fatalf("second pass: %d lake stats and %d list pages for 1000 files of one directory; want at most 2 pages and %d stats", stats, lists, listTrigger)
	}

	// Within the TTL again: everything from the cache.
	lake.stats.Store(0)
	lake.lists.Store(0)
	statAll(t, n, lake, names, 4)
	if s, l := lake.stats.Load(), lake.lists.Load(); s+l != 0 {
		t.Fatalf("within the TTL: %d lake stats and %d list pages, want none", s, l)
	}
}

// A directory far larger than a listing may be: one stat past the TTL
// lists nothing, and a burst of misses lists at most maxListPages pages
// once, then asks the lake file by file.
func TestStatInAHugeDirectoryListsBoundedPages(t *testing.T) {
	lake := newCountingLake()
	const files = 40 * ufs.DefaultListLimit
	var names []string
	for i := range files {
		names = append(names, fmt.Sprintf("huge/f%06d", i))
		lake.put(names[i], int64(i), fmt.Sprintf("v%d", i))
	}
	n, clock := newMetaNode(t, lake, 0)
	clock.Advance(time.Hour)

	if err := statOf(n, "/lake/t/"+names[777], ptr(lake.files[names[777]])); err != nil {
		t.Fatal(err)
	}
	if l := lake.lists.Load(); l != 0 {
		t.Fatalf("one stat in a directory of %d files listed %d pages", files, l)
	}
	statAll(t, n, lake, names[:500], 16)
	clock.Advance(testTTL + time.Second)
	statAll(t, n, lake, names[:500], 16)
	t.Logf("1000 stats of a %d-file directory: %d lake stats, %d list pages", files, lake.stats.Load(), lake.lists.Load())
	if l := lake.lists.Load(); l > maxListPages {
		t.Fatalf("listed %d pages of a huge directory, bound is %d", l, maxListPages)
	}
}

func ptr[T any](v T) *T { return &v }

// A listing in flight when paths of its directory are changed and
// invalidated must not put back its older answers for them, nor a
// not-found for a file created meanwhile.
func TestListingRacingInvalidationKeepsTheNewerAnswer(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("d/a%d", i))
		lake.put(names[i], 10, "v1")
	}
	n, clock := newMetaNode(t, lake, 0)
	statAll(t, n, lake, names, 1) // the directory is listed and its listing used
	if lake.lists.Load() == 0 {
		t.Fatal("the first pass never listed the directory")
	}

	clock.Advance(testTTL + time.Second)
	lake.listEntered = make(chan struct{}, 1)
	lake.gate = make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- statOf(n, "/lake/t/d/a0", &ufs.FileInfo{Size: 10, ModTime: time.Unix(10, 0), Version: "v1"})
	}()
	<-lake.listEntered // the listing has read the directory, and waits

	// A waiter for a file the listing does not show.
	created := make(chan error, 1)
	go func() {
		created <- statOf(n, "/lake/t/d/new", &ufs.FileInfo{Size: 3, ModTime: time.Unix(3, 0), Version: "n1"})
	}()
	eventually(t, "the second stat to wait for the listing", func() bool {
		n.meta.mu.Lock()
		defer n.meta.mu.Unlock()
		l := n.meta.listings["/lake/t/d"]
		return l != nil && len(l.wanted) == 2
	})
	// Writes that the listing did not see, each invalidated as the node's
	// Write and Delete do.
	lake.put("d/a3", 20, "v2")
	n.meta.invalidate("/lake/t/d/a3")
	lake.remove("d/a5")
	n.meta.invalidate("/lake/t/d/a5")
	lake.put("d/new", 3, "n1")
	n.meta.invalidate("/lake/t/d/new")
	close(lake.gate)

	if err := <-first; err != nil {
		t.Error(err)
	}
	if err := <-created; err != nil {
		t.Errorf("a file created during the listing: %v", err)
	}
	if err := statOf(n, "/lake/t/d/a3", ptr(lake.files["d/a3"])); err != nil {
		t.Errorf("a file replaced during the listing: %v", err)
	}
	if err := statOf(n, "/lake/t/d/a5", nil); err != nil {
		t.Errorf("a file deleted during the listing: %v", err)
	}
	for _, p := range []string{"d/a1", "d/a9"} {
		if err := statOf(n, "/lake/t/"+p, ptr(lake.files[p])); err != nil {
			t.Error(err)
		}
	}
}

// A lake whose listings carry no versions is never used to answer stats:
// its one listing is dropped and every stat asks the lake.
func TestListingWithoutVersionsIsNotUsedForStats(t *testing.T) {
	lake := newCountingLake()
	lake.noVersions = true
	var names []string
	for i := range 100 {
		names = append(names, fmt.Sprintf("d/f%03d", i))
		lake.put(names[i], int64(i), fmt.Sprintf("v%d", i))
	}
	n, clock := newMetaNode(t, lake, 0)
	statAll(t, n, lake, names, 4)
	clock.Advance(testTTL + time.Second)
	statAll(t, n, lake, names, 4)
	if l, s := lake.lists.Load(), lake.stats.Load(); l > 1 || s != 200 {
		t.Fatalf("%d list pages and %d lake stats for 200 stats; want at most one listing and 200 stats", l, s)
	}
}

// A write-back file that its lake does not have yet is answered from the
// pending overlay, whatever a listing of its directory said.
func TestListingNeverHidesAPendingWrite(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("d/f%02d", i))
		lake.put(names[i], 1, "v1")
	}
	n, clock := newMetaNode(t, lake, 0)
	statAll(t, n, lake, names, 1)
	pending := &nodepb.Entry{Path: "/lake/t/d/pending", Size: 42, Version: "wb:node:1"}
	n.overlay("/lake/t/d", []*nodepb.Entry{pending}, nil)
	clock.Advance(testTTL + time.Second)
	statAll(t, n, lake, names, 4) // listed again; the listing lacks the pending file
	r, err := n.Stat(context.Background(), &nodepb.StatRequest{Path: pending.Path})
	if err != nil || r.GetEntry().GetVersion() != pending.Version {
		t.Fatalf("stat of a pending write-back file = %v, %v; want the pending entry", r.GetEntry(), err)
	}
}

// A write-back file under directories its lake does not have yet (S3 has
// none but what is below them) makes them: they are listed in their
// parents and a stat of them answers a directory, until the file is
// gone.
func TestPendingFilesMakeTheirDirectories(t *testing.T) {
	lake := newCountingLake()
	lake.put("other", 1, "v1")
	n, _ := newMetaNode(t, lake, 0)
	ctx := context.Background()
	pending := &nodepb.Entry{Path: "/lake/t/a/b/f", Size: 42, Version: "wb:node:1"}
	n.overlay("/lake/t/a/b", []*nodepb.Entry{pending}, nil)
	lists := func(dir, want string) {
		t.Helper()
		r, err := n.List(ctx, &nodepb.ListRequest{Path: dir})
		if err != nil {
			t.Fatalf("list %s: %v", dir, err)
		}
		for _, e := range r.GetEntries() {
			if e.GetPath() == want {
				if !e.GetDir() {
					t.Errorf("list %s: %s is not a directory", dir, want)
				}
				return
			}
		}
		t.Errorf("list %s = %v, want %s in it", dir, r.GetEntries(), want)
	}
	lists("/lake/t", "/lake/t/a")
	lists("/lake/t/a", "/lake/t/a/b")
	for _, d := range []string{"/lake/t/a", "/lake/t/a/b"} {
		if r, err := n.Stat(ctx, &nodepb.StatRequest{Path: d}); err != nil || !r.GetEntry().GetDir() {
			t.Errorf("stat %s = %v, %v; want a directory", d, r.GetEntry(), err)
		}
	}
	n.overlay("/lake/t/a/b", nil, []string{pending.Path})
	if err := statOf(n, "/lake/t/a", nil); err != nil {
		t.Error(err)
	}
}

// A listing taken while a write-back file's upload ends shows the file:
// its pending entry is taken before the lake's page, so the file is in one
// or the other, never in neither.
func TestListingRacingAnUploadShowsTheFile(t *testing.T) {
	lake := newCountingLake()
	lake.put("other", 1, "v1")
	n, _ := newMetaNode(t, lake, 0)
	pending := &nodepb.Entry{Path: "/lake/t/new", Size: 42, Version: "wb:node:1"}
	n.overlay("/lake/t", []*nodepb.Entry{pending}, nil)
	lake.listEntered, lake.gate = make(chan struct{}, 1), make(chan struct{})
	result := make(chan *nodepb.ListReply, 1)
	go func() {
		r, err := n.List(context.Background(), &nodepb.ListRequest{Path: "/lake/t"})
		if err != nil {
			t.Error(err)
		}
		result <- r
	}()
	<-lake.listEntered // the lake's page is read: it does not have the file
	lake.put("new", 42, "v2")
	n.overlay("/lake/t", nil, []string{pending.Path}) // the upload's news
	close(lake.gate)
	r := <-result
	if !slices.ContainsFunc(r.GetEntries(), func(e *nodepb.Entry) bool { return e.GetPath() == pending.Path }) {
		t.Fatalf("a listing racing the upload of %s = %v: the file is in neither the pending files nor the lake's page", pending.Path, r.GetEntries())
	}
}

// When a write-back file's upload ends, the listings of the directories
// above it are dropped on every node, not only its directory's: the
// directories its upload made must show in them (a listing cached while
// the file was pending did not have them).
func TestUploadedFileShowsInTheListingsAboveIt(t *testing.T) {
	lake := newCountingLake()
	lake.put("x", 1, "v1")
	n, _ := newMetaNode(t, lake, 0)
	ctx := context.Background()
	lists := func(want string) bool {
		t.Helper()
		r, err := n.List(ctx, &nodepb.ListRequest{Path: "/lake/t"})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(r.GetEntries(), func(e *nodepb.Entry) bool { return e.GetPath() == want })
	}
	pending := &nodepb.Entry{Path: "/lake/t/a/b/f", Size: 42, Version: "wb:node:1"}
	n.overlay("/lake/t/a/b", []*nodepb.Entry{pending}, nil)
	if !lists("/lake/t/a") {
		t.Fatal("a pending file's new directory is not listed")
	}
	// The upload: the lake has a/b/f (and so the directory a), and the
	// region hears that the file is no longer pending.
	lake.put("a/b/f", 42, "v2")
	lake.mu.Lock()
	lake.files["a"] = ufs.FileInfo{Path: "a", IsDir: true}
	lake.dirs[""] = append(lake.dirs[""], "a")
	slices.Sort(lake.dirs[""])
	lake.mu.Unlock()
	n.overlay("/lake/t/a/b", nil, []string{pending.Path})
	if !lists("/lake/t/a") {
		t.Fatal("after the upload, /lake/t no longer lists a: its listing cached while the file was pending was kept")
	}
}
