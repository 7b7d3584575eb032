package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/router/routertest"
)

// testMount is a real FUSE mount of a routertest namespace with one lake
// at /lake/a, counting the calls that reach the namespace.
type testMount struct {
	dir   string // the mount point
	lake  string // the lake's directory on disk
	ns    *countingNS
	fsys  *FS
	mount *Mount
}

type mountOptions struct {
	ttl       time.Duration
	pageSize  int
	readOnly  bool
	opTimeout time.Duration
	// wrap, if set, wraps the counting namespace the mount uses.
	wrap func(router.Namespace) router.Namespace
}

// needFUSE skips (or fails, in CI) when the test cannot mount.
func needFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "FUSE mount tests run as root (mount(2) of /dev/fuse)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Unavailable(t, "no /dev/fuse: %v", err)
	}
}

func mountLakes(t testing.TB, o mountOptions) *testMount {
	t.Helper()
	needFUSE(t)
	if o.ttl == 0 {
		o.ttl = 2 * time.Second
	}
	if o.opTimeout == 0 {
		o.opTimeout = 20 * time.Second
	}
	lakes := routertest.New(t, "/lake/a")
	topo := &federation.Topology{Mounts: []federation.Mount{{Path: "/lake/a", UFS: "file://" + lakes.Dir("/lake/a"), Region: "r1", MetadataTTL: o.ttl}}}
	tm := &testMount{dir: t.TempDir(), lake: lakes.Dir("/lake/a"), ns: &countingNS{Namespace: lakes}}
	var ns router.Namespace = tm.ns
	if o.wrap != nil {
		ns = o.wrap(ns)
	}
	fsys, err := New(Config{
		Namespace:    ns,
		Topology:     topo,
		SpoolDir:     t.TempDir(),
		ReadOnly:     o.readOnly,
		ListPageSize: o.pageSize,
		OpTimeout:    o.opTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	tm.fsys = fsys
	tm.mount, err = fsys.Mount(tm.dir, MountOptions{Debug: os.Getenv("LAKEMESH_FUSE_DEBUG") == "1"})
	if err != nil {
		fsys.Close()
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := tm.mount.Unmount()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("unmount: %v", err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		fsys.Close()
	})
	return tm
}

// path is the mount's path of a namespace path inside /lake/a.
func (tm *testMount) path(rel string) string { return filepath.Join(tm.dir, "lake", "a", rel) }

// countingNS counts the calls that reach the namespace and the sizes of
// the reads.
type countingNS struct {
	router.Namespace
	stats, lists, puts atomic.Int64
	statDelay          atomic.Int64 // nanoseconds each Stat waits first, as a hung node would

	mu    sync.Mutex
	reads []int // sizes asked of ReadAt
}

func (c *countingNS) Stat(ctx context.Context, p string) (router.Entry, error) {
	c.stats.Add(1)
	if d := time.Duration(c.statDelay.Load()); d > 0 {
		select {
		case <-ctx.Done():
			return router.Entry{}, fmt.Errorf("stat %s: %w", p, ctx.Err())
		case <-time.After(d):
		}
	}
	return c.Namespace.Stat(ctx, p)
}

func (c *countingNS) List(ctx context.Context, dir, token string, limit int) ([]router.Entry, string, error) {
	c.lists.Add(1)
	return c.Namespace.List(ctx, dir, token, limit)
}

func (c *countingNS) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	c.puts.Add(1)
	return c.Namespace.Put(ctx, p, r)
}

func (c *countingNS) OpenReader(e router.Entry) (router.Reader, error) {
	r, err := c.Namespace.OpenReader(e)
	if err != nil {
		return nil, err
	}
	return &countingReader{Reader: r, ns: c}, nil
}

func (c *countingNS) readSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads)
}

type countingReader struct {
	router.Reader
	ns *countingNS
}

func (r *countingReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.ns.mu.Lock()
	r.ns.reads = append(r.ns.reads, len(p))
	r.ns.mu.Unlock()
	return r.Reader.ReadAt(ctx, p, off)
}

// eventually retries check until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantErrno fails unless err wraps errno.
func wantErrno(t *testing.T, what string, err error, errno error) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s: got %v, want %v", what, err, errno)
	}
}
