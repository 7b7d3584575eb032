package s3gw

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lakemesh/lakemesh/router"
)

// Config is what a Server needs. Mounts and at least one of Credentials
// or Anonymous are required; the rest has defaults.
type Config struct {
	// Mounts are the namespace's mount paths; each is served as the
	// bucket named by its last path element.
	Mounts []string
	// BucketDir, when set, is a directory inside a writable mount under
	// which CreateBucket X makes directory X (see doc.go).
	BucketDir string
	// Credentials are the access keys whose signatures are accepted.
	Credentials Credentials
	// Anonymous names the buckets anyone may read without a signature.
	Anonymous []string
	// Region is the signing region clients must use (default us-east-1).
	Region string
	// DisableSigV2 refuses requests signed with AWS Signature Version 2,
	// header or presigned URL, with InvalidRequest. SigV2 is HMAC-SHA1
	// and signs no payload: a body is as safe as the Content-MD5 (or
	// x-amz-checksum-*) its client chose to sign. It is accepted by
	// default, as MinIO and Ceph accept it, for older clients (s3cmd,
	// boto 2, minio-go's SignV2).
	DisableSigV2 bool
	// SpoolDir holds multipart upload parts until completion (default
	// lakemesh-s3-spool-<uid> under os.TempDir()); created with mode 0700.
	SpoolDir string
	// UploadTTL is how long an incomplete multipart upload is kept
	// (default 7 days).
	UploadTTL time.Duration
	// MaxTransfers bounds the requests that move object bytes at once
	// (GET and PUT bodies, parts, copies, completions), which bounds the
	// gateway's buffer memory; more wait, and past a queue of
	// 4*MaxTransfers or 30 s of waiting they get 503 SlowDown
	// (default 32: a GET holds readAheadChunks pages, 12 MiB of 4 MiB
	// pages, so about 384 MiB in all).
	MaxTransfers int
	// DisableZeroCopy makes GETs read every chunk into a buffer, even
	// chunks of pages short-circuited on this host, which otherwise go
	// from the page files to the connection: with sendfile, or to a
	// client on this host written from a mapping of the page file.
	DisableZeroCopy bool
	Logger          *slog.Logger
	// Now is the clock signatures are checked against (default time.Now).
	Now func() time.Time
}

// DefaultRegion is the signing region when Config.Region is empty.
const DefaultRegion = "us-east-1"

// DefaultSpoolDir is where multipart parts go when Config.SpoolDir is
// empty: a directory of this user under the system's temporary directory.
func DefaultSpoolDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("lakemesh-s3-spool-%d", os.Getuid()))
}

// slotWait is how long a request waits for a transfer slot before it
// is told to slow down.
const slotWait = 30 * time.Second

// Server serves the S3 API over a Namespace. It is an http.Handler, safe
// for concurrent use; Close stops its background work.
type Server struct {
	ns      router.Namespace
	cfg     Config
	log     *slog.Logger
	buckets *buckets
	anon    map[string]bool
	auth    *verifier
	spool   *spool
	tokens  *tokenCodec
	started time.Time

	slots   chan struct{} // one per transfer in flight
	waiting atomic.Int64  // requests waiting for a slot

	idPrefix string
	idSeq    atomic.Uint64

	zeroCopyChunks atomic.Int64 // GET chunks sent from page files with sendfile
	mappedChunks   atomic.Int64 // GET chunks written from mappings of page files (clients on this host)

	stop      chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup // the spool janitor
}

// New checks cfg and returns a Server over ns.
func New(ns router.Namespace, cfg Config) (*Server, error) {
	if ns == nil {
		return nil, errors.New("s3gw: no namespace")
	}
	if len(cfg.Credentials) == 0 && len(cfg.Anonymous) == 0 {
		return nil, errors.New("no credentials and no anonymous buckets: give a credentials file (--credentials FILE or $LAKEMESH_S3_CREDENTIALS), or --anonymous BUCKET to serve a bucket without signatures")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = 7 * 24 * time.Hour
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = DefaultSpoolDir()
	}
	b, err := newBuckets(cfg.Mounts, cfg.BucketDir)
	if err != nil {
		return nil, err
	}
	anon := map[string]bool{}
	for _, name := range cfg.Anonymous {
		if _, _, ok := b.path(name); !ok {
			return nil, fmt.Errorf("anonymous bucket %q is not a bucket of this gateway (mount buckets: %s)", name, strings.Join(b.names, ", "))
		}
		anon[name] = true
	}
	sp, err := openSpool(cfg.SpoolDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	var id [4]byte
	rand.Read(id[:])
	s := &Server{
		ns:       ns,
		cfg:      cfg,
		log:      cfg.Logger,
		buckets:  b,
		anon:     anon,
		auth:     &verifier{creds: cfg.Credentials, region: cfg.Region, now: cfg.Now, noSigV2: cfg.DisableSigV2},
		spool:    sp,
		tokens:   newTokenCodec(cfg.Credentials),
		started:  time.Now(),
		slots:    make(chan struct{}, cfg.MaxTransfers),
		idPrefix: strings.ToUpper(hex.EncodeToString(id[:])),
		stop:     make(chan struct{}),
	}
	s.bg.Add(1)
	go s.janitor()
	return s, nil
}

// Close stops the spool janitor. In-flight requests are the http.Server's
// to drain (Shutdown).
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	s.bg.Wait()
	return nil
}

// Buckets lists the mount buckets and, with a bucket directory, that
// directory, for the gateway's start line.
func (s *Server) Buckets() (mounts []string, bucketDir string) {
	return slices.Clone(s.buckets.names), s.buckets.dir
}

// PrepareBucketDir creates the bucket directory if there is one, so the
// gateway fails at start, not at the first CreateBucket, when it cannot.
func (s *Server) PrepareBucketDir(ctx context.Context) error {
	if s.buckets.dir == "" {
		return nil
	}
	if err := s.ns.Mkdir(ctx, s.buckets.dir); err != nil {
		return fmt.Errorf("bucket directory %s: %w", s.buckets.dir, err)
	}
	return nil
}

// janitor removes expired multipart uploads now and then.
func (s *Server) janitor() {
	defer s.bg.Done()
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		s.spool.expire(s.cfg.UploadTTL)
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// request is one S3 request being served.
type request struct {
	*http.Request
	id     string
	query  url.Values
	bucket string
	key    string
	sig    *signature // nil for an anonymous request
	sent   sentChunks // how a GET's body went out
}

// sentChunks counts how a GET's chunks went out, for the request's log
// line: sent with sendfile from page files (a client on another host),
// written from their mappings (a client on this host), or read into a
// buffer first.
type sentChunks struct{ sendfile, mapped, buffered int }

// accessKey names the request's key for logs ("" when anonymous).
func (r *request) accessKey() string {
	if r.sig == nil {
		return ""
	}
	return r.sig.accessKey
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	req := &request{Request: r, id: fmt.Sprintf("%s%012X", s.idPrefix, s.idSeq.Add(1))}
	sw.Header().Set("X-Amz-Request-Id", req.id)
	sw.Header().Set("Server", "lakemesh")
	op, err := s.prepare(req)
	if err == nil {
		err = op.run(s, sw, req)
	}
	if errors.Is(err, errClientGone) {
		s.log.Debug("s3 client went away", "id", req.id, "op", op.name, "bucket", req.bucket, "key", req.key, "bytes", sw.bytes, "err", err)
		panic(http.ErrAbortHandler)
	}
	var ae *apiError
	if err != nil {
		ae = toAPIError(err, targetRead, req.key)
	}
	level := slog.LevelDebug
	if ae != nil && ae.status() >= 500 {
		level = slog.LevelWarn
	}
	// Never the query or headers: presigned URLs carry signatures.
	attrs := []any{"id", req.id, "op", op.name, "method", r.Method, "bucket", req.bucket, "key", req.key,
		"access_key", req.accessKey(), "remote", r.RemoteAddr, "took", time.Since(start)}
	if ae != nil {
		attrs = append(attrs, "code", ae.Code, "err", ae.Message)
	}
	if ae != nil && sw.wrote {
		// The status and part of the body are out: all that is left is
		// to cut the response short, so the client sees a broken reply
		// rather than a complete short one.
		s.log.Warn("s3 reply failed after it started", append(attrs, "bytes", sw.bytes)...)
		panic(http.ErrAbortHandler)
	}
	if ae != nil {
		s.writeError(sw, req, ae)
	}
	if c := req.sent; c != (sentChunks{}) {
		attrs = append(attrs, "chunks_sendfile", c.sendfile, "chunks_mapped", c.mapped, "chunks_buffered", c.buffered)
	}
	s.log.Log(r.Context(), level, "s3 request", append(attrs, "status", sw.status, "bytes", sw.bytes)...)
}

// prepare parses a request, finds its operation and checks its
// signature.
func (s *Server) prepare(req *request) (operation, error) {
	r := req.Request
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return operation{name: "Invalid"}, s3err("InvalidArgument", "the query string is malformed: %v", err)
	}
	req.query = q
	p, ok := strings.CutPrefix(r.URL.Path, "/")
	if !ok {
		return operation{name: "Invalid"}, s3err("InvalidRequest", "the path must start with /")
	}
	req.bucket, req.key, _ = strings.Cut(p, "/")
	op := route(r.Method, req.bucket, req.key, q, r.Header)
	sig, aerr := s.auth.verify(r, q)
	if aerr != nil {
		return op, aerr
	}
	req.sig = sig
	if sig == nil && !(op.read && s.anon[req.bucket]) {
		return op, s3err("AccessDenied", "anonymous access to this operation is not allowed; sign the request with a key of the gateway's credentials")
	}
	if op.writes {
		if aerr := checkStorageClass(r.Header); aerr != nil {
			return op, aerr
		}
	}
	return op, nil
}

// writeError sends an S3 error reply: XML, except for HEAD and 304, which
// have no body.
func (s *Server) writeError(w http.ResponseWriter, req *request, ae *apiError) {
	status := ae.status()
	for _, h := range []string{"Content-Length", "Content-Range", "Content-Type", "Accept-Ranges"} {
		w.Header().Del(h)
	}
	for k, v := range ae.header {
		w.Header().Set(k, v)
	}
	if req.Method == http.MethodHead || status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	reply := errorReply{
		Code: ae.Code, Message: ae.Message, RequestID: req.id, Resource: req.URL.Path,
		AWSAccessKeyID: ae.AccessKeyID, StringToSign: ae.StringToSign, CanonicalRequest: ae.CanonicalRequest, Region: ae.Region,
	}
	if req.key != "" {
		reply.Key = req.key
	}
	if req.bucket != "" {
		reply.BucketName = req.bucket
	}
	writeXML(w, status, reply)
}

// writeXML sends an XML document with its length.
func writeXML(w http.ResponseWriter, status int, v any) error {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	if err := xml.NewEncoder(&b).Encode(v); err != nil {
		return s3err("InternalError", "encode reply: %v", err)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
	w.WriteHeader(status)
	_, err := w.Write(b.Bytes())
	return err
}

// openRead takes a transfer slot and opens version e of the file for
// reading (key names it in errors); done closes the reader and gives the
// slot back.
func (s *Server) openRead(ctx context.Context, e router.Entry, key string) (rd router.Reader, done func(), err error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	if rd, err = s.ns.OpenReader(e); err != nil {
		release()
		return nil, nil, toAPIError(err, targetRead, key)
	}
	return rd, func() { rd.Close(); release() }, nil
}

// acquire takes a transfer slot, waiting a bounded time in a bounded
// queue; release gives it back.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-s.slots }
	select {
	case s.slots <- struct{}{}:
		return release, nil
	default:
	}
	if s.waiting.Add(1) > int64(4*cap(s.slots)) {
		s.waiting.Add(-1)
		return nil, s3err("SlowDown", "too many transfers in flight; reduce your request rate")
	}
	defer s.waiting.Add(-1)
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, s3err("SlowDown", "too many transfers in flight; reduce your request rate")
	}
}

// statusWriter remembers what was sent, for logs and for knowing whether
// an error can still be a proper reply.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool // the status line is out
}

func (w *statusWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.status, w.wrote = status, true
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom passes r to the response's ReadFrom, so that a GET's verified
// page file sections go out with sendfile (see sendSections).
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// Flush sends what is buffered (CompleteMultipartUpload's keep-alive).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
