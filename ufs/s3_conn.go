package ufs

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// rawHTTP sends the lean path's GETs (s3_get.go) over HTTP/1.1
// connections of its own, to one plain-HTTP endpoint with no proxy: the
// request written and the response read by the caller's goroutine, where
// net/http's Transport hands each request to a connection's writer
// goroutine and its response from a reader goroutine: 106-155 against
// 130-221 CPU-us per 100 KiB GET in this process, 16 at a time from
// MinIO (BenchmarkS3ReadRangeSmall, six alternating pairs on
// 2026-12-07), a cold small file's fill on a node. Parsing is net/http's
// (Request.Write, ReadResponse), so every framing the Transport reads is
// read here. Idle connections are kept for reuse (at most rawMaxIdle,
// none older than rawIdleFor); a GET whose reused connection turns out
// closed by the server before any reply is sent again on a new one. Any
// error goes back to the lean path, whose caller then asks the SDK.
type rawHTTP struct {
	addr   string // host:port to dial
	dialer net.Dialer

	mu     sync.Mutex
	idle   []*rawConn // most recently used last
	closed bool       // the lake was closed: no connection is kept
}

const (
	rawMaxIdle = 64
	// rawIdleFor is how long an idle connection is kept: less than the
	// idle timeouts stores close them after (MinIO's and S3's are longer).
	rawIdleFor = 20 * time.Second
)

type rawConn struct {
	c     net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since
}

func newRawHTTP(addr string) *rawHTTP {
	return &rawHTTP{addr: addr, dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
}

// Do sends req (a GET with no body) and returns its response, whose Body
// the caller closes; a connection goes back to the pool once its body
// was read to the end and closed.
func (h *rawHTTP) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		rc, reused, err := h.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := h.roundTrip(ctx, rc, req)
		if err == nil {
			return resp, nil
		}
		rc.c.Close()
		if !reused || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
		// A reused connection the server had closed: once more, anew.
	}
}

// conn returns an idle connection, or a new one.
func (h *rawHTTP) conn(ctx context.Context) (*rawConn, bool, error) {
	now := time.Now()
	var stale []*rawConn
	h.mu.Lock()
	var rc *rawConn
	for len(h.idle) > 0 && rc == nil {
		c := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(c.since) < rawIdleFor {
			rc = c
		} else {
			stale = append(stale, c)
		}
	}
	h.mu.Unlock()
	for _, c := range stale {
		c.c.Close()
	}
	if rc != nil {
		return rc, true, nil
	}
	c, err := h.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, false, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 32<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put keeps rc for the next request, or closes it when the pool is full.
func (h *rawHTTP) put(rc *rawConn) {
	rc.since = time.Now()
	h.mu.Lock()
	if len(h.idle) < rawMaxIdle && !h.closed {
		h.idle = append(h.idle, rc)
		rc = nil
	}
	h.mu.Unlock()
	if rc != nil {
		rc.c.Close()
	}
}

// close closes the idle connections, and those of GETs still being read
// once they end.
func (h *rawHTTP) close() {
	h.mu.Lock()
	idle := h.idle
	h.idle, h.closed = nil, true
	h.mu.Unlock()
	for _, rc := range idle {
		rc.c.Close()
	}
}

func (h *rawHTTP) roundTrip(ctx context.Context, rc *rawConn, req *http.Request) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A canceled context ends the request's reads and writes at once.
	stop := context.AfterFunc(ctx, func() { rc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if err := req.Write(rc.bw); err != nil {
		return fail(err)
	}
	if err := rc.bw.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &rawBody{body: resp.Body, h: h, rc: rc, stop: stop, ctx: ctx, keep: !resp.Close}
	return resp, nil
}

// rawBody is a response's body: at its end, closed, its connection goes
// back to the pool.
type rawBody struct {
	body io.ReadCloser
	h    *rawHTTP
	rc   *rawConn
	stop func() bool
	ctx  context.Context
	keep bool // the server keeps the connection open
	eof  bool
	err  error
	once sync.Once
}

func (b *rawBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.err = err
	}
	return n, err
}

func (b *rawBody) Close() error {
	b.once.Do(func() {
		if !b.eof && b.err == nil {
			// Read exactly to its length (io.ReadFull): the end is
			// there without another read of the socket. A body left with
			// more than a little unread costs its connection.
			if _, err := io.CopyN(io.Discard, b.body, 4<<10); err == io.EOF {
				b.eof = true
			}
		}
		stopped := b.stop()
		if b.eof && b.keep && stopped && b.err == nil {
			b.h.put(b.rc)
			return
		}
		b.rc.c.Close()
	})
	return nil
}

// rawHTTPFor returns the raw client for GETs to base, or nil when they
// keep the SDK's HTTP client: an HTTPS endpoint, or one reached through a
// proxy (HTTP_PROXY and its kin).
func rawHTTPFor(base *url.URL) *rawHTTP {
	if base.Scheme != "http" {
		return nil
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: base}); err != nil || p != nil {
		return nil
	}
	port := base.Port()
	if port == "" {
		port = "80"
	}
	return newRawHTTP(net.JoinHostPort(base.Hostname(), port))
}
