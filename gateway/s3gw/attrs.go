package s3gw

import (
	"errors"
	"net/http"
	"strings"

	"github.com/lakemesh/lakemesh/ufs"
)

// Object attrs: the standard headers a client gives with a PUT, a
// CreateMultipartUpload or a CopyObject that replaces them
// (Content-Type, Content-Encoding, Content-Language, Content-Disposition,
// Cache-Control, Expires) and its user metadata (x-amz-meta-*) are
// stored with the object in its lake (ufs.Attrs; router.PutAttrs) and
// come back on GET and HEAD. A lake that keeps none (hdfs) drops the
// standard headers and refuses user metadata with NotImplemented.

// attrHeaders are the standard headers kept with an object.
var attrHeaders = []string{"Content-Type", "Content-Encoding", "Content-Language", "Content-Disposition", "Cache-Control", "Expires"}

// requestAttrs are the attrs a write request gives its object.
func requestAttrs(h http.Header) (ufs.Attrs, *apiError) {
	attrs := ufs.Attrs{}
	for _, name := range attrHeaders {
		v := strings.TrimSpace(h.Get(name))
		if name == "Content-Encoding" {
			v = withoutAWSChunked(v)
		}
		if v != "" {
			attrs[strings.ToLower(name)] = v
		}
	}
	for name, vs := range h {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, ufs.UserAttrPrefix) {
			attrs[lower] = strings.TrimSpace(strings.Join(vs, ","))
		}
	}
	if err := attrs.Validate(); err != nil {
		if errors.Is(err, ufs.ErrAttrsTooLarge) {
			return nil, s3err("MetadataTooLarge", "your metadata headers exceed the maximum allowed metadata size: %v", err)
		}
		return nil, s3err("InvalidArgument", "%v", err)
	}
	return attrs, nil
}

// withoutAWSChunked drops "aws-chunked", which says how the request's
// body is framed (streaming SigV4), from a Content-Encoding: S3 does not
// store it.
func withoutAWSChunked(v string) string {
	var kept []string
	for enc := range strings.SplitSeq(v, ",") {
		if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "aws-chunked") {
			kept = append(kept, enc)
		}
	}
	return strings.Join(kept, ",")
}

// setAttrHeaders sets an object's attrs on a GET or HEAD reply. A
// Content-Type the lake defaulted (octet-stream) or none is guessed from
// the key's extension, as for files written by other front ends.
func setAttrHeaders(h http.Header, key string, attrs ufs.Attrs) {
	ct := attrs["content-type"]
	if ct == "" || ct == "application/octet-stream" || ct == "binary/octet-stream" {
		ct = contentType(key)
	}
	h.Set("Content-Type", ct)
	for k, v := range attrs {
		switch {
		case k == "content-type":
		case strings.HasPrefix(k, ufs.UserAttrPrefix):
			h[http.CanonicalHeaderKey(k)] = []string{v}
		default:
			h.Set(k, v)
		}
	}
}
