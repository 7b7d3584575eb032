package s3gw

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// maxObjectSize is the largest single PUT or copy S3 takes.
const maxObjectSize = 5 << 30

// putObject writes a whole object with one Namespace Put: the lake sees
// the old content or the new, never a part, and a body that fails
// verification leaves the old content.
func (s *Server) putObject(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	bucketPath, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	p, dir, aerr := keyPath(bucketPath, req.key)
	if aerr != nil {
		return aerr
	}
	if req.ContentLength > maxObjectSize {
		return s3err("EntityTooLarge", "a single PUT takes at most 5 GiB; use a multipart upload")
	}
	if dir {
		return s.putDirMarker(w, req, p)
	}
	attrs, aerr := requestAttrs(req.Header)
	if aerr != nil {
		return aerr
	}
	if aerr := s.writeConditions(ctx, req, p); aerr != nil {
		return aerr
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	putCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := s.body(req, cancel)
	if err != nil {
		return err
	}
	e, err := s.putAttrs(putCtx, p, body, attrs)
	if berr := body.failure(); berr != nil {
		if err == nil {
			s.log.Error("a Put succeeded although its body failed verification; the object may hold an unverified body", "path", p, "err", berr)
		}
		return berr
	}
	if err != nil {
		return toAPIError(err, targetWrite, req.key)
	}
	w.Header().Set("ETag", etagOf(e))
	if body.echoChecksums(w.Header()) {
		w.Header().Set("X-Amz-Checksum-Type", "FULL_OBJECT") // one PUT: the checksum is the object's
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// putDirMarker makes the directory a key ending in "/" names. Its body
// must be empty: a directory holds no bytes.
func (s *Server) putDirMarker(w http.ResponseWriter, req *request, p string) error {
	body, err := s.body(req, nil)
	if err != nil {
		return err
	}
	var one [1]byte
	if n, err := io.ReadFull(body, one[:]); n > 0 {
		return s3err("InvalidArgument", "key %q ends in \"/\", so it is a directory in the lake, which cannot hold a body", req.key)
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.ns.Mkdir(req.Context(), p); err != nil {
		return toAPIError(err, targetWrite, req.key)
	}
	w.Header().Set("ETag", emptyETag)
	w.WriteHeader(http.StatusOK)
	return nil
}

// writeConditions applies If-Match and If-None-Match to a write. The
// check and the write are two calls, so two racing conditional writes may
// both pass.
func (s *Server) writeConditions(ctx context.Context, req *request, p string) *apiError {
	ifMatch, ifNone := req.Header.Get("If-Match"), req.Header.Get("If-None-Match")
	if ifMatch == "" && ifNone == "" {
		return nil
	}
	e, err := s.ns.Stat(ctx, p)
	switch {
	case err == nil && !e.IsDir:
		return checkConditions(http.Header{"If-Match": {ifMatch}, "If-None-Match": {ifNone}}, e, false)
	case err == nil || errors.Is(err, ufs.ErrNotFound) || errors.Is(err, ufs.ErrNotDir):
		if ifMatch != "" {
			return noSuchKey(req.key)
		}
		return nil
	}
	return toAPIError(err, targetWrite, req.key)
}

type copyObjectResult struct {
	XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyObjectResult"`
	LastModified string
	ETag         string
}

// copyObject copies through the gateway: the source version is read page
// by page and written with one Put, so a copy across mounts (and lakes)
// works like one within a mount.
func (s *Server) copyObject(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	src, attrs, srcKey, err := s.copySource(ctx, req)
	if err != nil {
		return err
	}
	directive := strings.ToUpper(req.Header.Get("X-Amz-Metadata-Directive"))
	switch directive {
	case "", "COPY":
	case "REPLACE":
		var aerr *apiError
		if attrs, aerr = requestAttrs(req.Header); aerr != nil {
			return aerr
		}
	default:
		return s3err("InvalidArgument", "x-amz-metadata-directive %q must be COPY or REPLACE", req.Header.Get("X-Amz-Metadata-Directive"))
	}
	bucketPath, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	p, dir, aerr := keyPath(bucketPath, req.key)
	if aerr != nil {
		return aerr
	}
	if dir != src.IsDir {
		return s3err("InvalidRequest", "copy from %q to %q: a key ending in \"/\" (a directory) copies only to another such key", srcKey, req.key)
	}
	if src.Size > maxObjectSize {
		return s3err("InvalidRequest", "the source is larger than 5 GiB; copy it with a multipart upload (UploadPartCopy)")
	}
	if src.Path == p && directive != "REPLACE" {
		// With REPLACE, the object is written again with the new attrs.
		return s3err("InvalidRequest", "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata")
	}
	if aerr := s.writeConditions(ctx, req, p); aerr != nil {
		return aerr
	}
	if dir {
		if err := s.ns.Mkdir(ctx, p); err != nil {
			return toAPIError(err, targetWrite, req.key)
		}
		return writeXML(w, http.StatusOK, copyObjectResult{LastModified: xmlTime(src.ModTime), ETag: emptyETag})
	}
	rd, done, err := s.openRead(ctx, src, srcKey)
	if err != nil {
		return err
	}
	defer done()
	putCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := &failFast{r: &sectionReader{ctx: ctx, rd: rd, end: src.Size}, cancel: cancel}
	e, err := s.putAttrs(putCtx, p, in, attrs)
	if in.err != nil {
		return toAPIError(in.err, targetRead, srcKey)
	}
	if err != nil {
		return toAPIError(err, targetWrite, req.key)
	}
	return writeXML(w, http.StatusOK, copyObjectResult{LastModified: xmlTime(e.ModTime), ETag: etagOf(e)})
}

// copySource resolves x-amz-copy-source ("/bucket/key", URL-encoded,
// optionally "?versionId=") to its entry and applies the
// x-amz-copy-source-if-* conditions. It returns the source's attrs too.
func (s *Server) copySource(ctx context.Context, req *request) (router.Entry, ufs.Attrs, string, error) {
	v := req.Header.Get("X-Amz-Copy-Source")
	raw, version, _ := strings.Cut(v, "?")
	if version != "" {
		if q, err := url.ParseQuery(version); err != nil || (q.Get("versionId") != "" && q.Get("versionId") != "null") {
			return router.Entry{}, nil, "", s3err("InvalidArgument", "x-amz-copy-source: object versions are not supported")
		}
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		return router.Entry{}, nil, "", s3err("InvalidArgument", "x-amz-copy-source %q is not URL-encoded properly", v)
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(decoded, "/"), "/")
	if bucket == "" || key == "" {
		return router.Entry{}, nil, "", s3err("InvalidArgument", "x-amz-copy-source %q must be bucket/key", v)
	}
	e, attrs, err := s.statKey(ctx, bucket, key)
	if err != nil {
		return router.Entry{}, nil, key, err
	}
	conds := http.Header{}
	for _, c := range []string{"Match", "None-Match", "Modified-Since", "Unmodified-Since"} {
		if v := req.Header.Get("X-Amz-Copy-Source-If-" + c); v != "" {
			conds.Set("If-"+c, v)
		}
	}
	if aerr := checkConditions(conds, e, false); aerr != nil {
		return router.Entry{}, nil, key, aerr
	}
	return e, attrs, key, nil
}

// sectionReader reads [off, end) of a Reader sequentially.
type sectionReader struct {
	ctx context.Context
	rd  router.Reader
	off int64
	end int64
}

func (r *sectionReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.end-r.off)]
	n, err := readFull(r.ctx, r.rd, p, r.off)
	r.off += int64(n)
	if err != nil {
		return n, err
	}
	return n, nil
}

// failFast passes a Put's input through. At the input's first error it
// cancels the Put's context before the Put sees the error, and the error
// it returns never matches io.EOF or io.ErrUnexpectedEOF: a writer that
// took either for the end of its input (or half-closed its stream on an
// error) would otherwise store a short file.
type failFast struct {
	r      io.Reader
	cancel func()
	err    error
}

func (f *failFast) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		f.err = inputError{err}
		f.cancel()
		return n, f.err
	}
	return n, err
}

// inputError hides io.EOF and io.ErrUnexpectedEOF in the error it wraps
// and shows every other sentinel and type.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }

func (e inputError) Is(target error) bool {
	if target == io.EOF || target == io.ErrUnexpectedEOF {
		return false
	}
	return errors.Is(e.err, target)
}

func (e inputError) As(target any) bool { return errors.As(e.err, target) }

func (s *Server) deleteObject(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	bucketPath, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	if err := s.deleteKey(ctx, bucketPath, req.key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteKey deletes what a key names, as S3 does: a missing key is not an
// error, and the marker "d/" of a directory that still holds keys is gone
// while its keys stay. Directories a delete leaves empty are removed up to
// the bucket's root, as S3 prefixes vanish with their last key.
func (s *Server) deleteKey(ctx context.Context, bucketPath, key string) error {
	p, dir, aerr := keyPath(bucketPath, key)
	if aerr != nil {
		return aerr
	}
	e, err := s.ns.Stat(ctx, p)
	if errors.Is(err, ufs.ErrNotFound) || errors.Is(err, ufs.ErrNotDir) {
		return nil
	}
	if err != nil {
		return toAPIError(err, targetWrite, key)
	}
	if e.IsDir != dir {
		return nil // "d" does not name directory d, nor "f/" file f
	}
	err = s.ns.Remove(ctx, p)
	switch {
	case err == nil:
	case errors.Is(err, ufs.ErrNotFound), dir && errors.Is(err, ufs.ErrNotEmpty):
		return nil
	default:
		return toAPIError(err, targetWrite, key)
	}
	s.pruneEmpty(ctx, bucketPath, path.Dir(p))
	return nil
}

// pruneEmpty removes empty directories from dir up to (not including) the
// bucket's root. It stops at the first that is not empty, and never
// removes a bucket root or the bucket directory.
func (s *Server) pruneEmpty(ctx context.Context, bucketPath, dir string) {
	for dir != bucketPath && strings.HasPrefix(dir, bucketPath+"/") {
		if bd := s.buckets.dir; bd != "" && (dir == bd || path.Dir(dir) == bd) {
			return
		}
		if err := s.ns.Remove(ctx, dir); err != nil {
			if !errors.Is(err, ufs.ErrNotEmpty) && !errors.Is(err, ufs.ErrNotFound) {
				s.log.Debug("empty directory not removed", "path", dir, "err", err)
			}
			return
		}
		dir = path.Dir(dir)
	}
}

type deleteRequest struct {
	Quiet   bool
	Objects []struct {
		Key       string
		VersionID string `xml:"VersionId"`
	} `xml:"Object"`
}

type deleted struct {
	Key string
}

type deleteError struct {
	Key     string
	Code    string
	Message string
}

type deleteResult struct {
	XMLName xml.Name      `xml:"http://s3.amazonaws.com/doc/2006-03-01/ DeleteResult"`
	Deleted []deleted     `xml:"Deleted"`
	Errors  []deleteError `xml:"Error"`
}

// deleteParallel bounds the deletes of one DeleteObjects in flight.
const deleteParallel = 8

func (s *Server) deleteObjects(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	body, err := s.smallBody(req, 2<<20)
	if err != nil {
		return err
	}
	var in deleteRequest
	if err := xml.Unmarshal(body, &in); err != nil {
		return s3err("MalformedXML", "the Delete document is not valid XML: %v", err)
	}
	if len(in.Objects) == 0 || len(in.Objects) > 1000 {
		return s3err("MalformedXML", "a Delete document names 1 to 1000 objects, not %d", len(in.Objects))
	}
	bucketPath, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	var out deleteResult
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteParallel)
	for _, o := range in.Objects {
		g.Go(func() error {
			var err error
			if o.VersionID != "" && o.VersionID != "null" {
				err = s3err("InvalidArgument", "object versions are not supported")
			} else {
				err = s.deleteKey(gctx, bucketPath, o.Key)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ae := toAPIError(err, targetWrite, o.Key)
				out.Errors = append(out.Errors, deleteError{Key: o.Key, Code: ae.Code, Message: ae.Message})
			} else if !in.Quiet {
				out.Deleted = append(out.Deleted, deleted{Key: o.Key})
			}
			return nil
		})
	}
	g.Wait()
	return writeXML(w, http.StatusOK, out)
}

// s3StorageClasses are the storage classes S3 knows. The gateway writes
// every object to its lake the same way whichever a client names; one
// that is not an S3 class is refused, as S3 does.
var s3StorageClasses = map[string]bool{
	"STANDARD": true, "REDUCED_REDUNDANCY": true, "STANDARD_IA": true, "ONEZONE_IA": true,
	"INTELLIGENT_TIERING": true, "GLACIER": true, "DEEP_ARCHIVE": true, "OUTPOSTS": true, "GLACIER_IR": true,
	"SNOW": true, "EXPRESS_ONEZONE": true, "FSX_OPENZFS": true, "FSX_ONTAP": true,
}

func checkStorageClass(h http.Header) *apiError {
	if sc := h.Get("X-Amz-Storage-Class"); sc != "" && !s3StorageClasses[sc] {
		return s3err("InvalidStorageClass", "the storage class %q is not an S3 storage class", truncate(sc, 64))
	}
	return nil
}

// lender is a namespace that lends journal files (*router.Client).
type lender interface {
	LendSpool(ctx context.Context, p string, attrs ufs.Attrs) (*router.LentSpool, error)
}

// putAttrs writes a whole object from r: into a journal file that the
// node taking the path's writes lends the gateway, when that node is on
// this host and journals the write (router.LentSpool: the bytes are
// copied once, into the journal, and never sent), else with one Put. An
// input that fails writes nothing either way.
func (s *Server) putAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (router.Entry, error) {
	if l, ok := s.ns.(lender); ok {
		if lent, err := l.LendSpool(ctx, p, attrs); err == nil {
			defer lent.Close() // a file not committed is removed
			buf := getChunk(chunkSize)
			n, err := io.CopyBuffer(io.NewOffsetWriter(lent, 0), r, *buf)
			putChunk(buf)
			if err != nil {
				return router.Entry{}, fmt.Errorf("put %s: read input: %w; nothing was written", p, err)
			}
			return lent.Commit(ctx, n)
		}
	}
	return s.ns.PutAttrs(ctx, p, r, attrs)
}
