package s3gw

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

type listEntry struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	StorageClass string
}

type commonPrefix struct {
	Prefix string
}

type listBucketResultV2 struct {
	XMLName               xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string
	Prefix                string
	Delimiter             string `xml:",omitempty"`
	MaxKeys               int
	KeyCount              int
	IsTruncated           bool
	ContinuationToken     string `xml:",omitempty"`
	NextContinuationToken string `xml:",omitempty"`
	StartAfter            string `xml:",omitempty"`
	EncodingType          string `xml:",omitempty"`
	Contents              []listEntry
	CommonPrefixes        []commonPrefix
}

type listBucketResultV1 struct {
	XMLName        xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name           string
	Prefix         string
	Marker         string
	NextMarker     string `xml:",omitempty"`
	Delimiter      string `xml:",omitempty"`
	MaxKeys        int
	IsTruncated    bool
	EncodingType   string `xml:",omitempty"`
	Contents       []listEntry
	CommonPrefixes []commonPrefix
}

// listQuery is what ListObjects (both versions) share.
type listQuery struct {
	prefix, delimiter string
	maxKeys           int
	encode            func(string) string // the encoding-type=url encoding, or none
	encodingType      string
}

func parseListQuery(req *request) (listQuery, *apiError) {
	q := req.query
	lq := listQuery{prefix: q.Get("prefix"), delimiter: q.Get("delimiter"), maxKeys: 1000}
	if aerr := checkPrefix("prefix", lq.prefix); aerr != nil {
		return lq, aerr
	}
	if aerr := checkPrefix("delimiter", lq.delimiter); aerr != nil {
		return lq, aerr
	}
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return lq, s3err("InvalidArgument", "max-keys %q is not a non-negative integer", v)
		}
		lq.maxKeys = min(n, 1000)
	}
	var aerr *apiError
	lq.encode, lq.encodingType, aerr = parseEncodingType(q)
	return lq, aerr
}

// parseEncodingType reads a listing's encoding-type: "url" URL-encodes
// the keys and prefixes of the reply; there is no other.
func parseEncodingType(q url.Values) (encode func(string) string, encodingType string, aerr *apiError) {
	switch et := q.Get("encoding-type"); et {
	case "":
		return func(s string) string { return s }, "", nil
	case "url":
		return func(s string) string { return uriEncode(s, false) }, "url", nil
	default:
		return nil, "", s3err("InvalidArgument", "encoding-type %q is not supported; the only one is url", et)
	}
}

func (s *Server) listObjectsV2(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	lq, aerr := parseListQuery(req)
	if aerr != nil {
		return aerr
	}
	root, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	spec := listSpec{root: root, prefix: lq.prefix, delimiter: lq.delimiter}
	token := req.query.Get("continuation-token")
	startAfter := req.query.Get("start-after")
	if token != "" {
		t, aerr := s.tokens.decode(token, req.bucket, lq.prefix, lq.delimiter)
		if aerr != nil {
			return aerr
		}
		spec.after, spec.afterAll, spec.resume = t.After, t.All, t.Marks
	} else {
		if aerr := checkPrefix("start-after", startAfter); aerr != nil {
			return aerr
		}
		spec.after = startAfter
	}
	items, truncated, marks, err := s.list(ctx, spec, lq.maxKeys)
	if err != nil {
		return toAPIError(err, targetBucket, "")
	}
	out := listBucketResultV2{
		Name: req.bucket, Prefix: lq.encode(lq.prefix), Delimiter: lq.encode(lq.delimiter), MaxKeys: lq.maxKeys,
		KeyCount: len(items), IsTruncated: truncated, ContinuationToken: token, EncodingType: lq.encodingType,
	}
	if startAfter != "" {
		out.StartAfter = lq.encode(startAfter)
	}
	out.Contents, out.CommonPrefixes = s.listReply(items, lq.encode)
	if truncated {
		last := items[len(items)-1]
		out.NextContinuationToken = s.tokens.encode(listToken{
			Bucket: req.bucket, Prefix: lq.prefix, Delimiter: lq.delimiter, After: last.key, All: last.prefix, Marks: marks,
		})
	}
	return writeXML(w, http.StatusOK, out)
}

func (s *Server) listObjectsV1(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	lq, aerr := parseListQuery(req)
	if aerr != nil {
		return aerr
	}
	root, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	marker := req.query.Get("marker")
	if aerr := checkPrefix("marker", marker); aerr != nil {
		return aerr
	}
	spec := listSpec{root: root, prefix: lq.prefix, delimiter: lq.delimiter, after: marker}
	// A marker that is a common prefix (a NextMarker of ours) stands for
	// every key below it.
	w0 := walker{spec: spec}
	spec.afterAll = marker != "" && w0.commonPrefix(marker) == marker
	items, truncated, _, err := s.list(ctx, spec, lq.maxKeys)
	if err != nil {
		return toAPIError(err, targetBucket, "")
	}
	out := listBucketResultV1{
		Name: req.bucket, Prefix: lq.encode(lq.prefix), Marker: lq.encode(marker), Delimiter: lq.encode(lq.delimiter),
		MaxKeys: lq.maxKeys, IsTruncated: truncated, EncodingType: lq.encodingType,
	}
	out.Contents, out.CommonPrefixes = s.listReply(items, lq.encode)
	if truncated {
		out.NextMarker = lq.encode(items[len(items)-1].key)
	}
	return writeXML(w, http.StatusOK, out)
}

// list walks up to maxKeys items from spec's position; truncated says
// whether more follow, and marks is where the walk stands after the last
// item.
func (s *Server) list(ctx context.Context, spec listSpec, maxKeys int) (items []listItem, truncated bool, marks []levelMark, err error) {
	w := newWalker(s.ns, spec)
	for len(items) < maxKeys {
		it, ok, err := w.next(ctx)
		if err != nil {
			return nil, false, nil, err
		}
		if !ok {
			return items, false, nil, nil
		}
		items = append(items, it)
	}
	if maxKeys == 0 {
		return nil, false, nil, nil
	}
	marks = w.position()
	_, more, err := w.next(ctx)
	if err != nil {
		return nil, false, nil, err
	}
	return items, more, marks, nil
}

func (s *Server) listReply(items []listItem, encode func(string) string) ([]listEntry, []commonPrefix) {
	var contents []listEntry
	var prefixes []commonPrefix
	for _, it := range items {
		if it.prefix {
			prefixes = append(prefixes, commonPrefix{Prefix: encode(it.key)})
			continue
		}
		mod := it.entry.ModTime
		if mod.IsZero() {
			mod = s.started
		}
		size := it.entry.Size
		if it.entry.IsDir {
			size = 0
		}
		contents = append(contents, listEntry{
			Key: encode(it.key), LastModified: xmlTime(mod), ETag: etagOf(it.entry), Size: size, StorageClass: "STANDARD",
		})
	}
	return contents, prefixes
}

// listToken is a ListObjectsV2 continuation token: the walk's position
// and the listing it belongs to. It is signed, since the level marks are
// List tokens passed to the lake; a token whose signature does not check
// (the gateway's key changed) resumes from its key alone, which is what
// a client's start-after could ask for anyway.
type listToken struct {
	Bucket    string      `json:"b"`
	Prefix    string      `json:"p,omitempty"`
	Delimiter string      `json:"d,omitempty"`
	After     string      `json:"a"`
	All       bool        `json:"c,omitempty"`
	Marks     []levelMark `json:"m,omitempty"`
}

type tokenCodec struct{ key []byte }

// newTokenCodec keys token signatures by the credentials, so gateways
// that share a credentials file (and restarts) accept each other's
// tokens; without credentials the key is random.
func newTokenCodec(creds Credentials) *tokenCodec {
	if len(creds) == 0 {
		key := make([]byte, 32)
		rand.Read(key)
		return &tokenCodec{key: key}
	}
	ids := make([]string, 0, len(creds))
	for id := range creds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	m := hmac.New(sha256.New, []byte("lakemesh s3 listing token"))
	for _, id := range ids {
		m.Write([]byte(id + "\x00" + creds[id] + "\x00"))
	}
	return &tokenCodec{key: m.Sum(nil)}
}

func (c *tokenCodec) sign(b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

func (c *tokenCodec) encode(t listToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(c.sign(b))
}

func (c *tokenCodec) decode(s, bucket, prefix, delimiter string) (listToken, *apiError) {
	bad := s3err("InvalidArgument", "the continuation token provided is incorrect")
	body, mac, ok := strings.Cut(s, ".")
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	m, err2 := base64.RawURLEncoding.DecodeString(mac)
	var t listToken
	if !ok || err1 != nil || err2 != nil || json.Unmarshal(b, &t) != nil {
		return listToken{}, bad
	}
	if t.Bucket != bucket || t.Prefix != prefix || t.Delimiter != delimiter {
		return listToken{}, s3err("InvalidArgument", "the continuation token belongs to another listing (bucket, prefix or delimiter differ)")
	}
	if !hmac.Equal(m, c.sign(b)) {
		t.Marks = nil
	}
	if aerr := checkPrefix("continuation token", t.After); aerr != nil {
		return listToken{}, bad
	}
	return t, nil
}
