package ufs

import (
	"context"
	"fmt"
	"io"
)

// ctxReader stops a stream when its context is cancelled. Reads from local
// disks and from clients that take no context (HDFS) check it between
// chunks, which is prompt enough: a chunk is at most one buffer.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// rangeReader is the reader ReadRange returns for stores that read through
// a handle: it reads a bounded section and closes the handle.
type rangeReader struct {
	io.Reader
	close func() error
}

func (r rangeReader) Close() error { return r.close() }

// emptyReader is the reader of a range at or past the end of a file.
func emptyReader() io.ReadCloser { return io.NopCloser(eofReader{}) }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// checkRange refuses ranges no caller can mean. A huge n is fine: it reads
// to the end of the file.
func checkRange(op, where string, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("%s %s: invalid range off=%d n=%d", op, where, off, n)
	}
	return nil
}

// clampRange returns how many bytes of [off, off+n) lie inside a file of
// the given size.
func clampRange(off, n, size int64) int64 {
	if off >= size {
		return 0
	}
	return min(n, size-off)
}
