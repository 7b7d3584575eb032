package cachenode

import (
	"context"
	"io"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// countingAttrFS counts a lake's Stat and StatAttrs calls.
type countingAttrFS struct {
	ufs.FS
	stats atomic.Int64
}

func (c *countingAttrFS) Stat(ctx context.Context, p string) (ufs.FileInfo, error) {
	c.stats.Add(1)
	return c.FS.Stat(ctx, p)
}

func (c *countingAttrFS) CreateAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (ufs.FileInfo, error) {
	return c.FS.(ufs.AttrFS).CreateAttrs(ctx, p, r, attrs)
}

func (c *countingAttrFS) StatAttrs(ctx context.Context, p string) (ufs.FileInfo, ufs.Attrs, error) {
	c.stats.Add(1)
	return c.FS.(ufs.AttrFS).StatAttrs(ctx, p)
}

// A node answers a file's attrs from the write that stored them, then
// from one lake call per version and TTL, which answers the stat too; an
// invalidation drops them; a lake that keeps none refuses user metadata
// before writing.
func TestNodeStatAttrs(t *testing.T) {
	fs, err := ufs.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lake := &countingAttrFS{FS: fs}
	n := NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: lake, MetadataTTL: time.Minute}})})
	nc := nodepb.NewNodeClient(serveTestNode(t, n))
	ctx := context.Background()
	write := func(nc nodepb.NodeClient, p string, attrs map[string]string) error {
		w, err := nc.Write(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Send(&nodepb.WriteChunk{Path: p, Data: []byte("bytes"), Attrs: attrs}); err != nil {
			t.Fatal(err)
		}
		_, err = w.CloseAndRecv()
		return err
	}
	want := map[string]string{"content-type": "text/x-a", "x-amz-meta-who": "me"}
	// statThrice asks three times, and the lake must have been asked
	// calls times meanwhile.
	statThrice := func(what string, calls int64) {
		t.Helper()
		before := lake.stats.Load()
		for range 3 {
			r, err := nc.StatAttrs(ctx, &nodepb.StatRequest{Path: "/lake/a/f"})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.GetAttrs(); !maps.Equal(got, want) {
				t.Fatalf("%s: attrs %v, want %v", what, got, want)
			}
		}
		if got := lake.stats.Load() - before; got != calls {
			t.Errorf("%s: %d lake calls, want %d", what, got, calls)
		}
	}
	if err := write(nc, "/lake/a/f", want); err != nil {
		t.Fatal(err)
	}
	// The write left its attrs but no stat: one lake call, for the stat.
	statThrice("after the write that stored them", 1)
	if _, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: "/lake/a"}); err != nil {
		t.Fatal(err)
	}
	statThrice("after an invalidation", 1)

	if err := write(nc, "/lake/a/g", map[string]string{"x-amz-meta-Bad": "x"}); err == nil || !strings.Contains(err.Error(), "lower-case") {
		t.Errorf("a write with an upper-case key: %v, want refused", err)
	}
	plain := NewNode(NodeConfig{ID: "n2", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: struct{ ufs.FS }{fs}, MetadataTTL: time.Minute}})})
	if err := write(nodepb.NewNodeClient(serveTestNode(t, plain)), "/lake/a/h", map[string]string{"x-amz-meta-k": "v"}); err == nil || !strings.Contains(err.Error(), "keeps no user metadata") {
		t.Errorf("user metadata for a lake that keeps none: %v", err)
	}
	if _, err := fs.Stat(ctx, "h"); err == nil {
		t.Error("the refused write wrote its file")
	}
}
