package router

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// countingListener counts the connections a listener accepted: which of a
// node's two listeners a client used is checked below the client's code.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// socketNode is one in-process cache node serving gRPC on a loopback TCP
// port and a Unix socket, over a file:// lake holding /lake/a/f.
type socketNode struct {
	tcp, unix *countingListener
	member    region.Member // Host "this-host", Socket the node's socket
	topo      *federation.Topology
	data      []byte
}

func startSocketNode(t testing.TB, size int) *socketNode {
	t.Helper()
	lakeDir := t.TempDir()
	data := bytes.Repeat([]byte("lakemesh socket "), size/16)
	if err := os.WriteFile(filepath.Join(lakeDir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	topo, err := federation.Parse("test topology", fmt.Appendf(nil,
		"mesh: t\nregions:\n  - name: r\nmounts:\n  - path: /lake/a\n    ufs: file://%s\n    region: r\n    metadata_ttl: 1h\n",
		filepath.ToSlash(lakeDir)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fs, err := ufs.Open(context.Background(), "file://"+filepath.ToSlash(lakeDir))
	if err != nil {
		t.Fatal(err)
	}
	lakes := cachenode.NewLakes([]cachenode.Lake{{Path: "/lake/a", FS: fs, MetadataTTL: topo.Mounts[0].MetadataTTL, Region: "r"}})
	store, err := cachenode.OpenStore(cachenode.StoreConfig{MemoryBytes: 1 << 30, PageSize: testPageSize, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cache := cachenode.NewCache(store, lakes, cachenode.CacheConfig{Logger: log})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "node.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	n := &socketNode{
		tcp:    &countingListener{Listener: tcp},
		unix:   &countingListener{Listener: unix},
		member: region.Member{ID: "n1", Region: "r", Addr: tcp.Addr().String(), Host: "this-host", Socket: sock},
		topo:   topo,
		data:   data,
	}
	srv := grpc.NewServer()
	nodepb.RegisterNodeServer(srv, cachenode.NewNode(cachenode.NodeConfig{
		ID: "n1", Region: "r", Addr: n.member.Addr, Lakes: lakes, Store: store, Cache: cache, Logger: log,
	}))
	go srv.Serve(n.tcp)
	go srv.Serve(n.unix)
	t.Cleanup(func() { srv.Stop(); cache.Close(); store.Close(); fs.Close() })
	return n
}

// client returns a client on host that sees member as the region.
func (n *socketNode) client(t testing.TB, host string, member region.Member) *Client {
	t.Helper()
	c, err := New(Config{
		Topology: n.topo, Region: "r", Members: region.NewStatic(member), PageSize: testPageSize,
		Host: host, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// read reads /lake/a/f through a client on host that sees member, and
// checks the bytes.
func (n *socketNode) read(t *testing.T, host string, member region.Member) {
	t.Helper()
	c := n.client(t, host, member)
	var got bytes.Buffer
	if err := readFile(context.Background(), c, "/lake/a/f", make([]byte, 1<<20), &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), n.data) {
		t.Fatalf("read %d bytes that differ from the file's %d", got.Len(), len(n.data))
	}
}

func TestClientOnMemberHostDialsSocket(t *testing.T) {
	n := startSocketNode(t, 640<<10)
	n.read(t, "this-host", n.member)
	if u, tcp := n.unix.accepted.Load(), n.tcp.accepted.Load(); u == 0 || tcp != 0 {
		t.Fatalf("client on the node's host: %d connections on the socket, %d on TCP; want some and none", u, tcp)
	}
}

func TestClientOnOtherHostDialsTCP(t *testing.T) {
	n := startSocketNode(t, 640<<10)
	n.read(t, "other-host", n.member)
	if u, tcp := n.unix.accepted.Load(), n.tcp.accepted.Load(); u != 0 || tcp == 0 {
		t.Fatalf("client on another host: %d connections on the socket, %d on TCP; want none and some", u, tcp)
	}
}

func TestClientFallsBackToTCPWithoutSocket(t *testing.T) {
	n := startSocketNode(t, 640<<10)
	gone := n.member
	gone.Socket = filepath.Join(t.TempDir(), "gone.sock")
	n.read(t, "this-host", gone)
	if u, tcp := n.unix.accepted.Load(), n.tcp.accepted.Load(); u != 0 || tcp == 0 {
		t.Fatalf("socket missing: %d connections on the socket, %d on TCP; want none and some", u, tcp)
	}
}

func TestOldMemberDialsTCP(t *testing.T) {
	n := startSocketNode(t, 640<<10)
	old := region.Member{ID: n.member.ID, Region: "r", Addr: n.member.Addr}
	n.read(t, "", old)
	if u, tcp := n.unix.accepted.Load(), n.tcp.accepted.Load(); u != 0 || tcp == 0 {
		t.Fatalf("member without a socket: %d connections on the socket, %d on TCP; want none and some", u, tcp)
	}
}

// BenchmarkWarmReadSocket reads a warm 64 MiB file from one node through
// the node's Unix socket (a client on its host) and through loopback TCP
// (a client that is not), in 1 MiB reads.
//
//	go test ./router -run '^$' -bench BenchmarkWarmReadSocket
func BenchmarkWarmReadSocket(b *testing.B) {
	const size = 64 << 20
	n := startSocketNode(b, size)
	for _, tc := range []struct{ name, host string }{{"unix", "this-host"}, {"tcp", "other-host"}} {
		b.Run(tc.name, func(b *testing.B) {
			c := n.client(b, tc.host, n.member)
			buf := make([]byte, 1<<20)
			ctx := context.Background()
			if err := readFile(ctx, c, "/lake/a/f", buf, io.Discard); err != nil { // warm
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				if err := readFile(ctx, c, "/lake/a/f", buf, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
