package cachenode

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

func TestRawCodecRoundTrip(t *testing.T) {
	c := rawCodec{}
	data := bytes.Repeat([]byte("lakemesh"), 1000)
	buf := append([]byte(nil), data...)
	meta := &nodepb.ReadChunk{Node: "n1", Fetches: []*nodepb.PageFetch{{Page: 3, Tier: "lake", Bytes: 8000}}}
	wire, err := c.Marshal(&RawChunk{Meta: meta, Data: mem.NewBuffer(&buf, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got := wire.Materialize(); !bytes.HasSuffix(got, data) {
		t.Fatal("the data is not on the wire as it is")
	}
	// Two chunks into one sink: bytes land one after the other.
	sink := &RawSink{Dst: make([]byte, 3*len(data)), N: len(data)}
	for i := 0; i < 2; i++ {
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire.Materialize())}, sink); err != nil {
			t.Fatal(err)
		}
	}
	if sink.N != 3*len(data) || !bytes.Equal(sink.Dst[len(data):], append(append([]byte(nil), data...), data...)) {
		t.Fatalf("sink holds %d bytes, not the two chunks", sink.N)
	}
	if sink.Meta.GetNode() != "n1" || sink.Meta.GetFetches()[0].GetPage() != 3 {
		t.Fatalf("metadata lost: %v", sink.Meta)
	}
	// A chunk larger than what the read has left is refused, not written past.
	small := &RawSink{Dst: make([]byte, 10)}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire.Materialize())}, small); err == nil {
		t.Fatal("an oversized chunk was accepted")
	}
	// Other messages are protobuf.
	req := &nodepb.ReadRequest{Offset: 7, Raw: true}
	w, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back nodepb.ReadRequest
	if err := c.Unmarshal(w, &back); err != nil || back.GetOffset() != 7 || !back.GetRaw() {
		t.Fatalf("protobuf fallback: %v %v", err, &back)
	}
}
