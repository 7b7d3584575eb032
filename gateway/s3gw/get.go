package s3gw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

const (
	// chunkSize is the size of the buffers object bytes stream through
	// when the reader does not tell its page size.
	chunkSize = 1 << 20
	// maxGetChunk bounds a GET's chunks when pages are larger.
	maxGetChunk = 8 << 20
	// readAheadChunks is how many chunks a GET holds at once: the one it
	// sends and those it reads meanwhile (each from its page's node, so
	// the nodes work in parallel).
	readAheadChunks = 3
)

// chunkPool holds the 1 MiB buffers of transfers (spooled parts, and
// GETs of readers without pages): at most MaxTransfers * readAheadChunks
// of them are in use at once.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// pageChunkPools holds GET chunk buffers of other sizes, one pool per size
// (in practice one: the region's page size).
var pageChunkPools sync.Map // int -> *sync.Pool of *[]byte

// getChunk returns a buffer of size bytes for a GET; putChunk takes it back.
func getChunk(size int) *[]byte {
	if size == chunkSize {
		return chunkPool.Get().(*[]byte)
	}
	p, ok := pageChunkPools.Load(size)
	if !ok {
		p, _ = pageChunkPools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	}
	return p.(*sync.Pool).Get().(*[]byte)
}

func putChunk(b *[]byte) {
	if len(*b) == chunkSize {
		chunkPool.Put(b)
		return
	}
	if p, ok := pageChunkPools.Load(len(*b)); ok {
		p.(*sync.Pool).Put(b)
	}
}

// pagedReader is a Reader that tells its page size (router.File does).
type pagedReader interface {
	PageSize() int64
}

// chunkSizeFor is the chunk size of a GET from rd: whole pages when rd
// tells its page size, so that every chunk read at a chunk-aligned offset
// is whole pages, which the router reads from their nodes straight into
// the chunk; at least 1 MiB (several small pages), at most maxGetChunk.
func chunkSizeFor(rd router.Reader) int {
	pr, ok := rd.(pagedReader)
	if !ok || pr.PageSize() <= 0 {
		return chunkSize
	}
	ps := pr.PageSize()
	if ps > maxGetChunk {
		return maxGetChunk
	}
	return int((chunkSize + ps - 1) / ps * ps)
}

// emptyETag is the ETag of an empty object: directory markers have it.
const emptyETag = `"d41d8cd98f00b204e9800998ecf8427e"`

// etagOf is an object's ETag: its lake version, quoted, so that
// If-Match works with what PUT, HEAD, GET, LIST and COPY reply.
func etagOf(e router.Entry) string {
	if e.IsDir {
		return emptyETag
	}
	v := e.Version
	if v == "" {
		v = fmt.Sprintf("%x-%x", e.ModTime.UnixNano(), e.Size)
	}
	return `"` + strings.Map(func(r rune) rune {
		if r == '"' || r < ' ' {
			return '_'
		}
		return r
	}, v) + `"`
}

func (s *Server) headObject(w http.ResponseWriter, req *request) error {
	return s.sendObject(w, req, true)
}

func (s *Server) getObject(w http.ResponseWriter, req *request) error {
	return s.sendObject(w, req, false)
}

// statKey stats a key's path, with its attrs; a missing path (or one
// below a file) is NoSuchKey, or NoSuchBucket when the bucket is what is
// missing. A key ending in "/" names a directory, any other a file.
func (s *Server) statKey(ctx context.Context, bucket, key string) (router.Entry, ufs.Attrs, error) {
	bucketPath, mount, ok := s.buckets.path(bucket)
	if !ok {
		return router.Entry{}, nil, s3err("NoSuchBucket", "the specified bucket does not exist")
	}
	p, dir, aerr := keyPath(bucketPath, key)
	if aerr != nil {
		return router.Entry{}, nil, aerr
	}
	e, attrs, err := s.ns.StatAttrs(ctx, p)
	if err != nil {
		if errors.Is(err, ufs.ErrNotFound) || errors.Is(err, ufs.ErrNotDir) {
			if mount {
				return router.Entry{}, nil, noSuchKey(key)
			}
			return router.Entry{}, nil, s.keyNotFound(ctx, bucket, key)
		}
		return router.Entry{}, nil, toAPIError(err, targetRead, key)
	}
	if e.IsDir != dir {
		return router.Entry{}, nil, noSuchKey(key)
	}
	return e, attrs, nil
}

// sendObject answers GET and HEAD: headers, conditions, the range, then
// the bytes, read through the namespace in chunks with readahead bounded
// to the range.
func (s *Server) sendObject(w http.ResponseWriter, req *request, head bool) error {
	ctx := req.Context()
	e, attrs, err := s.statKey(ctx, req.bucket, req.key)
	if err != nil {
		return err
	}
	etag := etagOf(e)
	h := w.Header()
	h.Set("ETag", etag)
	if !e.ModTime.IsZero() {
		h.Set("Last-Modified", e.ModTime.UTC().Format(http.TimeFormat))
	}
	if aerr := checkConditions(req.Header, e, true); aerr != nil {
		return aerr
	}
	size := e.Size
	if e.IsDir {
		size = 0
	}
	if pn := req.query.Get("partNumber"); pn != "" && pn != "1" {
		return s3err("InvalidArgument", "partNumber %s: objects of this gateway have one part", pn)
	}
	start, end, partial, aerr := parseRange(req.Header.Get("Range"), size)
	if aerr != nil {
		return aerr
	}
	h.Set("Accept-Ranges", "bytes")
	setAttrHeaders(h, req.key, attrs)
	if aerr := responseOverrides(req, h); aerr != nil {
		return aerr
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
	if head || end == start {
		w.WriteHeader(status)
		return nil
	}
	rd, done, err := s.openRead(ctx, e, req.key)
	if err != nil {
		return err
	}
	defer done()
	// The range's end goes all the way down: readahead never fetches a
	// page past it, so a ranged GET costs the pages it covers.
	rd.Limit(end)
	if err := s.stream(ctx, w, status, rd, start, end, clientOnThisHost(req.Request), &req.sent); err != nil {
		if errors.Is(err, errClientGone) {
			return err
		}
		return toAPIError(err, targetRead, req.key)
	}
	return nil
}

// errClientGone is a reply the client stopped reading: nothing to answer.
var errClientGone = errors.New("client went away")

// pendingChunk is one chunk of a GET, read while earlier ones are sent:
// either bytes in buf, or sections of page files to send from.
type pendingChunk struct {
	buf      *[]byte // nil when sections hold the chunk
	n        int
	sections []router.Section
	at       int64 // the chunk's first byte in the object
	err      error
	done     chan struct{} // closed once buf, n, sections and err are set
}

// release gives back what the chunk holds.
func (c *pendingChunk) release() {
	if c.buf != nil {
		putChunk(c.buf)
		c.buf = nil
	}
	for _, sec := range c.sections {
		sec.File.Close()
	}
	c.sections = nil
}

// zeroCopyReader is a Reader that hands out ranges of the page
// files of nodes on this host, to send from (router.File does).
type zeroCopyReader interface {
	pagedReader
	Section(ctx context.Context, off, n int64) (router.Section, bool)
}

// stream sends bytes [start, end) of rd. Chunks end at multiples of the
// chunk size (whole pages: see chunkSizeFor). One goroutine starts the
// read of each chunk, in order, in a goroutine of its own, while this one
// sends the oldest chunk once it is read; a chunk holds one of
// readAheadChunks slots from its read until it is sent, which bounds the
// reads in flight and the buffers. The pages of a file are on different
// nodes, which send them in parallel. The status goes out with the first
// chunk, so a failure before any byte is read is still a proper S3 error.
//
// A chunk whose pages are all short-circuited (router.File.Section) is
// not read into a buffer: its blocks are verified where they lie in the
// page cache, a piece at a time, each piece just before it goes. To a
// client on another host a piece goes from the page file to the socket
// with sendfile, so the gateway copies none of its bytes; to a client on
// this host (local, see clientOnThisHost) it is written from the mapping
// it was verified in, which costs that client half as much (see
// router.Section.Send). A block that fails its checksum has the rest of
// its chunk read the usual way: never a wrong byte sent.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, status int, rd router.Reader, start, end int64, local bool, sent *sentChunks) error {
	ctx, cancel := context.WithCancel(ctx)
	size := int64(chunkSizeFor(rd))
	zc, _ := rd.(zeroCopyReader)
	rf, _ := w.(io.ReaderFrom)
	if (rf == nil && !local) || s.cfg.DisableZeroCopy {
		zc = nil
	}
	slots := make(chan struct{}, readAheadChunks) // one per chunk read or queued
	queue := make(chan *pendingChunk, readAheadChunks)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(queue)
		for pos := start; pos < end; {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			n := min(size-pos%size, end-pos)
			c := &pendingChunk{done: make(chan struct{})}
			queue <- c // never blocks: queued chunks hold slots
			wg.Add(1)
			go func(at int64) {
				defer wg.Done()
				defer close(c.done)
				if zc != nil {
					if c.sections = pageSections(ctx, zc, at, n); c.sections != nil {
						c.at, c.n = at, int(n)
						return
					}
				}
				c.buf = getChunk(int(size))
				c.n, c.err = readFull(ctx, rd, (*c.buf)[:n], at)
			}(pos)
			pos += n
		}
	}()
	defer func() {
		cancel()
		for c := range queue {
			<-c.done
			c.release()
		}
		wg.Wait()
	}()
	first := true
	for c := range queue {
		<-c.done
		if c.err != nil {
			c.release()
			return c.err
		}
		if first {
			w.WriteHeader(status)
			first = false
		}
		var err error
		if c.sections != nil {
			var n int64
			if local {
				n, err = sendSections(c.sections, func(sec router.Section) (int64, error) { return sec.Write(w) })
				s.mappedChunks.Add(1)
				sent.mapped++
			} else {
				n, err = sendSections(c.sections, func(sec router.Section) (int64, error) { return sec.Send(rf) })
				s.zeroCopyChunks.Add(1)
				sent.sendfile++
			}
			if errors.Is(err, router.ErrSectionCheck) {
				// A block failed its checksum before it went: the rest
				// of the chunk is read the usual way (its node drops the
				// block and fills it again) into a buffer of its own.
				c.release()
				c.buf = getChunk(int(size))
				rest := (*c.buf)[:int64(c.n)-n]
				if _, err := readFull(ctx, rd, rest, c.at+n); err != nil {
					c.release()
					return err
				}
				_, err = w.Write(rest)
			}
		} else {
			_, err = w.Write((*c.buf)[:c.n])
			sent.buffered++
		}
		c.release()
		<-slots
		if err != nil {
			return fmt.Errorf("%w: %v", errClientGone, err)
		}
	}
	return nil
}

// pageSections returns bytes [off, off+n) of rd as verified sections, one
// per page they touch, or nil when any page's cannot be had.
func pageSections(ctx context.Context, rd zeroCopyReader, off, n int64) []router.Section {
	ps := rd.PageSize()
	var secs []router.Section
	for end := off + n; off < end; {
		k := min(end, (off/ps+1)*ps) - off
		sec, ok := rd.Section(ctx, off, k)
		if !ok {
			for _, s := range secs {
				s.File.Close()
			}
			return nil
		}
		secs = append(secs, sec)
		off += k
	}
	return secs
}

// sendSections sends sections, each with send: router.Section.Send
// through the response's ReadFrom, which, for the *io.LimitedReader over
// an *os.File that a section sends as, is sendfile from the page file to
// the connection (net/http's response and net.TCPConn); or
// router.Section.Write, each piece from the mapping it was verified in.
// It returns the bytes sent, and never sends a byte that was not
// verified: after a block failed its checksum the error wraps
// router.ErrSectionCheck, and the caller sends the rest otherwise.
func sendSections(secs []router.Section, send func(router.Section) (int64, error)) (int64, error) {
	var sent int64
	for _, sec := range secs {
		n, err := send(sec)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// clientOnThisHost reports whether r came from this host: from a
// loopback address, or from the address it reached the gateway at. It is
// a variable for tests, which reach the gateway over loopback and try
// both ways of sending.
var clientOnThisHost = func(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	return ok && local.IP.Equal(ip)
}

// readFull fills buf from off, failing if the object ends first.
func readFull(ctx context.Context, rd router.Reader, buf []byte, off int64) (int, error) {
	got := 0
	for got < len(buf) {
		n, err := rd.ReadAt(ctx, buf[got:], off+int64(got))
		got += n
		if got == len(buf) {
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, fmt.Errorf("%s ended at %d, before the %d bytes it was opened with: %w", rd.Entry().Path, off+int64(got), rd.Entry().Size, ufs.ErrVersionChanged)
			}
			return got, err
		}
		if n == 0 {
			return got, fmt.Errorf("read %s at %d: no progress", rd.Entry().Path, off+int64(got))
		}
	}
	return got, nil
}

// checkConditions applies If-Match, If-Unmodified-Since, If-None-Match
// and If-Modified-Since in RFC 7232's order, against e's ETags and
// modification time. A failed If-None-Match or If-Modified-Since is 304
// for reads (get) and 412 otherwise.
func checkConditions(h http.Header, e router.Entry, get bool) *apiError {
	mod := e.ModTime.Truncate(time.Second)
	etags := []string{etagOf(e)}
	if e.UploadedFrom != "" && !e.IsDir {
		// The same bytes, under the ETag they had before their
		// write-back upload reached the lake.
		etags = append(etags, etagOf(router.Entry{Version: e.UploadedFrom}))
	}
	failed := func(what string) *apiError {
		return s3err("PreconditionFailed", "at least one of the preconditions you specified did not hold: %s", what)
	}
	if v := h.Get("If-Match"); v != "" {
		if !etagMatches(v, etags...) {
			return failed("If-Match")
		}
	} else if v := h.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && mod.After(t) {
			return failed("If-Unmodified-Since")
		}
	}
	notModified := func(what string) *apiError {
		if !get {
			return failed(what)
		}
		return s3err("NotModified", "not modified")
	}
	if v := h.Get("If-None-Match"); v != "" {
		if etagMatches(v, etags...) {
			return notModified("If-None-Match")
		}
	} else if v := h.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !mod.After(t) {
			return notModified("If-Modified-Since")
		}
	}
	return nil
}

// etagMatches reports whether an If-Match/If-None-Match list names one
// of etags (an object's ETags: the current one, and the one it had
// before its write-back upload).
func etagMatches(list string, etags ...string) bool {
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "*" {
			return true
		}
		item = strings.Trim(strings.TrimPrefix(item, "W/"), `"`)
		for _, etag := range etags {
			if item == strings.Trim(etag, `"`) {
				return true
			}
		}
	}
	return false
}

// parseRange reads a Range header against an object of size bytes and
// returns the range [start, end). A header that is not one well-formed
// byte range is ignored (the whole object, as S3 does); a range that
// starts past the end is InvalidRange.
func parseRange(h string, size int64) (start, end int64, partial bool, aerr *apiError) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, size, false, nil
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	unsatisfiable := func() *apiError {
		e := s3err("InvalidRange", "the requested range %q is not satisfiable for an object of %d bytes", h, size)
		e.header = map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", size)}
		return e
	}
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, size, false, nil
		}
		if n == 0 || size == 0 {
			return 0, 0, false, unsatisfiable()
		}
		return max(0, size-n), size, true, nil
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, size, false, nil
	}
	end = size
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || b < a {
			return 0, size, false, nil
		}
		end = min(b+1, size)
	}
	if a >= size {
		return 0, 0, false, unsatisfiable()
	}
	return a, end, true, nil
}

// contentType guesses an object's type from its key's extension.
func contentType(key string) string {
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// responseOverrides applies the response-* query parameters of a signed
// GET or HEAD (presigned download links use them).
func responseOverrides(req *request, h http.Header) *apiError {
	overrides := map[string]string{
		"response-content-type":        "Content-Type",
		"response-content-language":    "Content-Language",
		"response-expires":             "Expires",
		"response-cache-control":       "Cache-Control",
		"response-content-disposition": "Content-Disposition",
		"response-content-encoding":    "Content-Encoding",
	}
	for param, header := range overrides {
		v := req.query.Get(param)
		if v == "" {
			continue
		}
		if req.sig == nil {
			return s3err("InvalidRequest", "response header overrides (%s) cannot be used in anonymous requests", param)
		}
		h.Set(header, v)
	}
	return nil
}
