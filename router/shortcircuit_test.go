//go:build linux

package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// scNode is one in-process cache node with a disk tier, serving gRPC on
// loopback TCP and a Unix socket and short-circuit grants on the socket
// next to it, over a file:// lake holding /lake/a/f.
type scNode struct {
	lakeDir, cacheDir string
	store             *cachenode.Store
	sc                *cachenode.ShortCircuitServer
	member            region.Member
	topo              *federation.Topology
	data              []byte
	pageSize          int64
	readRPCs          atomic.Int64 // gRPC Read streams the node served
	statRPCs          atomic.Int64 // gRPC Stats and StatAttrs the node answered
	scConfig          cachenode.ShortCircuitConfig
}

// takeShortCircuitSocket stops the node's short-circuit server and
// listens on its socket's path.
func (n *scNode) takeShortCircuitSocket(t testing.TB) net.Listener {
	t.Helper()
	sock := cachenode.ShortCircuitSocket(n.member.Socket)
	n.sc.Close()
	// Closing its listener removes the socket (in Serve, if that had not
	// started yet): wait for that before taking the path.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node's short-circuit socket outlived its server")
		}
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// muteShortCircuit replaces the node's short-circuit socket with one that
// takes requests and never answers; the connections come on the channel.
func (n *scNode) muteShortCircuit(t *testing.T) <-chan net.Conn {
	t.Helper()
	lis := n.takeShortCircuitSocket(t)
	t.Cleanup(func() { lis.Close() })
	asked := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			asked <- c
		}
	}()
	return asked
}

// restartShortCircuit serves the node's short-circuit socket anew, with
// its configuration changed by change.
func (n *scNode) restartShortCircuit(t testing.TB, change func(*cachenode.ShortCircuitConfig)) {
	t.Helper()
	lis := n.takeShortCircuitSocket(t)
	cfg := n.scConfig
	change(&cfg)
	n.sc = cachenode.NewShortCircuitServer(cfg)
	go n.sc.Serve(lis)
}

// startSCNode starts a node of testPageSize pages over a file of size
// random bytes; memory sizes its memory tier (0: disk tier only).
func startSCNode(t testing.TB, size int, memory int64) *scNode {
	return startSCNodePages(t, size, memory, testPageSize)
}

func startSCNodePages(t testing.TB, size int, memory, pageSize int64) *scNode {
	t.Helper()
	n := &scNode{lakeDir: t.TempDir(), data: randomBytes(size, 1), pageSize: pageSize}
	if err := os.WriteFile(filepath.Join(n.lakeDir, "f"), n.data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short (108 bytes): not under t.TempDir().
	sockDir, err := os.MkdirTemp("", "lmsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	n.cacheDir = filepath.Join(sockDir, "cache")
	topo, err := federation.Parse("test topology", fmt.Appendf(nil,
		"mesh: t\nregions:\n  - name: r\nmounts:\n  - path: /lake/a\n    ufs: file://%s\n    region: r\n    metadata_ttl: 1h\n",
		filepath.ToSlash(n.lakeDir)))
	if err != nil {
		t.Fatal(err)
	}
	n.topo = topo
	log := slog.New(slog.DiscardHandler)
	fs, err := ufs.Open(context.Background(), "file://"+filepath.ToSlash(n.lakeDir))
	if err != nil {
		t.Fatal(err)
	}
	lakes := cachenode.NewLakes([]cachenode.Lake{{Path: "/lake/a", FS: fs, MetadataTTL: topo.Mounts[0].MetadataTTL, Region: "r"}})
	n.store, err = cachenode.OpenStore(cachenode.StoreConfig{
		Dir: n.cacheDir, DiskBytes: 1 << 30, MemoryBytes: memory, PageSize: pageSize, BlockSize: min(pageSize, 32<<10), Logger: log,
		PackBelow: pageSize, // a file's short last page is packed, as on a node: read at its offset in the pack
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := cachenode.NewCache(n.store, lakes, cachenode.CacheConfig{Logger: log})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "node.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fdLis, err := net.Listen("unix", cachenode.ShortCircuitSocket(sock))
	if err != nil {
		t.Fatal(err)
	}
	n.member = region.Member{ID: "n1", Region: "r", Addr: tcp.Addr().String(), Host: "this-host", Socket: sock}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod == nodepb.Node_Read_FullMethodName {
			n.readRPCs.Add(1)
		}
		return h(srv, ss)
	}), grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == nodepb.Node_Stat_FullMethodName || info.FullMethod == nodepb.Node_StatAttrs_FullMethodName {
			n.statRPCs.Add(1)
		}
		return h(ctx, req)
	}))
	node := cachenode.NewNode(cachenode.NodeConfig{
		ID: "n1", Region: "r", Addr: n.member.Addr, Lakes: lakes, Store: n.store, Cache: cache, Logger: log,
	})
	nodepb.RegisterNodeServer(srv, node)
	n.scConfig = cachenode.ShortCircuitConfig{Lakes: lakes, Store: n.store, Cache: cache, Logger: log, Stat: node.ShortCircuitStat}
	n.sc = cachenode.NewShortCircuitServer(n.scConfig)
	go srv.Serve(tcp)
	go srv.Serve(unix)
	go n.sc.Serve(fdLis)
	t.Cleanup(func() { n.sc.Close(); srv.Stop(); cache.Close(); n.store.Close(); fs.Close() })
	return n
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// client returns a client on the node's host; sc false reads over gRPC
// only.
func (n *scNode) client(t testing.TB, sc bool) *Client {
	t.Helper()
	c, err := New(Config{
		Topology: n.topo, Region: "r", Members: region.NewStatic(n.member), PageSize: n.pageSize,
		Host: "this-host", DisableShortCircuit: !sc, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// warm reads the whole file over gRPC, so the node holds every page.
func (n *scNode) warm(t testing.TB) {
	t.Helper()
	if err := readFile(context.Background(), n.client(t, false), "/lake/a/f", make([]byte, 1<<20), io.Discard); err != nil {
		t.Fatal(err)
	}
}

// check reads the whole file through c, sequentially and in random
// pieces (some across pages), and compares the bytes with want.
func check(t *testing.T, c *Client, want []byte) {
	t.Helper()
	ctx := context.Background()
	var got bytes.Buffer
	if err := readFile(ctx, c, "/lake/a/f", make([]byte, 1<<20), &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("sequential read: %d bytes that differ from the file's %d", got.Len(), len(want))
	}
	f, err := c.Open(ctx, "/lake/a/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 200 {
		size := 4 << 10
		if i%4 == 0 {
			size = 300 << 10
		}
		off := r.Int64N(int64(len(want)))
		buf := make([]byte, size)
		k, err := f.ReadAt(ctx, buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:k], want[off:off+int64(k)]) {
			t.Fatalf("read of %d bytes at %d: bytes differ", size, off)
		}
	}
}

func TestShortCircuitReadsWarmPages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory int64
	}{{"memory and disk", 1 << 30}, {"disk only", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startSCNode(t, 3*testPageSize+100<<10, tc.memory)
			n.warm(t)
			rpcs := n.readRPCs.Load()
			c := n.client(t, true)
			check(t, c, n.data)
			if got := n.readRPCs.Load() - rpcs; got != 0 {
				t.Errorf("%d gRPC Read calls for warm pages; want none", got)
			}
			st := n.sc.Stats()
			if tc.memory > 0 {
				// Every page is in the node's memory: large reads are
				// copied from there; small ones (4 KiB) go through a
				// descriptor of each page, which needs no round trip
				// once held.
				if st.Grants > 4 || st.MemoryGrants == 0 || c.sc.memReads.Load() == 0 || c.sc.memReads.Load() == c.sc.reads.Load() {
					t.Errorf("%d descriptors and %d memory answers granted, %d of %d short-circuit reads from memory; want large reads from memory, small ones through at most one descriptor per page",
						st.Grants, st.MemoryGrants, c.sc.memReads.Load(), c.sc.reads.Load())
				}
			} else if st.Grants != 4 || c.sc.memReads.Load() != 0 {
				t.Errorf("node granted %d page descriptors, %d reads from memory; want one descriptor per page (4), none", st.Grants, c.sc.memReads.Load())
			}
			if r := c.sc.reads.Load(); r == 0 {
				t.Errorf("no read was short-circuited")
			}
		})
	}
}

// A read of a page its node on this host holds in neither tier is filled
// by the node for the read and copied from its memory: no gRPC read, no
// ask for a page file that does not exist, and the page fetch's span says
// the bytes came from the lake. Later reads of the page copy it from
// memory. A node whose memory does not keep the page hands out its page
// file instead; a client with scMaxFills fills waiting reads over gRPC.
func TestShortCircuitColdPageFilledByNode(t *testing.T) {
	const piece = 512 << 10 // random reads: no readahead, no page buffer
	offsets := []int64{piece, testPageSize + 2*piece, piece, testPageSize + 2*piece}
	readAll := func(t *testing.T, n *scNode, c *Client) {
		t.Helper()
		f := openFile(t, c)
		defer f.Close()
		for _, off := range offsets {
			buf := make([]byte, piece)
			if _, err := f.ReadAt(context.Background(), buf, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, n.data[off:off+piece]) {
				t.Fatalf("read at %d: bytes differ", off)
			}
		}
	}

	// traced returns a short-circuit client of n whose spans rec keeps.
	traced := func(t *testing.T, n *scNode) (c *Client, rec *tracetest.SpanRecorder) {
		rec = tracetest.NewSpanRecorder()
		c, err := New(Config{
			Topology: n.topo, Region: "r", Members: region.NewStatic(n.member), PageSize: n.pageSize,
			Host: "this-host", Logger: slog.New(slog.DiscardHandler),
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, rec
	}
	// sources lists the page fetches' sources, each marked short-circuit.
	sources := func(t *testing.T, rec *tracetest.SpanRecorder) []string {
		var sources []string
		for _, s := range rec.Ended() {
			if s.Name() != "page.fetch" {
				continue
			}
			src, sc := "", false
			for _, a := range s.Attributes() {
				switch a.Key {
				case "lakemesh.source":
					src = a.Value.AsString()
				case "lakemesh.short_circuit":
					sc = a.Value.AsBool()
				}
			}
			if !sc {
				t.Errorf("a page fetch not marked short-circuit")
			}
			sources = append(sources, src)
		}
		return sources
	}

	t.Run("memory", func(t *testing.T) {
		n := startSCNode(t, 2*testPageSize, 1<<30)
		c, rec := traced(t, n)
		readAll(t, n, c)
		st := n.sc.Stats()
		if st.NotOnDisk != 0 || st.Grants != 0 || n.readRPCs.Load() != 0 {
			t.Errorf("%d page files asked for that did not exist, %d granted, %d gRPC reads; want none", st.NotOnDisk, st.Grants, n.readRPCs.Load())
		}
		if st.Fills != 2 || c.sc.fillReads.Load() != 2 || c.sc.memReads.Load() != 4 {
			t.Errorf("node filled %d pages for memory reads, client counted %d filled and %d memory reads; want a fill per cold page (2), then memory reads (4 in all)",
				st.Fills, c.sc.fillReads.Load(), c.sc.memReads.Load())
		}
		if got, want := sources(t, rec), []string{"lake", "lake", "memory", "memory"}; !slices.Equal(got, want) {
			t.Errorf("page fetches came from %v; want %v", got, want)
		}
	})

	t.Run("disk only", func(t *testing.T) {
		n := startSCNode(t, 2*testPageSize, 0)
		c, rec := traced(t, n)
		readAll(t, n, c)
		if st := n.sc.Stats(); st.Fills != 0 || st.Grants != 2 || n.readRPCs.Load() != 0 {
			t.Errorf("%d memory fills, %d page files granted, %d gRPC reads; want the pages filled and read through their files (2 grants), no gRPC read",
				st.Fills, st.Grants, n.readRPCs.Load())
		}
		// The cold pages' reads report the node's fill, though their
		// bytes came from the page files.
		if got, want := sources(t, rec), []string{"lake", "lake", "disk", "disk"}; !slices.Equal(got, want) {
			t.Errorf("page fetches came from %v; want %v", got, want)
		}
		// A second client, holding no grants, asks for the pages on disk
		// with filling reads: nothing is fetched and nothing is a miss.
		readAll(t, n, n.client(t, true))
		if m := n.store.Stats().Misses; m != 2 || n.sc.Stats().Fills != 0 {
			t.Errorf("the store counted %d misses, the node %d fills; want one miss per cold page (2), none for pages its disk tier held", m, n.sc.Stats().Fills)
		}
	})

	t.Run("fills bounded", func(t *testing.T) {
		n := startSCNode(t, 2*testPageSize, 1<<30)
		c := n.client(t, true)
		for range scMaxFills {
			c.sc.fills <- struct{}{}
		}
		readAll(t, n, c)
		// A cold page is "not held" to a plain memory read: it goes over
		// gRPC, which fills it, and the page files are not asked for.
		if st := n.sc.Stats(); st.Fills != 0 || st.NotInMemory != 2 || st.NotOnDisk != 0 || n.readRPCs.Load() != 2 {
			t.Errorf("%d fills, %d memory misses, %d page files asked for, %d gRPC reads; want no fill, one miss and one gRPC read per cold page (2)",
				st.Fills, st.NotInMemory, st.NotOnDisk, n.readRPCs.Load())
		}
	})
}

// A read given up while its node fills the page for it (an interrupted
// FUSE request; here a node that never answers) returns at once, and the
// connection is not used again.
func TestShortCircuitFillGivenUp(t *testing.T) {
	n := startSCNode(t, testPageSize, 1<<30)
	// The file's entry from the node before its socket stops answering
	// (a stat would ask there too).
	e, err := n.client(t, false).Stat(context.Background(), "/lake/a/f")
	if err != nil {
		t.Fatal(err)
	}
	// As a node waiting for a slow fill.
	asked := n.muteShortCircuit(t)
	c := n.client(t, true)
	f, err := c.OpenEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(ctx, make([]byte, 512<<10), 0)
		done <- err
	}()
	var conn net.Conn
	select {
	case conn = <-asked:
		defer conn.Close()
	case err := <-done:
		t.Fatalf("the read ended (%v) without asking the node's short-circuit socket", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the read never asked the node's short-circuit socket")
	}
	time.Sleep(100 * time.Millisecond) // the request is at the node
	cancel()
	// Not waiting means well under the 2 s a short-circuit ask may take
	// (and the minute a fill may).
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a read given up during its fill: %v; want context.Canceled", err)
		}
	case <-time.After(1500 * time.Millisecond):
		t.Fatal("a read given up kept waiting for its fill")
	}
	c.sc.mu.Lock()
	idle := len(c.sc.idle[cachenode.ShortCircuitSocket(n.member.Socket)])
	c.sc.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d connections pooled after a read given up; want none", idle)
	}
}

// A client keeps a connection for each of the filling reads it lets
// wait at once (16 readers of cold small files on a mount hold one each
// while their nodes fill): taking as many again dials none.
func TestShortCircuitKeepsAConnectionPerFillingRead(t *testing.T) {
	n := startSCNode(t, testPageSize, 0)
	c := n.client(t, true)
	socket := cachenode.ShortCircuitSocket(n.member.Socket)
	for range 2 {
		var conns []*net.UnixConn
		for range scMaxFills {
			conn, err := c.sc.conn(socket)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		for _, conn := range conns {
			c.sc.putConn(socket, conn)
		}
	}
	if got := c.sc.dials.Load(); got != scMaxFills {
		t.Fatalf("%d connections dialled for two rounds of %d at once, want %d", got, scMaxFills, scMaxFills)
	}
}

// readPageFiles has c's short-circuit reads of n's pages go through page
// files even where n's memory tier holds the pages, as for a client that
// may not read n's memory.
func readPageFiles(c *Client, n *scNode) {
	c.sc.mu.Lock()
	c.sc.noMem[cachenode.ShortCircuitSocket(n.member.Socket)] = true
	c.sc.mu.Unlock()
}

// Sequential reads smaller than a page, of pages a node on this host has
// on disk, go from the page file straight into the caller's buffer: the
// file takes no page buffer (one copy, not two), and they do not wait for
// the file's buffered reads (a FUSE mount's kernel sends a sequential
// reader's readahead as several concurrent reads of one file).
func TestShortCircuitSequentialReadsSkipThePageBuffer(t *testing.T) {
	n := startSCNode(t, 2*testPageSize, 0)
	n.warm(t)
	c := n.client(t, true)
	f := openFile(t, c)
	defer f.Close()
	ctx := context.Background()
	const piece = 1 << 20
	reads := 0
	for off := int64(0); off < 2*testPageSize; off += piece {
		buf := make([]byte, piece)
		if _, err := f.ReadAt(ctx, buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, n.data[off:off+piece]) {
			t.Fatalf("read at %d: bytes differ", off)
		}
		reads++
	}
	if f.pageBuf != nil {
		t.Errorf("sequential reads of short-circuited pages took a page buffer")
	}
	if got := c.sc.reads.Load(); got != int64(reads) {
		t.Errorf("%d short-circuit reads for %d sequential reads; want one each, into the caller's buffer", got, reads)
	}

	// One more sequential read while another holds the file's page
	// buffer: it does not wait.
	f.pageMu.Lock()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, piece)
		_, err := f.ReadAt(ctx, buf, testPageSize-piece)
		if err == nil && !bytes.Equal(buf, n.data[testPageSize-piece:testPageSize]) {
			err = errors.New("bytes differ")
		}
		done <- err
	}()
	select {
	case err := <-done:
		f.pageMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		f.pageMu.Unlock()
		t.Fatal("a short-circuited sequential read waited for the file's page buffer")
	}
}

// A client whose socket is gone, or on another host, reads over gRPC.
func TestShortCircuitFallsBackWithoutSocket(t *testing.T) {
	n := startSCNode(t, 2*testPageSize, 0)
	n.warm(t)
	os.Remove(cachenode.ShortCircuitSocket(n.member.Socket))
	rpcs := n.readRPCs.Load()
	c := n.client(t, true)
	check(t, c, n.data)
	if n.readRPCs.Load() == rpcs || c.sc.reads.Load() != 0 {
		t.Fatalf("socket removed: %d gRPC reads, %d short-circuited; want some and none", n.readRPCs.Load()-rpcs, c.sc.reads.Load())
	}
}

// A byte flipped in a page file on disk: the client's checksum catches
// it, the read goes over gRPC and returns the file's bytes.
func TestShortCircuitCorruptBlockFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory int64
	}{{"memory and disk", 1 << 30}, {"disk only", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startSCNode(t, 3*testPageSize, tc.memory)
			n.warm(t)
			n.corruptPage1(t)

			c := n.client(t, true)
			readPageFiles(c, n) // memory reads: TestShortCircuitMemoryReads
			check(t, c, n.data)
			if c.sc.corrupt.Load() == 0 {
				t.Errorf("the client found no corrupt block")
			}
			if tc.memory == 0 && n.store.Stats().CorruptBlocks == 0 {
				t.Errorf("the node's read did not drop the corrupt block")
			}
			if c.sc.reads.Load() == 0 {
				t.Errorf("no read was short-circuited")
			}
		})
	}
}

// Pages the node evicts after granting them: the client's descriptors
// still read the right bytes (or it falls back), and a new version of
// the file is never read through the old version's descriptors.
func TestShortCircuitEvictedPagesAndNewVersion(t *testing.T) {
	n := startSCNode(t, 3*testPageSize, 1<<30)
	n.warm(t)
	c := n.client(t, true)
	readPageFiles(c, n)
	check(t, c, n.data)
	reads := c.sc.reads.Load()
	if p, _ := n.store.Evict(func(cachenode.PageInfo) bool { return true }); p != 3 {
		t.Fatalf("evicted %d pages; want 3", p)
	}
	check(t, c, n.data)
	if c.sc.reads.Load() == reads {
		t.Errorf("no read of evicted pages went through the descriptors held")
	}

	// A new version of the same size: other bytes, same page lengths.
	next := randomBytes(len(n.data), 2)
	tmp := filepath.Join(n.lakeDir, "f.new")
	if err := os.WriteFile(tmp, next, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.lakeDir, "f")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Sync(context.Background(), "/lake/a/f"); err != nil {
		t.Fatal(err)
	}
	check(t, c, next)
	n.warm(t) // the new version's pages, on disk now
	check(t, n.client(t, true), next)
}

// The client keeps at most scMaxGrants page descriptors open, and closes
// them all on Close.
func TestShortCircuitBoundsDescriptors(t *testing.T) {
	const pageSize, pages = 32 << 10, scMaxGrants + 64
	n := startSCNodePages(t, pages*pageSize, 0, pageSize)
	n.warm(t)
	fds := func() int {
		des, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd:", err)
		}
		return len(des)
	}
	before := fds()
	c := n.client(t, true)
	check(t, c, n.data)
	if g := n.sc.Stats().Grants; g < pages {
		t.Fatalf("node granted %d descriptors for %d pages", g, pages)
	}
	// Both ends of every connection are in this process.
	const conns = 16
	if open := fds() - before; open > scMaxGrants+conns {
		t.Fatalf("%d descriptors open after reading %d pages; want at most %d grants (and a few connections)", open, pages, scMaxGrants)
	}
	c.Close()
	if open := fds() - before; open > conns {
		t.Fatalf("%d descriptors open after Close", open)
	}
}

// BenchmarkWarmReadShortCircuit reads a warm 64 MiB file from a node with
// memory and disk tiers on the client's host, through short-circuit page
// descriptors and through gRPC over the node's Unix socket: sequentially
// in 1 MiB reads, and in random 4 KiB reads.
//
//	go test ./router -run '^$' -bench BenchmarkWarmReadShortCircuit
func BenchmarkWarmReadShortCircuit(b *testing.B) {
	const size = 64 << 20
	n := startSCNode(b, size, 1<<30)
	n.warm(b)
	ctx := context.Background()
	for _, path := range []struct {
		name string
		sc   bool
	}{{"short-circuit", true}, {"grpc-socket", false}} {
		c := n.client(b, path.sc)
		buf := make([]byte, 1<<20)
		if err := readFile(ctx, c, "/lake/a/f", buf, io.Discard); err != nil { // warm the client side too
			b.Fatal(err)
		}
		b.Run("seq/"+path.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := readFile(ctx, c, "/lake/a/f", buf, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("rand4k/"+path.name, func(b *testing.B) {
			f, err := c.Open(ctx, "/lake/a/f")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(1, 2))
			p := make([]byte, 4<<10)
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				off := r.Int64N(size/int64(len(p))) * int64(len(p))
				if _, err := f.ReadAt(ctx, p, off); err != nil {
					b.Fatal(err)
				}
			}
		})
		if path.sc && c.sc.reads.Load() == 0 {
			b.Fatal("no read was short-circuited")
		}
	}
}

// corruptPage1 flips a byte of block 3 of page 1's file on the node's disk.
func (n *scNode) corruptPage1(t *testing.T) {
	t.Helper()
	pages, _ := filepath.Glob(filepath.Join(n.cacheDir, "pages", "*", "*-1.page"))
	if len(pages) != 1 {
		t.Fatalf("page files of page 1: %v", pages)
	}
	pf, err := os.OpenFile(pages[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	b := make([]byte, 1)
	const at = 100000 // block 3 of the page
	pf.ReadAt(b, at)
	b[0] ^= 0xff
	if _, err := pf.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestReadGrantedChecksEveryBlock reads a page file in the pieces
// readGranted checks at a time: a block flipped on disk past the first
// piece fails the read that covers it, by number, and reads that do not
// cover it return the right bytes.
func TestReadGrantedChecksEveryBlock(t *testing.T) {
	const bs = 64 << 10
	data := make([]byte, 4<<20+1000) // the last block is short
	for i := range data {
		data[i] = byte(i * 7)
	}
	nb := (int64(len(data)) + bs - 1) / bs
	dp := cachenode.DiskPage{Length: int64(len(data)), BlockSize: bs, Present: make([]bool, nb), CRCs: make([]uint32, nb)}
	for b := int64(0); b < nb; b++ {
		dp.Present[b] = true
		dp.CRCs[b] = cachenode.BlockCRC(data[b*bs : min((b+1)*bs, int64(len(data)))])
	}
	const bad = cachenode.CheckRun/bs + 3 // in the second piece
	onDisk := bytes.Clone(data)
	onDisk[bad*bs+17] ^= 1
	path := filepath.Join(t.TempDir(), "page")
	if err := os.WriteFile(path, onDisk, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	buf := make([]byte, len(data))
	err = readGranted(f, dp, 0, buf)
	if !errors.Is(err, errBlockCRC) || !strings.Contains(err.Error(), fmt.Sprintf("block %d:", bad)) {
		t.Fatalf("whole page read = %v, want block %d's checksum error", err, bad)
	}
	for _, r := range [][2]int64{{0, bad * bs}, {(bad + 1) * bs, int64(len(data))}, {100, bad*bs - 100}, {(bad+1)*bs + 5, int64(len(data)) - 3}} {
		got := make([]byte, r[1]-r[0])
		if err := readGranted(f, dp, r[0], got); err != nil || !bytes.Equal(got, data[r[0]:r[1]]) {
			t.Fatalf("read [%d,%d) = %v, equal %v", r[0], r[1], err, bytes.Equal(got, data[r[0]:r[1]]))
		}
	}
}

// A fill's crossing that a short-circuit read got but could not use (it
// then failed) is reported by the read of the page that gets the bytes,
// once, unless that read reports a crossing of its own.
func TestFileKeepsAFillsCrossingForTheReadThatGetsTheBytes(t *testing.T) {
	f := &File{}
	crossing := &nodepb.PageFetch{Page: 2, Tier: "remote", Region: "far", Lines: []string{"far->here"}, Crossed: 4096, Bytes: 4096}
	f.keepCrossing(2, crossing)
	f.keepCrossing(3, &nodepb.PageFetch{Page: 3, Tier: "lake"}) // no line crossed: nothing to keep
	if f.kept.Load() != 1 {
		t.Fatalf("%d kept; want the crossing only", f.kept.Load())
	}
	disk := &nodepb.PageFetch{Page: 2, Tier: "disk", Bytes: 100}
	if got := f.withCrossing(1, disk); got != disk {
		t.Fatalf("another page's read reports %v", got)
	}
	own := &nodepb.PageFetch{Page: 2, Tier: "remote", Region: "other", Bytes: 100}
	if got := f.withCrossing(2, own); got != own {
		t.Fatalf("a read with its own crossing reports %v", got)
	}
	if got := f.withCrossing(2, disk); got.GetRegion() != "far" || got.GetCrossed() != 4096 || got.GetBytes() != 100 || got.GetTier() != "remote" {
		t.Fatalf("the read that gets the bytes reports %v; want the fill's crossing, its own 100 bytes", got)
	}
	if got := f.withCrossing(2, disk); got != disk || f.kept.Load() != 0 {
		t.Fatalf("a second read reports %v (%d kept); want its own report", got, f.kept.Load())
	}
}

// A client on a node's host stats on the node's short-circuit socket, not
// over gRPC, and gets what gRPC would answer: the entry, or the same
// error. A node that does not answer stats there is asked over gRPC, and
// after its first refusal not asked there again.
func TestShortCircuitStat(t *testing.T) {
	n := startSCNode(t, testPageSize, 1<<30)
	ctx := context.Background()
	sc, grpcOnly := n.client(t, true), n.client(t, false)
	for _, p := range []string{"/lake/a/f", "/lake", "/lake/a/missing", "/elsewhere/x"} {
		want, wantErr := grpcOnly.Stat(ctx, p)
		got, err := sc.Stat(ctx, p)
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("stat %s: %+v, %v; gRPC answers %+v, %v", p, got, err, want, wantErr)
		}
		if wantErr != nil && errors.Is(wantErr, ufs.ErrNotFound) != errors.Is(err, ufs.ErrNotFound) {
			t.Errorf("stat %s: %v is not the same kind of error as gRPC's %v", p, err, wantErr)
		}
	}
	if _, err := sc.Stat(ctx, "/lake/a/missing"); !errors.Is(err, ufs.ErrNotFound) {
		t.Errorf("stat of a missing file: %v; want ufs.ErrNotFound", err)
	}
	// With the file's attrs (an S3 GET's or HEAD's).
	if _, err := grpcOnly.PutAttrs(ctx, "/lake/a/typed", strings.NewReader("{}"), ufs.Attrs{"content-type": "application/json", "x-amz-meta-team": "ml"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/lake/a/typed", "/lake/a/f", "/lake", "/lake/a/missing"} {
		want, wantAttrs, wantErr := grpcOnly.StatAttrs(ctx, p)
		got, attrs, err := sc.StatAttrs(ctx, p)
		if fmt.Sprint(got, attrs, err) != fmt.Sprint(want, wantAttrs, wantErr) {
			t.Errorf("stat with attrs %s: %+v %v, %v; gRPC answers %+v %v, %v", p, got, attrs, err, want, wantAttrs, wantErr)
		}
	}
	if _, attrs, _ := sc.StatAttrs(ctx, "/lake/a/typed"); attrs["x-amz-meta-team"] != "ml" {
		t.Errorf("attrs of a file put with them: %v", attrs)
	}
	if got := n.statRPCs.Load(); got != 8 {
		t.Errorf("the node answered %d gRPC stats; want only the gRPC-only client's 8", got)
	}
	if got := n.sc.Stats().Stats; got != 10 {
		t.Errorf("the short-circuit socket answered %d stats; want 10", got)
	}

	// A socket that does not answer (a node serving its most
	// connections): the stat is asked over gRPC after an ask's 2 s.
	muted := startSCNode(t, testPageSize, 1<<30)
	muted.muteShortCircuit(t)
	start := time.Now()
	if e, err := muted.client(t, true).Stat(ctx, "/lake/a/f"); err != nil || e.Size != int64(len(muted.data)) || muted.statRPCs.Load() != 1 {
		t.Fatalf("stat through a socket that does not answer: %+v, %v, %d gRPC stats", e, err, muted.statRPCs.Load())
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("stat through a socket that does not answer took %v; want the 2 s an ask may take, then gRPC", took)
	}

	n.restartShortCircuit(t, func(cfg *cachenode.ShortCircuitConfig) { cfg.Stat = nil })
	old := n.client(t, true)
	for range 2 {
		if e, err := old.Stat(ctx, "/lake/a/f"); err != nil || e.Size != int64(len(n.data)) {
			t.Fatalf("stat through a node that does not answer stats on its socket: %+v, %v", e, err)
		}
	}
	if st := n.sc.Stats(); st.Errors != 1 || n.statRPCs.Load() != 10 {
		t.Errorf("%d refusals, %d gRPC stats; want the socket asked once (1 refusal), both stats over gRPC (10 in all)", st.Errors, n.statRPCs.Load())
	}
}
