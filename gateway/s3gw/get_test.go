package s3gw

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// pagedLakes serves the lakes' files through readers that tell a page
// size, as router.File does, and records every read.
type pagedLakes struct {
	router.Namespace
	pageSize int64
	failAt   int64 // a read at or past this offset fails (0: none)

	mu       sync.Mutex
	reads    [][2]int64 // [off, end) of every read
	inFlight int
	most     int           // most reads in flight at once
	second   chan struct{} // closed when a second read runs beside another
}

type pagedTestReader struct {
	router.Reader
	l *pagedLakes
}

func (l *pagedLakes) OpenReader(e router.Entry) (router.Reader, error) {
	r, err := l.Namespace.OpenReader(e)
	if err != nil {
		return nil, err
	}
	return &pagedTestReader{Reader: r, l: l}, nil
}

func (r *pagedTestReader) PageSize() int64 { return r.l.pageSize }

func (r *pagedTestReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	l := r.l
	l.mu.Lock()
	l.reads = append(l.reads, [2]int64{off, off + int64(len(p))})
	l.inFlight++
	l.most = max(l.most, l.inFlight)
	first := len(l.reads) == 1
	if l.inFlight == 2 {
		close(l.second)
		l.second = make(chan struct{}) // closed again only by a later pair
	}
	second := l.second
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.inFlight--
		l.mu.Unlock()
	}()
	if first {
		// The first read waits until the next one runs beside it: a
		// GET that read one chunk at a time would stop here.
		select {
		case <-second:
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("read at %d: no other read started while it ran", off)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if l.failAt > 0 && off >= l.failAt {
		return 0, fmt.Errorf("read at %d: %w", off, ufs.ErrVersionChanged)
	}
	return r.Reader.ReadAt(ctx, p, off)
}

func (l *pagedLakes) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads, l.most, l.second = nil, 0, make(chan struct{})
}

// TestGetReadsWholePagesAhead checks how a GET reads a reader that tells
// its page size: chunks of whole pages at page-aligned offsets (the
// router reads those straight into the chunk), several at once, exactly
// the bytes of the range, sent in order.
func TestGetReadsWholePagesAhead(t *testing.T) {
	const pageSize = 2 << 20 // chunks are one page
	pl := &pagedLakes{pageSize: pageSize}
	g := newTestGateway(t, withNamespace(func(ns router.Namespace) router.Namespace { pl.Namespace = ns; return pl }))
	body := randomBytes(9<<20+5, 7)
	g.put("paged", body)
	size := int64(len(body))
	for _, tc := range []struct {
		rng        string
		start, end int64
	}{
		{"", 0, size},
		{"bytes=1000-7340031", 1000, 7 << 20},
		{"bytes=2097152-", 2 << 20, size},
		{"bytes=5-4194303", 5, 4 << 20},
	} {
		pl.reset()
		got, _, err := g.get("a", "paged", func(in *s3.GetObjectInput) {
			if tc.rng != "" {
				in.Range = aws.String(tc.rng)
			}
		})
		if err != nil {
			t.Fatalf("%q: %v", tc.rng, err)
		}
		if !bytes.Equal(got, body[tc.start:tc.end]) {
			t.Fatalf("%q: got %d bytes, not the range [%d,%d)", tc.rng, len(got), tc.start, tc.end)
		}
		pl.mu.Lock()
		reads := slices.Clone(pl.reads)
		most := pl.most
		pl.mu.Unlock()
		slices.SortFunc(reads, func(a, b [2]int64) int { return int(a[0] - b[0]) })
		at := tc.start
		for _, r := range reads {
			if r[0] != at {
				t.Fatalf("%q: reads %v do not tile the range [%d,%d)", tc.rng, reads, tc.start, tc.end)
			}
			if r[0]/pageSize != (r[1]-1)/pageSize || (r[1] != tc.end && r[1]%pageSize != 0) {
				t.Errorf("%q: read [%d,%d) is not the rest of one page", tc.rng, r[0], r[1])
			}
			at = r[1]
		}
		if at != tc.end {
			t.Fatalf("%q: reads %v stop at %d, not at the range's end %d", tc.rng, reads, at, tc.end)
		}
		if len(reads) > 1 && (most < 2 || most > readAheadChunks) {
			t.Errorf("%q: at most %d reads at once, want 2 to %d", tc.rng, most, readAheadChunks)
		}
	}
}

// A failed read after the status went out cuts the body short; a failed
// first read is an S3 error.
func TestGetReadFailure(t *testing.T) {
	pl := &pagedLakes{pageSize: 1 << 20, second: make(chan struct{})}
	g := newTestGateway(t, withNamespace(func(ns router.Namespace) router.Namespace { pl.Namespace = ns; return pl }))
	body := randomBytes(8<<20, 8)
	g.put("fails", body)

	pl.reset()
	pl.failAt = 5 << 20
	out, err := g.client.GetObject(ctxT(t), &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("fails")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err == nil || len(got) > 5<<20 || !bytes.Equal(got, body[:len(got)]) {
		t.Fatalf("read %d bytes (%v), want a body cut short of the failed chunk at %d", len(got), err, 5<<20)
	}

	pl.reset()
	pl.failAt = 1
	_, _, err = g.get("a", "fails", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=3145728-") })
	wantAPIError(t, err, "ServiceUnavailable", 503)
}

func TestChunkSizeFor(t *testing.T) {
	for _, tc := range []struct {
		pageSize int64
		want     int
	}{
		{0, chunkSize},
		{256 << 10, 1 << 20},
		{300 << 10, 1200 << 10},
		{4 << 20, 4 << 20},
		{64 << 20, maxGetChunk},
	} {
		var rd router.Reader = &pagedTestReader{l: &pagedLakes{pageSize: tc.pageSize}}
		if got := chunkSizeFor(rd); got != tc.want {
			t.Errorf("page size %d: chunks of %d bytes, want %d", tc.pageSize, got, tc.want)
		}
	}
}
