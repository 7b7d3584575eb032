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

func TestRawBufferPool(t *testing.T) {
	p := NewRawBufferPool()
	for _, tc := range []struct{ n, capacity int }{
		{1, 4 << 10},
		{4 << 10, 4 << 10},
		{4<<10 + 1, 8 << 10},
		{16 << 10, 16 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1}, // past the classes: allocated as asked
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.capacity {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.capacity)
		}
		p.Put(b)
	}
	// A buffer comes back as it was given, not zeroed (its user writes
	// every byte it reads), sliced to the length asked. Pools keep a
	// buffer only in most cases, so look for it a few times.
	for try := 0; ; try++ {
		b := p.Get(16 << 10)
		(*b)[0], (*b)[100] = 7, 9
		p.Put(b)
		again := p.Get(10 << 10) // the same class
		if again == b {
			if len(*again) != 10<<10 || (*again)[100] != 9 || (*again)[0] != 7 {
				t.Fatalf("a pooled buffer came back as len %d with other bytes", len(*again))
			}
			break
		}
		if try == 100 {
			t.Skip("the pool never handed a buffer back (sync.Pool may drop them)")
		}
	}
	// A buffer whose capacity is no class size is not kept.
	odd := make([]byte, 5000)
	p.Put(&odd)
	for range 10 {
		if b := p.Get(5000); cap(*b) != 8<<10 {
			t.Fatalf("Get(5000) returned a buffer of capacity %d, not of its class", cap(*b))
		}
	}
}
