package router

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// testRegion is a region of in-process cache nodes on loopback ports over
// one file:// lake mounted at /lake/a: the router's read path end to end,
// without processes, Consul or MinIO (the e2e tests in ./test have those).
type testRegion struct {
	lakeDir string
	cfg     Config // for clients of the region
}

// startTestRegion serves nodes cache nodes, each with a memory tier only,
// over the lake directory, which holds files (path -> content).
func startTestRegion(t testing.TB, nodes int, pageSize int64, files map[string][]byte) *testRegion {
	t.Helper()
	r := &testRegion{lakeDir: t.TempDir()}
	for name, data := range files {
		p := filepath.Join(r.lakeDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	topo, err := federation.Parse("test topology", fmt.Appendf(nil,
		"mesh: t\nregions:\n  - name: r\nmounts:\n  - path: /lake/a\n    ufs: file://%s\n    region: r\n    metadata_ttl: 1h\n",
		filepath.ToSlash(r.lakeDir)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	var members []region.Member
	for i := range nodes {
		fs, err := ufs.Open(context.Background(), "file://"+filepath.ToSlash(r.lakeDir))
		if err != nil {
			t.Fatal(err)
		}
		lakes := cachenode.NewLakes([]cachenode.Lake{{Path: "/lake/a", FS: fs, MetadataTTL: topo.Mounts[0].MetadataTTL, Region: "r"}})
		store, err := cachenode.OpenStore(cachenode.StoreConfig{MemoryBytes: 1 << 30, PageSize: pageSize, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		cache := cachenode.NewCache(store, lakes, cachenode.CacheConfig{Logger: log})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i+1)
		srv := grpc.NewServer()
		nodepb.RegisterNodeServer(srv, cachenode.NewNode(cachenode.NodeConfig{
			ID: id, Region: "r", Addr: lis.Addr().String(), Lakes: lakes, Store: store, Cache: cache, Logger: log,
		}))
		go srv.Serve(lis)
		t.Cleanup(func() { srv.Stop(); cache.Close(); store.Close(); fs.Close() })
		members = append(members, region.Member{ID: id, Region: "r", Addr: lis.Addr().String()})
	}
	r.cfg = Config{Topology: topo, Region: "r", Members: region.NewStatic(members...), PageSize: pageSize, Logger: log}
	return r
}

// client returns a client of the region, closed when the test ends.
func (r *testRegion) client(t testing.TB) *Client {
	t.Helper()
	c, err := New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
