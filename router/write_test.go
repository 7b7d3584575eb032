package router

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// writeNode is one in-process cache node on a loopback port over a
// file:// lake mounted at /lake/a, with a write-back journal (in
// journalDir) for the paths under /lake/a/back; its gRPC server has the
// node daemon's window and buffer sizes.
type writeNode struct {
	addr    string
	lakeDir string
	journal *cachenode.Journal
	client  *Client
}

func startWriteNode(t testing.TB, journalDir string) *writeNode {
	t.Helper()
	n := &writeNode{lakeDir: t.TempDir()}
	topo, err := federation.Parse("test topology", fmt.Appendf(nil,
		"mesh: t\nregions:\n  - name: r\nmounts:\n  - path: /lake/a\n    ufs: file://%s\n    region: r\n    metadata_ttl: 1h\n",
		filepath.ToSlash(n.lakeDir)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fs, err := ufs.Open(context.Background(), "file://"+filepath.ToSlash(n.lakeDir))
	if err != nil {
		t.Fatal(err)
	}
	lakes := cachenode.NewLakes([]cachenode.Lake{{Path: "/lake/a", FS: fs, MetadataTTL: time.Hour, Region: "r"}})
	store, err := cachenode.OpenStore(cachenode.StoreConfig{MemoryBytes: 64 << 20, PageSize: testPageSize, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cache := cachenode.NewCache(store, lakes, cachenode.CacheConfig{Logger: log})
	if n.journal, err = cachenode.OpenJournal(journalDir, "n1", log); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.InitialWindowSize(4<<20), grpc.InitialConnWindowSize(16<<20),
		grpc.WriteBufferSize(1<<20), grpc.ReadBufferSize(1<<20), experimental.BufferPool(cachenode.NewRawBufferPool()))
	nodepb.RegisterNodeServer(srv, cachenode.NewNode(cachenode.NodeConfig{
		ID: "n1", Region: "r", Addr: lis.Addr().String(), Lakes: lakes, Store: store, Cache: cache, Logger: log,
		Journal: n.journal, WriteBack: func(p string) bool { return filepath.Dir(p) == "/lake/a/back" },
	}))
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Stop(); cache.Close(); store.Close(); fs.Close() })
	n.addr = lis.Addr().String()
	c, err := New(Config{Topology: topo, Region: "r", Members: region.NewStatic(region.Member{ID: "n1", Region: "r", Addr: lis.Addr().String()}),
		PageSize: testPageSize, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n.client = c
	return n
}

// repeatReader reads b again and again, left bytes in all: a writer's
// bytes that cost nothing to produce.
type repeatReader struct {
	b    []byte
	off  int
	left int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.left)], r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	r.left -= n
	return n, nil
}

// lendingReader is a repeatReader that lends Put its bytes
// (ChunkReader), as the FUSE mount's window does, in chunks of at most
// piece bytes if piece is set (with no capacity past them); released
// counts the chunks given back.
type lendingReader struct {
	repeatReader
	piece          int
	lent, released atomic.Int64
}

func (r *lendingReader) NextChunk(max int) ([]byte, func(), error) {
	if r.left == 0 {
		return nil, nil, io.EOF
	}
	if r.piece > 0 {
		max = min(max, r.piece)
	}
	n := min(max, r.left, len(r.b)-r.off)
	b := r.b[r.off : r.off+n : r.off+n]
	r.off = (r.off + n) % len(r.b)
	r.left -= n
	r.lent.Add(1)
	return b, func() { r.released.Add(1) }, nil
}

// failingReader gives its repeatReader's bytes, then fails.
type failingReader struct {
	repeatReader
}

var errInputBroke = errors.New("the input broke off")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errInputBroke
	}
	return r.repeatReader.Read(p)
}

// Put stores exactly the input's bytes, in write-through (the lake) and
// write-back mode (the journal), from a plain reader that returns short
// reads and from inputs that lend their bytes in large and in small
// chunks; every lent chunk is given back. An input that breaks off
// leaves nothing.
func TestPutStoresTheBytes(t *testing.T) {
	n := startWriteNode(t, t.TempDir())
	ctx := context.Background()
	data := randomBytes(5<<20+4321, 2)
	want := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	inputs := []struct {
		name    string
		in      func() io.Reader
		lending *lendingReader
	}{
		{name: "reader", in: func() io.Reader { return iotest.HalfReader(&repeatReader{b: data, left: len(data)}) }},
		{name: "lent", lending: &lendingReader{}},
		{name: "lent-small", lending: &lendingReader{piece: 700}}, // too small for the transport to give back: copied
	}
	for _, in := range inputs {
		for _, dir := range []string{"through", "back"} {
			p := fmt.Sprintf("/lake/a/%s/%s.bin", dir, in.name)
			var r io.Reader
			if l := in.lending; l != nil {
				*l = lendingReader{repeatReader: repeatReader{b: data, left: len(data)}, piece: l.piece}
				r = l
			} else {
				r = in.in()
			}
			e, err := n.client.Put(ctx, p, r)
			if err != nil {
				t.Fatalf("put %s: %v", p, err)
			}
			var got []byte
			if dir == "through" {
				got, err = os.ReadFile(filepath.Join(n.lakeDir, "through", in.name+".bin"))
			} else {
				je, ok := n.journal.Pending(p)
				if !ok {
					t.Fatalf("put %s: not in the journal", p)
				}
				f, err := n.journal.OpenData(je)
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(f)
				f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Size != int64(len(data)) || crc32.Checksum(got, crc32.MakeTable(crc32.Castagnoli)) != want {
				t.Errorf("put %s: entry of %d bytes, %d stored with another CRC-32C", p, e.Size, len(got))
			}
			if l := in.lending; l != nil {
				deadline := time.Now().Add(5 * time.Second)
				for l.released.Load() != l.lent.Load() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond) // the transport gives buffers back once they are on the wire
				}
				if got, lent := l.released.Load(), l.lent.Load(); got != lent || lent == 0 {
					t.Errorf("put %s: %d of %d lent chunks given back", p, got, lent)
				}
			}
		}
	}

	_, err := n.client.Put(ctx, "/lake/a/through/broken.bin", &failingReader{repeatReader{b: data, left: 3<<20 + 5}})
	if !errors.Is(err, errInputBroke) {
		t.Fatalf("put from a broken input: %v, want its error", err)
	}
	if _, err := os.Stat(filepath.Join(n.lakeDir, "through", "broken.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a put from a broken input left a file (%v)", err)
	}
}

// cpuTime is the CPU time this process has used, user and system: the
// client's and the node's together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// putProto writes a file as Put did before raw chunks: each 1 MiB read
// into one buffer and sent as a protobuf WriteChunk (marshalled, and
// decoded into a fresh message by the node). The benchmark's baseline.
func putProto(ctx context.Context, c *Client, addr, p string, r io.Reader) (Entry, error) {
	nc, err := c.node(addr)
	if err != nil {
		return Entry{}, err
	}
	stream, err := nc.Write(ctx)
	if err != nil {
		return Entry{}, err
	}
	if err := stream.Send(&nodepb.WriteChunk{Path: p}); err != nil {
		return Entry{}, err
	}
	buf := make([]byte, writeChunk)
	for {
		n, rerr := fill(r, buf)
		if n > 0 {
			if err := stream.Send(&nodepb.WriteChunk{Data: buf[:n]}); err != nil {
				return Entry{}, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Entry{}, rerr
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		return Entry{}, err
	}
	return entryFrom(reply.GetEntry()), nil
}

// BenchmarkPut writes one 256 MiB file through a node over loopback gRPC,
// in write-back mode as a checkpoint is: the node acknowledges it once
// its journal has the bytes synced. The journal is in a temporary
// directory ("disk") or in /dev/shm ("shm", where what is left is mostly
// the stream's own cost). The file goes as protobuf chunks ("proto", as
// Put sent it before raw chunks), as raw chunks read from a plain reader
// into pooled buffers ("raw"), or as raw chunks lent by the input
// ("lent", as the FUSE mount's window does). One op is one file.
//
//	go test ./router -run '^$' -bench BenchmarkPut -benchtime 5x
func BenchmarkPut(b *testing.B) {
	const size = 256 << 20
	data := randomBytes(3<<20+7, 1) // so pieces do not repeat in step with the messages
	for _, journal := range []string{"disk", "shm"} {
		b.Run(journal, func(b *testing.B) {
			dir := b.TempDir()
			if journal == "shm" {
				var err error
				if dir, err = os.MkdirTemp("/dev/shm", "lakemesh-put-bench-"); err != nil {
					b.Skipf("no /dev/shm: %v", err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
			}
			n := startWriteNode(b, dir)
			ctx := context.Background()
			for _, form := range []string{"proto", "raw", "lent"} {
				b.Run(form, func(b *testing.B) {
					b.SetBytes(size)
					cpu := cpuTime()
					for b.Loop() {
						const p = "/lake/a/back/ckpt.bin"
						in := repeatReader{b: data, left: size}
						var e Entry
						var err error
						switch form {
						case "proto":
							e, err = putProto(ctx, n.client, n.addr, p, &in)
						case "raw":
							e, err = n.client.Put(ctx, p, &in)
						case "lent":
							e, err = n.client.Put(ctx, p, &lendingReader{repeatReader: in})
						}
						if err != nil {
							b.Fatal(err)
						}
						if e.Size != size {
							b.Fatalf("put %d bytes, the node has %d", size, e.Size)
						}
						n.journal.Forget(ctx, p) // its bytes leave the journal's disk
					}
					b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N)*(1<<30)/size, "cpu-s/GiB")
				})
			}
		})
	}
}

// A file written under directories that did not exist shows in the
// listings of every ancestor at once, though they were cached before the
// write (the mount's metadata TTL here is an hour); so does the going of
// those directories with the file, on a lake where they go (S3).
func TestWriteShowsInEveryAncestorListing(t *testing.T) {
	n := startWriteNode(t, t.TempDir())
	ctx := context.Background()
	has := func(dir, p string) bool {
		t.Helper()
		entries, _, err := n.client.List(ctx, dir, "", 100)
		if err != nil {
			t.Fatalf("list %s: %v", dir, err)
		}
		for _, e := range entries {
			if e.Path == p {
				return true
			}
		}
		return false
	}
	if has("/lake/a", "/lake/a/x") {
		t.Fatal("/lake/a lists x before it exists")
	}
	if _, err := n.client.Stat(ctx, "/lake/a/x"); !errors.Is(err, ufs.ErrNotFound) {
		t.Fatalf("stat of /lake/a/x before it exists: %v", err)
	}
	if _, err := n.client.Put(ctx, "/lake/a/x/y/f", &repeatReader{b: []byte("new"), left: 3}); err != nil {
		t.Fatal(err)
	}
	if !has("/lake/a", "/lake/a/x") {
		t.Error("/lake/a does not list x after a file was written in x/y")
	}
	if e, err := n.client.Stat(ctx, "/lake/a/x"); err != nil || !e.IsDir {
		t.Errorf("stat of /lake/a/x after the write: %+v, %v", e, err)
	}
}
