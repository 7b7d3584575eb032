package cachenode

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// countingPool is a mem.BufferPool that counts the buffers given back.
type countingPool struct{ put atomic.Int64 }

func (p *countingPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.put.Add(1) }

// frames splits a message into buffers of n bytes from pool, as the
// transport hands a message over in the DATA frames it read.
func frames(msg []byte, n int, pool mem.BufferPool) mem.BufferSlice {
	var out mem.BufferSlice
	for off := 0; off < len(msg); off += n {
		b := slices.Clone(msg[off:min(off+n, len(msg))])
		out = append(out, mem.NewBuffer(&b, pool))
	}
	return out
}

// drainAll reads what a sink holds in pieces of n bytes.
func drainAll(s *writeSink, n int) []byte {
	var out []byte
	p := make([]byte, n)
	for {
		k := s.drain(p)
		if k == 0 {
			return out
		}
		out = append(out, p[:k]...)
	}
}

func TestRawWriteCodec(t *testing.T) {
	c := rawCodec{}
	data := journalBytes(200_000, 1)

	// The data buffers go to the transport as they are, behind a tag.
	buf := slices.Clone(data)
	wire, err := c.Marshal(&RawWrite{Data: mem.BufferSlice{mem.SliceBuffer(buf)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(wire) != 2 || &wire[1].ReadOnlyData()[0] != &buf[0] {
		t.Fatal("the data was copied, not sent from its buffer")
	}
	msg := wire.Materialize()
	if !bytes.Equal(msg, append([]byte{0}, data...)) {
		t.Fatal("a raw write chunk on the wire is not the tag and the data")
	}

	// The bytes land in dst; what does not fit stays in the transport's
	// buffers until drained, which gives each back once read.
	for _, dst := range []int{0, 1, 16<<10 - 1, 100_000, len(data), len(data) + 10} {
		pool := &countingPool{}
		in := frames(msg, 16<<10, pool)
		s := &writeSink{dst: make([]byte, dst)}
		if err := c.Unmarshal(in, s); err != nil {
			t.Fatal(err)
		}
		in.Free()     // the transport's own references
		consumed := 0 // frames all of whose bytes went to dst
		for i := range in {
			if min((i+1)*16<<10, len(msg)) <= 1+min(dst, len(data)) {
				consumed++
			}
		}
		if p := pool.put.Load(); p != int64(consumed) {
			t.Fatalf("dst of %d: %d buffers given back before the drain, want the %d read whole", dst, p, consumed)
		}
		got := append(s.dst[:s.n:s.n], drainAll(s, 7000)...)
		if s.n != min(dst, len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("dst of %d: %d bytes in dst, %d in all, other than the data", dst, s.n, len(got))
		}
		if p := pool.put.Load(); p != int64(len(in)) {
			t.Fatalf("dst of %d: %d of the %d buffers given back after the drain", dst, p, len(in))
		}
	}

	// A protobuf WriteChunk on a raw call is taken too.
	for _, m := range []*nodepb.WriteChunk{{Data: data}, {Path: "/lake/a/f", Data: data[:5]}, {}} {
		pb, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		s := &writeSink{dst: make([]byte, 1000)}
		if err := c.Unmarshal(frames(pb, 16<<10, nil), s); err != nil {
			t.Fatal(err)
		}
		if got := append(s.dst[:s.n:s.n], drainAll(s, 4096)...); !bytes.Equal(got, m.Data) {
			t.Fatalf("protobuf chunk of %d bytes read as %d other bytes", len(m.Data), len(got))
		}
	}

	// A chunk is not taken before the last one is drained.
	s := &writeSink{dst: make([]byte, 10)}
	if err := c.Unmarshal(frames(msg, 16<<10, nil), s); err != nil {
		t.Fatal(err)
	}
	if err := c.Unmarshal(frames(msg, 16<<10, nil), s); err == nil {
		t.Fatal("a second chunk was taken over the rest of the first")
	}
	s.free()
}

// Receiving a raw chunk allocates nothing, whether its bytes all fit the
// consumer's buffer or some wait in the transport's.
func TestWriteSinkAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	msg := append([]byte{0}, journalBytes(1<<20, 2)...)
	in := frames(msg, 16<<10, nil)
	dst := make([]byte, 1<<20)
	p := make([]byte, 32<<10)
	var s writeSink
	for _, fit := range []int{1 << 20, 300_000} {
		allocs := testing.AllocsPerRun(20, func() {
			s.dst = dst[:fit]
			if err := s.unmarshal(in); err != nil {
				t.Fatal(err)
			}
			for s.drain(p) > 0 {
			}
		})
		if allocs != 0 {
			t.Errorf("a 1 MiB chunk into %d bytes: %.1f allocations", fit, allocs)
		}
	}
}

// writeTestNode is a node over a file:// lake at /lake/a whose writes
// under /lake/a/back go to its write-back journal; it has no page store
// (a write-through seeds nothing).
type writeTestNode struct {
	cc      *grpc.ClientConn
	lakeDir string
	journal *Journal
}

func startWriteTestNode(t *testing.T) *writeTestNode {
	t.Helper()
	n := &writeTestNode{lakeDir: t.TempDir()}
	fs, err := ufs.Open(context.Background(), "file://"+n.lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	if n.journal, err = OpenJournal(t.TempDir(), "n1", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	n.cc = serveTestNode(t, NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: fs}}),
		Journal: n.journal, WriteBack: func(p string) bool { return strings.HasPrefix(p, "/lake/a/back/") }}))
	return n
}

// writeRaw writes data as a raw write stream: the path and the first
// bytes in a protobuf WriteChunk, then raw chunks of piece bytes.
func (n *writeTestNode) writeRaw(t *testing.T, p string, data []byte, piece int) *nodepb.Entry {
	return n.writeRawMixed(t, p, data, piece, -1)
}

// writeRawMixed is writeRaw with the chunk at index protoAt sent as a
// protobuf WriteChunk (a raw call may carry either).
func (n *writeTestNode) writeRawMixed(t *testing.T, p string, data []byte, piece, protoAt int) *nodepb.Entry {
	t.Helper()
	ctx := context.Background()
	s, err := n.cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Write", ClientStreams: true}, nodepb.Node_Write_FullMethodName, grpc.CallContentSubtype(RawCodecName))
	if err != nil {
		t.Fatal(err)
	}
	head := min(1000, len(data))
	if err := s.SendMsg(&nodepb.WriteChunk{Path: p, Data: data[:head]}); err != nil {
		t.Fatal(err)
	}
	for i, off := 0, head; off < len(data); i, off = i+1, off+piece {
		b := data[off:min(off+piece, len(data))]
		var m any = &RawWrite{Data: mem.BufferSlice{mem.SliceBuffer(b)}}
		if i == protoAt {
			m = &nodepb.WriteChunk{Data: b}
		}
		if err := s.SendMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	reply := &nodepb.WriteReply{}
	if err := s.RecvMsg(reply); err != nil {
		t.Fatalf("raw write %s: %v", p, err)
	}
	return reply.GetEntry()
}

// writeProto writes data as a protobuf write stream, in pieces of piece
// bytes, through the generated stub (a client that knows no raw codec).
func (n *writeTestNode) writeProto(t *testing.T, p string, data []byte, piece int) *nodepb.Entry {
	t.Helper()
	w, err := nodepb.NewNodeClient(n.cc).Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Send(&nodepb.WriteChunk{Path: p}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += piece {
		if err := w.Send(&nodepb.WriteChunk{Data: data[off:min(off+piece, len(data))]}); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := w.CloseAndRecv()
	if err != nil {
		t.Fatalf("protobuf write %s: %v", p, err)
	}
	return reply.GetEntry()
}

// A raw write stream and a protobuf one store the same file, into the
// lake (write-through) and into the journal (write-back), whatever the
// sizes of their messages.
func TestNodeWriteBothWireForms(t *testing.T) {
	n := startWriteTestNode(t)
	data := journalBytes(9<<20+123, 3)
	want := crc32.Checksum(data, castagnoli)
	mixed := func(t *testing.T, p string, data []byte, piece int) *nodepb.Entry {
		return n.writeRawMixed(t, p, data, piece, 2)
	}
	for _, tc := range []struct {
		form  string
		write func(*testing.T, string, []byte, int) *nodepb.Entry
		piece int
	}{
		{"raw", n.writeRaw, 1 << 20},
		{"raw", n.writeRaw, 300<<10 + 7},
		{"mixed", mixed, 1 << 20},
		{"proto", n.writeProto, 1 << 20},
		{"proto", n.writeProto, 300<<10 + 7},
	} {
		write := tc.write
		name := func(dir string) string { return fmt.Sprintf("/lake/a/%s/%s-%d", dir, tc.form, tc.piece) }

		e := write(t, name("through"), data, tc.piece)
		got, err := os.ReadFile(filepath.Join(n.lakeDir, strings.TrimPrefix(name("through"), "/lake/a/")))
		if err != nil {
			t.Fatal(err)
		}
		if e.GetSize() != int64(len(data)) || crc32.Checksum(got, castagnoli) != want {
			t.Errorf("%s write-through in pieces of %d: the lake has %d bytes, CRC-32C %08x, want %d, %08x",
				tc.form, tc.piece, len(got), crc32.Checksum(got, castagnoli), len(data), want)
		}

		e = write(t, name("back"), data, tc.piece)
		je, ok := n.journal.Pending(name("back"))
		if !ok || e.GetSize() != int64(len(data)) || je.CRC32C != want {
			t.Fatalf("%s write-back in pieces of %d: journal entry %+v, want %d bytes, CRC-32C %08x", tc.form, tc.piece, je, len(data), want)
		}
		f, err := n.journal.OpenData(je)
		if err != nil {
			t.Fatal(err)
		}
		var back bytes.Buffer
		back.ReadFrom(f)
		f.Close()
		if !bytes.Equal(back.Bytes(), data) {
			t.Errorf("%s write-back in pieces of %d: the journal's data file differs", tc.form, tc.piece)
		}
	}
}

// The node receives a raw write stream without allocating its bytes
// again: the whole process (client, transport and node) allocates a few
// KiB per MiB written, where a protobuf stream allocates every message's
// data (which this checks, so the measure is known to see it).
func TestNodeRawWriteAllocations(t *testing.T) {
	n := startWriteTestNode(t)
	const size = 64 << 20
	data := journalBytes(1<<20, 4)
	allocated := func(write func(*testing.T, string, []byte, int) *nodepb.Entry, p string) float64 {
		big := bytes.Repeat(data, size/len(data))
		write(t, p, big[:8<<20], 1<<20) // connection and buffers warm
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		write(t, p, big, 1<<20)
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / (size >> 20)
	}
	raw := allocated(n.writeRaw, "/lake/a/raw.bin")
	pb := allocated(n.writeProto, "/lake/a/proto.bin")
	t.Logf("bytes allocated per MiB written: raw %.0f, protobuf %.0f", raw, pb)
	if raceEnabled {
		return // the files were written; the race detector's allocations are not the stream's
	}
	if pb < 1<<20 {
		t.Fatalf("a protobuf stream allocated %.0f bytes per MiB; the measure misses its messages", pb)
	}
	if raw > 64<<10 {
		t.Errorf("a raw stream allocated %.0f bytes per MiB written, want at most 64 KiB", raw)
	}
}
