package cachenode

import (
	"encoding/binary"
	"fmt"
	"io"

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
