package cachenode

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// startTestNode serves one node over a file:// lake on a loopback port.
func startTestNode(t *testing.T, files map[string][]byte) *grpc.ClientConn {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := ufs.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	lakes := NewLakes([]Lake{{Path: "/lake/a", FS: fs}})
	store, err := OpenStore(StoreConfig{Dir: t.TempDir(), MemoryBytes: 64 << 20, DiskBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cache := NewCache(store, lakes, CacheConfig{})
	t.Cleanup(func() { cache.Close(); store.Close(); fs.Close() })
	return serveTestNode(t, NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: lakes, Store: store, Cache: cache}))
}

// serveTestNode serves n on a loopback port and dials it; both end with
// the test.
func serveTestNode(t *testing.T, n *Node) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer()
	nodepb.RegisterNodeServer(srv, n)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return cc
}

// Both wire forms of Read (protobuf chunks and raw page bytes) return the
// exact range and the fetch report.
func TestNodeReadBothWireForms(t *testing.T) {
	data := make([]byte, 9<<20+123)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	cc := startTestNode(t, map[string][]byte{"d/f.bin": data})
	nc := nodepb.NewNodeClient(cc)
	ctx := context.Background()
	st, err := nc.Stat(ctx, &nodepb.StatRequest{Path: "/lake/a/d/f.bin"})
	if err != nil {
		t.Fatal(err)
	}
	ref := &nodepb.FileRef{Path: "/lake/a/d/f.bin", Version: st.GetEntry().GetVersion(), Size: st.GetEntry().GetSize()}
	off, n := int64(3<<20+17), int64(5<<20)

	// Protobuf chunks, through the generated stub.
	stream, err := nc.Read(ctx, &nodepb.ReadRequest{File: ref, Offset: off, Length: n})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var last *nodepb.ReadChunk
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.GetData()...)
		last = c
	}
	if !bytes.Equal(got, data[off:off+n]) {
		t.Fatal("protobuf read returned other bytes")
	}
	if last.GetNode() != "n1" || len(last.GetFetches()) != 3 { // pages 0, 1 and 2
		t.Fatalf("last chunk reports node %q and %d page fetches, want n1 and 3", last.GetNode(), len(last.GetFetches()))
	}

	// Raw page bytes, as the router reads them.
	rs, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Read", ServerStreams: true}, nodepb.Node_Read_FullMethodName, grpc.CallContentSubtype(RawCodecName))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.SendMsg(&nodepb.ReadRequest{File: ref, Offset: off, Length: n, Raw: true}); err != nil {
		t.Fatal(err)
	}
	rs.CloseSend()
	sink := &RawSink{Dst: make([]byte, n)}
	for {
		err := rs.RecvMsg(sink)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if sink.N != int(n) || !bytes.Equal(sink.Dst, data[off:off+n]) {
		t.Fatalf("raw read returned %d bytes, other than the range", sink.N)
	}
	if sink.Meta.GetNode() != "n1" {
		t.Fatalf("raw read lost the metadata: %v", sink.Meta)
	}

	// Past the end: clipped, not an error.
	stream, err = nc.Read(ctx, &nodepb.ReadRequest{File: ref, Offset: ref.Size - 10, Length: 100})
	if err != nil {
		t.Fatal(err)
	}
	c, err := stream.Recv()
	if err != nil || !bytes.Equal(c.GetData(), data[len(data)-10:]) {
		t.Fatalf("read across the end: %v, %d bytes", err, len(c.GetData()))
	}
}

// Namespace directories above the mounts are listed, and paths outside
// every mount or climbing out of one are refused with the right errors.
func TestNodeNamespaceAndBadPaths(t *testing.T) {
	cc := startTestNode(t, map[string][]byte{"x.txt": []byte("x")})
	nc := nodepb.NewNodeClient(cc)
	ctx := context.Background()
	l, err := nc.List(ctx, &nodepb.ListRequest{Path: "/lake"})
	if err != nil || len(l.GetEntries()) != 1 || l.GetEntries()[0].GetPath() != "/lake/a" || !l.GetEntries()[0].GetDir() {
		t.Fatalf("list /lake: %v %v", err, l)
	}
	for path, want := range map[string]error{
		"/nowhere/x":      ErrNoMount,
		"/lake/a/../../x": ufs.ErrInvalidPath,
		"/lake/a/missing": ufs.ErrNotFound,
		"relative/lake/a": ufs.ErrInvalidPath,
	} {
		_, err := nc.Stat(ctx, &nodepb.StatRequest{Path: path})
		if !errors.Is(FromStatus(err), want) {
			t.Errorf("stat %s: %v, want %v", path, err, want)
		}
	}
	// Invalidating (lakemesh sync): a mount, a path in it and the
	// directories above the mounts are fine; a path beside them is no
	// mount's, and said so.
	for _, path := range []string{"/", "/lake", "/lake/", "/lake/a", "/lake/a/x.txt"} {
		if _, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: path}); err != nil {
			t.Errorf("invalidate %s: %v", path, err)
		}
	}
	for _, path := range []string{"/lake/b", "/nowhere", "/lake/ab"} {
		_, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: path})
		if !errors.Is(FromStatus(err), ErrNoMount) || !strings.Contains(err.Error(), path) {
			t.Errorf("invalidate %s: %v, want %v naming the path", path, err, ErrNoMount)
		}
	}
}
