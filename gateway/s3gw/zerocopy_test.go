package s3gw

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/router"
)

// sectionLakes hands out readers with pages of sectionPage bytes whose
// Section opens the object's file in the lake, as router.File hands out
// page files of nodes on its host; page bad has no section (a block
// that failed its checksum), so their chunks are read with ReadAt.
type sectionLakes struct {
	router.Namespace
	dir      string       // the directory of mount /lake/a
	bad      atomic.Int64 // a page with no section; -1 for none
	corrupt  atomic.Int64 // an object offset whose piece fails its check; -1 for none
	checked  atomic.Int64 // bytes checked
	sections atomic.Int64 // handed out
	reads    atomic.Int64 // ReadAt calls
}

const sectionPage = 64 << 10

type sectionFileReader struct {
	router.Reader
	l *sectionLakes
}

func (l *sectionLakes) OpenReader(e router.Entry) (router.Reader, error) {
	r, err := l.Namespace.OpenReader(e)
	if err != nil {
		return nil, err
	}
	return &sectionFileReader{Reader: r, l: l}, nil
}

func (r *sectionFileReader) PageSize() int64 { return sectionPage }

func (r *sectionFileReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.l.reads.Add(1)
	return r.Reader.ReadAt(ctx, p, off)
}

func (r *sectionFileReader) Section(_ context.Context, off, n int64) (router.Section, bool) {
	if n <= 0 || off/sectionPage != (off+n-1)/sectionPage {
		panic(fmt.Sprintf("section [%d, %d) is not inside one page", off, off+n))
	}
	if r.l.bad.Load() == off/sectionPage {
		return router.Section{}, false
	}
	rel := strings.TrimPrefix(r.Entry().Path, "/lake/a/")
	f, err := os.Open(filepath.Join(r.l.dir, filepath.FromSlash(rel)))
	if err != nil {
		return router.Section{}, false
	}
	if _, err := f.Seek(off, 0); err != nil {
		f.Close()
		return router.Section{}, false
	}
	r.l.sections.Add(1)
	return router.NewSection(f, n, func(from, k int64) error {
		if bad := r.l.corrupt.Load(); bad >= off+from && bad < off+from+k {
			return fmt.Errorf("byte %d: checksum mismatch", bad)
		}
		r.l.checked.Add(k)
		return nil
	}), true
}

// GETs whose pages all have sections go out without a read into a
// buffer, whole and ranged (across page and chunk boundaries, the last
// short page): with sendfile to a client on another host, written from
// the section to one on this host. A chunk with a page that has none is
// read, never sent in part.
func TestGetSendsSections(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote", true: "local"}[local], func(t *testing.T) {
			defer func(f func(*http.Request) bool) { clientOnThisHost = f }(clientOnThisHost)
			clientOnThisHost = func(*http.Request) bool { return local }
			testGetSendsSections(t, local)
		})
	}
}

func testGetSendsSections(t *testing.T, local bool) {
	sl := &sectionLakes{}
	sl.bad.Store(-1)
	sl.corrupt.Store(-1)
	g := newTestGateway(t, withNamespace(func(ns router.Namespace) router.Namespace { sl.Namespace = ns; return sl }))
	sl.dir = g.lakes.Dir("/lake/a")
	// chunks counts the chunks sent the way a client there is sent them;
	// other those sent the other way.
	chunks, other := &g.srv.zeroCopyChunks, &g.srv.mappedChunks
	if local {
		chunks, other = other, chunks
	}
	const size = 3<<20 + 5*sectionPage + 1234 // 4 chunks of 1 MiB, the last short
	body := randomBytes(size, 11)
	g.put("zc", body)
	ranges := []struct{ first, last int64 }{
		{0, size - 1},
		{1, 2},
		{sectionPage - 3, sectionPage + 2},
		{1<<20 - 7, 2<<20 + 7},
		{size - 1234 - 10, size - 1},
		{size - 1, size - 1},
		{5, size - 1},
	}
	check := func() {
		t.Helper()
		for _, r := range ranges {
			got, _, err := g.get("a", "zc", func(in *s3.GetObjectInput) {
				in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", r.first, r.last))
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body[r.first:r.last+1]) {
				t.Fatalf("range %d-%d: %d bytes that differ from the object's", r.first, r.last, len(got))
			}
		}
	}
	check()
	if sl.reads.Load() != 0 || chunks.Load() == 0 || other.Load() != 0 {
		t.Fatalf("%d ReadAt calls, %d chunks sent from sections and %d the other way; want none, some and none", sl.reads.Load(), chunks.Load(), other.Load())
	}
	var sent int64
	for _, r := range ranges {
		sent += r.last - r.first + 1
	}
	if got := sl.checked.Load(); got != sent {
		t.Fatalf("%d bytes checked of the %d sent", got, sent)
	}

	// A block that fails its check in the middle of a chunk: the bytes
	// before it went from the section, the rest of the chunk is read.
	sl.corrupt.Store(2<<20 + 3*sectionPage + 100)
	check()
	if sl.reads.Load() == 0 {
		t.Error("nothing was read after a section failed its check")
	}
	sl.corrupt.Store(-1)
	sl.reads.Store(0)

	sl.bad.Store(17) // in the second chunk
	before := chunks.Load()
	check()
	if sl.reads.Load() == 0 {
		t.Error("no chunk was read after a page had no section")
	}
	if chunks.Load() == before {
		t.Error("no chunk went from sections after one page had no section")
	}
}

// DisableZeroCopy reads every chunk.
func TestGetWithoutZeroCopy(t *testing.T) {
	sl := &sectionLakes{}
	sl.bad.Store(-1)
	g := newTestGateway(t,
		withNamespace(func(ns router.Namespace) router.Namespace { sl.Namespace = ns; return sl }),
		func(c *Config, _ *testGateway) { c.DisableZeroCopy = true })
	sl.dir = g.lakes.Dir("/lake/a")
	body := randomBytes(2<<20+100, 12)
	g.put("zc", body)
	got, _, err := g.get("a", "zc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("wrong bytes")
	}
	if sl.sections.Load() != 0 || g.srv.zeroCopyChunks.Load() != 0 || g.srv.mappedChunks.Load() != 0 {
		t.Fatalf("%d sections asked for with zero-copy disabled", sl.sections.Load())
	}
}

// A client is on this host when it comes from a loopback address or from
// the address it reached the gateway at.
func TestClientOnThisHost(t *testing.T) {
	at := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9000}
	for _, c := range []struct {
		remote string
		local  net.Addr
		want   bool
	}{
		{"127.0.0.1:5000", at, true},
		{"127.9.9.9:5000", nil, true},
		{"[::1]:5000", at, true},
		{"10.1.2.3:5000", at, true},
		{"10.1.2.4:5000", at, false},
		{"[2001:db8::1]:5000", at, false},
		{"10.1.2.3:5000", nil, false},
		{"@", at, false}, // a unix socket's peer
	} {
		r := httptest.NewRequest("GET", "/a/k", nil)
		r.RemoteAddr = c.remote
		if c.local != nil {
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, c.local))
		}
		if got := clientOnThisHost(r); got != c.want {
			t.Errorf("client %s, gateway at %v: on this host %v; want %v", c.remote, c.local, got, c.want)
		}
	}
}
