package ufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithytime "github.com/aws/smithy-go/time"
)

var _ AttrFS = (*s3FS)(nil)

// s3Attrs are Attrs as S3 requests carry them: the standard headers in
// fields of their own, and user metadata without its prefix, its non-ASCII
// values RFC 2047-encoded. S3 wants them so: raw UTF-8 in a header fails
// the request's signature, and S3 decodes encoded words before it stores a
// value (MinIO stores them as sent; either way they come back encoded).
type s3Attrs struct {
	contentType, contentEncoding, contentLanguage, contentDisposition, cacheControl *string
	expires                                                                         *time.Time
	// expiresRaw is the Expires header as HEAD returned it, which may not
	// be a date if another writer put it there.
	expiresRaw string
	metadata   map[string]string
}

// s3AttrsOf turns attrs that passed Validate into their S3 form.
func s3AttrsOf(attrs Attrs) (s3Attrs, error) {
	var s s3Attrs
	for k, v := range attrs {
		switch k {
		case "content-type":
			s.contentType = aws.String(v)
		case "content-encoding":
			s.contentEncoding = aws.String(v)
		case "content-language":
			s.contentLanguage = aws.String(v)
		case "content-disposition":
			s.contentDisposition = aws.String(v)
		case "cache-control":
			s.cacheControl = aws.String(v)
		case "expires":
			// AWS keeps any Expires as sent, but MinIO silently drops one
			// that is not a date, and the SDK sends only dates: refusing
			// is the only way not to lose it on some stores.
			t, err := http.ParseTime(v)
			if err != nil {
				return s3Attrs{}, fmt.Errorf("attr %q: %w: value %q is not an HTTP date, which S3-compatible stores do not all keep", k, ErrInvalidAttrs, v)
			}
			s.expires = &t
		default: // x-amz-meta-NAME, as Validate checked
			if s.metadata == nil {
				s.metadata = make(map[string]string)
			}
			s.metadata[strings.TrimPrefix(k, UserAttrPrefix)] = mime.QEncoding.Encode("UTF-8", v)
		}
	}
	return s, nil
}

// s3AttrsOfHead takes an object's attrs from its HEAD reply, as the store
// keeps them, so a copy can carry them unchanged.
func s3AttrsOfHead(out *s3.HeadObjectOutput) s3Attrs {
	return s3Attrs{
		contentType:        out.ContentType,
		contentEncoding:    out.ContentEncoding,
		contentLanguage:    out.ContentLanguage,
		contentDisposition: out.ContentDisposition,
		cacheControl:       out.CacheControl,
		expires:            out.Expires, // nil if not a date: a copy loses it
		expiresRaw:         aws.ToString(out.ExpiresString),
		metadata:           out.Metadata,
	}
}

// attrs is the Attrs callers see: user metadata keys lower-case with their
// prefix, values decoded.
func (s s3Attrs) attrs() Attrs {
	a := Attrs{}
	for k, v := range map[string]*string{
		"content-type":        s.contentType,
		"content-encoding":    s.contentEncoding,
		"content-language":    s.contentLanguage,
		"content-disposition": s.contentDisposition,
		"cache-control":       s.cacheControl,
	} {
		if v := aws.ToString(v); v != "" {
			a[k] = v
		}
	}
	switch {
	case s.expiresRaw != "":
		a["expires"] = s.expiresRaw
	case s.expires != nil:
		a["expires"] = s.expires.UTC().Format(http.TimeFormat)
	}
	var dec mime.WordDecoder
	for k, v := range s.metadata {
		if strings.Contains(v, "=?") {
			if d, err := dec.DecodeHeader(v); err == nil {
				v = d
			}
		}
		a[UserAttrPrefix+strings.ToLower(k)] = v
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

func (s s3Attrs) setPut(in *s3.PutObjectInput) {
	in.ContentType, in.ContentEncoding, in.ContentLanguage = s.contentType, s.contentEncoding, s.contentLanguage
	in.ContentDisposition, in.CacheControl, in.Expires, in.Metadata = s.contentDisposition, s.cacheControl, s.expires, s.metadata
}

func (s s3Attrs) setCopy(in *s3.CopyObjectInput) {
	in.ContentType, in.ContentEncoding, in.ContentLanguage = s.contentType, s.contentEncoding, s.contentLanguage
	in.ContentDisposition, in.CacheControl, in.Expires, in.Metadata = s.contentDisposition, s.cacheControl, s.expires, s.metadata
}

func (s s3Attrs) setMultipart(in *s3.CreateMultipartUploadInput) {
	in.ContentType, in.ContentEncoding, in.ContentLanguage = s.contentType, s.contentEncoding, s.contentLanguage
	in.ContentDisposition, in.CacheControl, in.Expires, in.Metadata = s.contentDisposition, s.cacheControl, s.expires, s.metadata
}

// CreateAttrs uploads the object with attrs in the same request (or in the
// CreateMultipartUpload of a multipart upload), so S3 publishes them with
// the bytes.
func (f *s3FS) CreateAttrs(ctx context.Context, p string, r io.Reader, attrs Attrs) (FileInfo, error) {
	p, err := f.arg(ctx, "put", p)
	if err != nil {
		return FileInfo{}, err
	}
	if err := attrs.Validate(); err != nil {
		return FileInfo{}, fmt.Errorf("s3 put %s: %w", f.where(p), err)
	}
	s, err := s3AttrsOf(attrs)
	if err != nil {
		return FileInfo{}, fmt.Errorf("s3 put %s: %w", f.where(p), err)
	}
	return f.put(ctx, p, r, s)
}

// StatAttrs is one HEAD, which has the version and the attrs together.
func (f *s3FS) StatAttrs(ctx context.Context, p string) (FileInfo, Attrs, error) {
	fi, s, err := f.stat(ctx, p)
	if err != nil || fi.IsDir {
		return fi, nil, err
	}
	return fi, s.attrs(), nil
}

// stat is Stat, with the attrs of a file.
func (f *s3FS) stat(ctx context.Context, p string) (FileInfo, s3Attrs, error) {
	p, err := f.arg(ctx, "stat", p)
	if err != nil {
		return FileInfo{}, s3Attrs{}, err
	}
	if p == "" {
		return FileInfo{IsDir: true}, s3Attrs{}, nil
	}
	fi, s, err := f.headAttrs(ctx, p, "")
	if !errors.Is(err, ErrNotFound) {
		return fi, s, err
	}
	isDir, err := f.hasChildren(ctx, p)
	if err != nil {
		return FileInfo{}, s3Attrs{}, err
	}
	if !isDir {
		return FileInfo{}, s3Attrs{}, fmt.Errorf("s3 stat %s: %w", f.where(p), ErrNotFound)
	}
	return FileInfo{Path: p, IsDir: true}, s3Attrs{}, nil
}

// headAttrs stats one object, optionally only if it still has the given
// version, with its attrs.
func (f *s3FS) headAttrs(ctx context.Context, p, version string) (FileInfo, s3Attrs, error) {
	if f.lean != nil {
		if fi, attrs, ok, err := f.leanHead(ctx, p, version); ok {
			f.lean.heads.Add(1)
			return fi, attrs, err
		}
		f.lean.headsFellBack.Add(1)
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(f.bucket), Key: aws.String(f.key(p))}
	if version != "" {
		in.IfMatch = aws.String(quoteETag(version))
	}
	out, err := f.client.HeadObject(ctx, in)
	if err != nil {
		return FileInfo{}, s3Attrs{}, f.fail("head", p, err)
	}
	return FileInfo{
		Path:    p,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		Version: etagVersion(out.ETag),
	}, s3AttrsOfHead(out), nil
}

// leanHead is headAttrs through the lean path (s3_get.go). It answers a
// 200, a 404 and a 412; ok is false for anything else, which the SDK asks
// again, retries and says what is wrong with.
func (f *s3FS) leanHead(ctx context.Context, p, version string) (fi FileInfo, attrs s3Attrs, ok bool, err error) {
	status, h, ok := f.lean.head(ctx, f.key(p), version)
	switch {
	case !ok:
		return fi, attrs, false, nil
	case status == http.StatusOK:
		fi, attrs, ok = headReply(p, h)
		return fi, attrs, ok, nil
	case status == http.StatusNotFound:
		// As the SDK's: a HEAD's 404 has no body to tell a missing key
		// from a missing bucket.
		return fi, attrs, true, fmt.Errorf("s3 head %s: %w (HEAD answered %d)", f.where(p), ErrNotFound, status)
	case status == http.StatusPreconditionFailed:
		return fi, attrs, true, fmt.Errorf("s3 head %s: %w (HEAD answered %d)", f.where(p), ErrVersionChanged, status)
	}
	return fi, attrs, false, nil
}

// headReply takes what the SDK's HeadObject output would hold from the
// headers of a HEAD's 200 reply: size, modification time, ETag and the
// attrs. ok is false when a header the stat needs is missing or does not
// parse (the SDK is asked then).
func headReply(p string, h http.Header) (FileInfo, s3Attrs, bool) {
	size, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil || size < 0 {
		return FileInfo{}, s3Attrs{}, false
	}
	mod, err := smithytime.ParseHTTPDate(strings.TrimSpace(h.Get("Last-Modified")))
	if err != nil {
		return FileInfo{}, s3Attrs{}, false
	}
	etag := h.Get("ETag")
	if etag == "" {
		return FileInfo{}, s3Attrs{}, false
	}
	opt := func(name string) *string {
		if vs := h.Values(name); len(vs) > 0 {
			return aws.String(strings.TrimSpace(vs[0]))
		}
		return nil
	}
	a := s3Attrs{
		contentType:        opt("Content-Type"),
		contentEncoding:    opt("Content-Encoding"),
		contentLanguage:    opt("Content-Language"),
		contentDisposition: opt("Content-Disposition"),
		cacheControl:       opt("Cache-Control"),
	}
	if v := opt("Expires"); v != nil {
		a.expiresRaw = *v
		if t, err := smithytime.ParseHTTPDate(*v); err == nil {
			a.expires = &t
		}
	}
	const meta = "X-Amz-Meta-"
	for k, vs := range h {
		if len(k) >= len(meta) && strings.EqualFold(k[:len(meta)], meta) && len(vs) > 0 {
			if a.metadata == nil {
				a.metadata = make(map[string]string)
			}
			a.metadata[strings.ToLower(k[len(meta):])] = strings.TrimSpace(vs[0])
		}
	}
	return FileInfo{Path: p, Size: size, ModTime: mod, Version: etagVersion(&etag)}, a, true
}
