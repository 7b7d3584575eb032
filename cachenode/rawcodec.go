package cachenode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the "proto" codec the raw codec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// RawCodecName is the gRPC content-subtype of read and write streams whose
// file bytes skip protobuf: the sender hands pooled buffers of file bytes
// to the transport without marshalling them, and the receiver copies the
// bytes from the transport's buffers straight into its own buffer. Every
// other message of such a call is plain protobuf.
//
// A raw read chunk (node to client) on the wire is uvarint(len(meta)) |
// meta | data, where meta is a protobuf ReadChunk without its data (the
// fetch reports and the serving node, on the last chunk).
//
// A raw write chunk (client to node, after a protobuf WriteChunk with the
// path) is the byte 0 followed by the data. No protobuf message starts
// with 0 (field number 0 is invalid), so the node tells a raw chunk from
// a protobuf WriteChunk by its first byte and takes either.
const RawCodecName = "lakemesh-raw"

// RawChunk is what the node sends on a raw read stream.
type RawChunk struct {
	Meta *nodepb.ReadChunk // without Data
	Data mem.Buffer        // ownership passes to gRPC, which frees it once sent
}

// RawSink receives raw chunks on the client: their bytes land in
// Dst[N:], and the metadata of the last one that had any in Meta.
type RawSink struct {
	Dst  []byte
	N    int
	Meta *nodepb.ReadChunk
}

type rawCodec struct{}

// Registering a codec is registration by name, like the lake adapters'.
func init() { encoding.RegisterCodecV2(rawCodec{}) }

func (rawCodec) Name() string { return RawCodecName }

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*RawWrite); ok {
		return append(mem.BufferSlice{rawWriteTag}, w.Data...), nil
	}
	c, ok := v.(*RawChunk)
	if !ok {
		return protoCodec().Marshal(v)
	}
	var meta []byte
	if c.Meta != nil {
		var err error
		if meta, err = proto.Marshal(c.Meta); err != nil {
			return nil, fmt.Errorf("marshal read chunk metadata: %w", err)
		}
	}
	head := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(meta)), uint64(len(meta)))
	head = append(head, meta...)
	out := mem.BufferSlice{mem.SliceBuffer(head)}
	if c.Data != nil {
		out = append(out, c.Data)
	}
	return out, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if w, ok := v.(*writeSink); ok {
		return w.unmarshal(data)
	}
	sink, ok := v.(*RawSink)
	if !ok {
		return protoCodec().Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	metaLen, err := binary.ReadUvarint(r)
	if err != nil || metaLen > uint64(r.Remaining()) {
		return fmt.Errorf("raw read chunk: bad header (%v)", err)
	}
	if metaLen > 0 {
		meta := make([]byte, metaLen)
		if _, err := io.ReadFull(r, meta); err != nil {
			return fmt.Errorf("raw read chunk metadata: %w", err)
		}
		m := &nodepb.ReadChunk{}
		if err := proto.Unmarshal(meta, m); err != nil {
			return fmt.Errorf("raw read chunk metadata: %w", err)
		}
		sink.Meta = m
	}
	n := r.Remaining()
	if n > len(sink.Dst)-sink.N {
		return fmt.Errorf("raw read chunk: %d bytes do not fit the %d left of the read", n, len(sink.Dst)-sink.N)
	}
	if _, err := io.ReadFull(r, sink.Dst[sink.N:sink.N+n]); err != nil {
		return fmt.Errorf("raw read chunk data: %w", err)
	}
	sink.N += n
	return nil
}

// RawWrite is a data message of a raw write stream: the client's bytes,
// sent as they are.
type RawWrite struct {
	Data mem.BufferSlice // ownership passes to gRPC, which frees it once sent
}

// rawWriteTag starts a raw write chunk on the wire. A package variable,
// so marshalling a chunk does not allocate its header.
var rawWriteTag mem.Buffer = mem.SliceBuffer{0}

// isRawWrite says whether data is a raw write chunk rather than a
// protobuf WriteChunk.
func isRawWrite(data mem.BufferSlice) bool {
	for _, b := range data {
		if bs := b.ReadOnlyData(); len(bs) > 0 {
			return bs[0] == 0
		}
	}
	return false
}

// rawCall says whether the server stream of ctx is a raw call (content
// subtype RawCodecName): its messages are then unmarshalled by the raw
// codec, which takes a writeSink; the protobuf codec of other calls does
// not.
func rawCall(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, ct := range md.Get("content-type") {
		if sub, ok := strings.CutPrefix(ct, "application/grpc+"); ok && strings.EqualFold(sub, RawCodecName) {
			return true
		}
	}
	return false
}

// writeSink receives the data messages of a write stream on the node.
// The bytes of a raw message go into dst, as many as fit, and the rest
// stay in the transport's buffers (referenced) until drain copies them
// out: a message costs one copy, into the consumer's buffer, and no
// allocation. A protobuf WriteChunk (from a client that sends data that
// way) is decoded and its data copied the same way.
type writeSink struct {
	dst []byte
	n   int // bytes of the last message in dst
	// rest holds what did not fit in dst, each buffer referenced:
	// rest[head:], from byte at of rest[head].
	rest []mem.Buffer
	head int
	at   int
}

func (s *writeSink) unmarshal(data mem.BufferSlice) error {
	if s.head < len(s.rest) {
		return errors.New("raw write chunk: the previous one is not drained")
	}
	s.free()
	s.n = 0
	if !isRawWrite(data) {
		m := &nodepb.WriteChunk{}
		if err := protoCodec().Unmarshal(data, m); err != nil {
			return fmt.Errorf("write chunk: %w", err)
		}
		s.hold(m.GetData())
		return nil
	}
	tag := 1
	for _, b := range data {
		bs := b.ReadOnlyData()
		skip := min(tag, len(bs))
		tag -= skip
		k := copy(s.dst[s.n:], bs[skip:])
		s.n += k
		if skip+k < len(bs) {
			if len(s.rest) == 0 {
				s.at = skip + k
			}
			b.Ref() // the transport frees data once this returns
			s.rest = append(s.rest, b)
		}
	}
	return nil
}

// hold keeps b as the bytes drain copies out next; the sink is drained.
func (s *writeSink) hold(b []byte) {
	s.free()
	if len(b) > 0 {
		s.rest = append(s.rest, mem.SliceBuffer(b))
	}
}

// drain copies into p the bytes the sink holds past the last message's
// dst, and returns how many.
func (s *writeSink) drain(p []byte) int {
	n := 0
	for s.head < len(s.rest) && n < len(p) {
		b := s.rest[s.head].ReadOnlyData()[s.at:]
		k := copy(p[n:], b)
		n += k
		s.at += k
		if k == len(b) {
			s.rest[s.head].Free()
			s.rest[s.head] = nil
			s.head, s.at = s.head+1, 0
		}
	}
	return n
}

// free drops what the sink holds, giving the transport's buffers back.
func (s *writeSink) free() {
	for i := s.head; i < len(s.rest); i++ {
		s.rest[i].Free()
		s.rest[i] = nil
	}
	s.rest, s.head, s.at = s.rest[:0], 0, 0
}

// Buffer classes of a RawBufferPool: powers of two from 4 KiB to 1 MiB
// (a raw chunk, chunkSize); gRPC's DATA frames are at most 16 KiB.
const (
	rawPoolMinShift = 12
	rawPoolMaxShift = 20
)

// RawBufferPool is the gRPC buffer pool of raw streams, on both ends:
// the node fills raw read chunks from it, a client's raw write chunks
// are read into it, and both ends read DATA frames into it (grpc
// experimental.WithBufferPool, experimental.BufferPool). Unlike
// gRPC's default pool it does not zero a buffer it hands out again:
// every user of these buffers writes the bytes it then reads (a frame is
// read whole into its buffer, a read chunk is sliced to what Store.Read
// wrote, a write chunk to what its input gave), so zeroing is work for
// nothing, and on warm reads it was a tenth of the CPU of the nodes and
// of the gateway. Safe for concurrent use; buffers larger than 1 MiB are
// allocated and left to the GC.
type RawBufferPool struct {
	classes [rawPoolMaxShift - rawPoolMinShift + 1]sync.Pool
}

// rawChunks holds the chunks of the node's raw read streams (Node.Read)
// until the transport has sent them.
var rawChunks = NewRawBufferPool()

// NewRawBufferPool returns an empty pool.
func NewRawBufferPool() *RawBufferPool { return &RawBufferPool{} }

// class returns the index of the smallest class holding n bytes, or -1.
func rawPoolClass(n int) int {
	if n > 1<<rawPoolMaxShift {
		return -1
	}
	shift := rawPoolMinShift
	if n > 1<<rawPoolMinShift {
		shift = bits.Len(uint(n - 1))
	}
	return shift - rawPoolMinShift
}

// Get returns a buffer of length n; its bytes are whatever they were.
func (p *RawBufferPool) Get(n int) *[]byte {
	c := rawPoolClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := p.classes[c].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(c+rawPoolMinShift))
	return &b
}

// Put gives a buffer back; one whose capacity is not a class size (not
// from this pool) is dropped.
func (p *RawBufferPool) Put(bp *[]byte) {
	n := cap(*bp)
	c := rawPoolClass(n)
	if c < 0 || n != 1<<(c+rawPoolMinShift) {
		return
	}
	p.classes[c].Put(bp)
}

var _ mem.BufferPool = (*RawBufferPool)(nil)
