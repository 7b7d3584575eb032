package cachenode

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the "proto" codec the raw codec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// RawCodecName is the gRPC content-subtype of read streams whose page
// bytes skip protobuf: the node hands a pooled buffer of page bytes to the
// transport without marshalling it, and the client copies the bytes from
// the transport's buffers straight into the reader's buffer. Every other
// message of such a call is plain protobuf.
//
// A raw chunk on the wire is uvarint(len(meta)) | meta | data, where meta
// is a protobuf ReadChunk without its data (the fetch reports and the
// serving node, on the last chunk).
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

// Buffer classes of a RawBufferPool: powers of two from 4 KiB to 1 MiB
// (a raw chunk, chunkSize); gRPC's DATA frames are at most 16 KiB.
const (
	rawPoolMinShift = 12
	rawPoolMaxShift = 20
)

// RawBufferPool is the gRPC buffer pool of raw read streams, on both
// ends: the node fills raw chunks from it, and a client's connections
// read DATA frames into it (grpc experimental.WithBufferPool). Unlike
// gRPC's default pool it does not zero a buffer it hands out again:
// every user of these buffers writes the bytes it then reads (a frame is
// read whole into its buffer, a chunk is sliced to what Store.Read
// wrote), so zeroing is work for nothing, and on warm reads it was a
// tenth of the CPU of the nodes and of the gateway. Safe for concurrent
// use; buffers larger than 1 MiB are allocated and left to the GC.
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
