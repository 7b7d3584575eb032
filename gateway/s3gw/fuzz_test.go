package s3gw

import (
	"bufio"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/router"
)

// FuzzKeyPath checks that a key either maps to a path inside its bucket,
// in the canonical form the namespace keeps, or is refused.
func FuzzKeyPath(f *testing.F) {
	for _, k := range []string{"a", "a/b/c", "a/", "../x", "a/../b", "a//b", "/a", ".", "a/.", "日本/語", "a\x00b", "a/.lakemesh-tmp-1", strings.Repeat("x/", 600)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p, dir, aerr := keyPath("/lake/bucket", key)
		if aerr != nil {
			if errorStatus[aerr.Code] != 400 {
				t.Fatalf("key %q refused with %s, not a 400", key, aerr.Code)
			}
			return
		}
		if !strings.HasPrefix(p, "/lake/bucket/") {
			t.Fatalf("key %q maps outside its bucket: %s", key, p)
		}
		clean, err := router.CleanNamespacePath(p)
		if err != nil || clean != p {
			t.Fatalf("key %q maps to %q, which the namespace reads as %q (%v)", key, p, clean, err)
		}
		if back := strings.TrimPrefix(p, "/lake/bucket/"); back+map[bool]string{true: "/"}[dir] != key {
			t.Fatalf("key %q maps to %q, which maps back to another key", key, p)
		}
	})
}

// FuzzParseRange checks that a range is inside the object or refused.
func FuzzParseRange(f *testing.F) {
	for _, h := range []string{"bytes=0-9", "bytes=5-", "bytes=-3", "bytes=9-2", "bytes=0-0,5-6", "bytes=-0", "bytes=99-", "items=0-1", "bytes= 1 - 2 "} {
		f.Add(h, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		start, end, partial, aerr := parseRange(h, size)
		if aerr != nil {
			if aerr.Code != "InvalidRange" {
				t.Fatalf("range %q refused with %s", h, aerr.Code)
			}
			return
		}
		if start < 0 || end > size || start > end || (partial && start == end) || (!partial && (start != 0 || end != size)) {
			t.Fatalf("range %q of %d bytes: [%d, %d) partial=%v", h, size, start, end, partial)
		}
	})
}

// FuzzChunkedBody feeds arbitrary aws-chunked bodies to the decoder: it
// must end with data and EOF, or an S3 error, never panic or hang.
func FuzzChunkedBody(f *testing.F) {
	f.Add("b\r\nHello world\r\n0\r\nx-amz-checksum-crc32:i9aeUg==\r\n\r\n", int64(11))
	f.Add("3\r\nabc\r\n0\r\n\r\n", int64(3))
	f.Add("ffffffffffffffff\r\n", int64(1))
	f.Add("1;chunk-signature=x\r\na\r\n", int64(1))
	f.Fuzz(func(t *testing.T, body string, decoded int64) {
		r := httptest.NewRequest("PUT", "http://gw/a/k", strings.NewReader(body))
		r.Header.Set("X-Amz-Decoded-Content-Length", strconv.FormatInt(decoded, 10))
		r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		s := &Server{}
		b, err := s.body(&request{Request: r, sig: &signature{payload: streamingUnsignedTrailer}}, nil)
		if err != nil {
			return
		}
		n, err := io.Copy(io.Discard, bufio.NewReader(b))
		if err == nil && n != decoded {
			t.Fatalf("decoded %d bytes, declared %d, no error", n, decoded)
		}
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("error %T %v is not an S3 error", err, err)
			}
		}
	})
}
