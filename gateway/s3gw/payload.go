package s3gw

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/xxh3"
)

// A request body is verified while it streams, never buffered whole:
// the signed SHA-256, Content-MD5, x-amz-checksum-* headers and trailers
// are compared when the body ends, aws-chunked chunk signatures at the
// end of each chunk. A body that fails (a mismatch, a short body, a
// broken chunk) returns an *apiError instead of io.EOF, so the Put or
// part file it feeds fails and nothing is written: lake Creates are
// atomic, and the spool renames a part into place only after its body
// verified.

// maxChunkSize bounds one aws-chunked chunk (S3's largest object).
const maxChunkSize = 5 << 30

// checksumAlgorithms are the x-amz-checksum-* algorithms S3 knows. The
// xxhash digests are big-endian, as the SDKs send them.
var checksumAlgorithms = map[string]func() hash.Hash{
	"crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"crc64nvme": func() hash.Hash { return crc64.New(crc64NVMETable) },
	"md5":       md5.New,
	"sha1":      sha1.New,
	"sha256":    sha256.New,
	"sha512":    sha512.New,
	"xxhash64":  func() hash.Hash { return xxhash.New() },
	"xxhash3":   func() hash.Hash { return xxh3.New() },
	"xxhash128": func() hash.Hash { return xxh3.New128() },
}

// checksumNames lists checksumAlgorithms for error messages.
var checksumNames = func() string {
	names := make([]string, 0, len(checksumAlgorithms))
	for n := range checksumAlgorithms {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}()

// checksumHeaderPrefix starts the header (or trailer) of a checksum;
// these headers of that form are not checksums.
const checksumHeaderPrefix = "x-amz-checksum-"

var checksumNotAlgorithm = map[string]bool{"algorithm": true, "type": true, "mode": true}

// crc64NVMETable is CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5),
// which hash/crc64 computes with the same init and final xor.
var crc64NVMETable = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// checksumHeader is one x-amz-checksum-<algorithm> header of a request.
type checksumHeader struct {
	name    string // the algorithm, a key of checksumAlgorithms
	header  string // x-amz-checksum-<name>
	newHash func() hash.Hash
	value   string
}

// checksumHeaders returns the request's x-amz-checksum-<algorithm>
// headers, refusing one whose algorithm the gateway does not know.
func checksumHeaders(h http.Header) ([]checksumHeader, *apiError) {
	var sums []checksumHeader
	for key, vals := range h {
		name, ok := strings.CutPrefix(strings.ToLower(key), checksumHeaderPrefix)
		if !ok || checksumNotAlgorithm[name] || len(vals) == 0 {
			continue
		}
		header := checksumHeaderPrefix + name
		newHash := checksumAlgorithms[name]
		if newHash == nil {
			return nil, s3err("InvalidArgument", "%s: not a checksum algorithm this gateway knows (%s)", truncate(header, 64), checksumNames)
		}
		sums = append(sums, checksumHeader{name: name, header: header, newHash: newHash, value: vals[0]})
	}
	return sums, nil
}

// digest decodes a base64 digest of the header's algorithm.
func (c checksumHeader) digest(b64 string) ([]byte, *apiError) {
	want, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(want) != c.newHash().Size() {
		return nil, s3err("InvalidArgument", "%s is not a base64 %s digest", c.header, c.name)
	}
	return want, nil
}

// body returns the request's payload, decoded (aws-chunked) and verified
// as its signature and headers say. onFail, when not nil, is called
// before the first error is returned: handlers pass the cancel function
// of the context their Put runs under, so a write whose body fails is
// abandoned even by a writer that took an early end for a complete file.
func (s *Server) body(req *request, onFail func()) (*verifiedBody, error) {
	return s.decodeBody(req, onFail, true)
}

// decodeBody is body; with bodyChecksums false, the x-amz-checksum-*
// headers are not the body's (a CompleteMultipartUpload's name the
// object's) and are left to the caller.
func (s *Server) decodeBody(req *request, onFail func(), bodyChecksums bool) (*verifiedBody, error) {
	payload := unsignedPayload
	if req.sig != nil {
		payload = req.sig.payload
	}
	h := req.Header
	vb := &verifiedBody{want: req.ContentLength, onFail: onFail}
	var src io.Reader = req.Body
	switch payload {
	case streamingSigned, streamingSignedTrailer, streamingUnsignedTrailer:
		dl := h.Get("X-Amz-Decoded-Content-Length")
		n, err := strconv.ParseInt(dl, 10, 64)
		if err != nil || n < 0 {
			return nil, s3err("MissingContentLength", "an aws-chunked body needs x-amz-decoded-content-length, the object's size (have %q)", dl)
		}
		cr := &chunkedReader{br: bufio.NewReaderSize(req.Body, 64<<10), trailer: payload != streamingSigned}
		if payload != streamingUnsignedTrailer {
			cr.signer = &chunkSigner{key: req.sig.key, amzDate: req.sig.amzDate, scope: req.sig.scope, prev: req.sig.seed}
		}
		src, vb.want, vb.chunked = cr, n, cr
	default:
		if payload != unsignedPayload {
			want, _ := hex.DecodeString(payload) // checked when the signature was
			vb.checks = append(vb.checks, digestCheck{h: sha256.New(), want: want, code: "XAmzContentSHA256Mismatch", what: "x-amz-content-sha256"})
		}
	}
	vb.r = src
	if v := h.Get("Content-MD5"); v != "" {
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(want) != md5.Size {
			return nil, s3err("InvalidDigest", "the Content-MD5 you specified is not a base64 MD5")
		}
		vb.checks = append(vb.checks, digestCheck{h: md5.New(), want: want, code: "BadDigest", what: "Content-MD5"})
	}
	// Every x-amz-checksum-<algorithm> header is checked; one this
	// gateway cannot check is refused, never ignored.
	if bodyChecksums {
		sums, aerr := checksumHeaders(h)
		if aerr != nil {
			return nil, aerr
		}
		for _, c := range sums {
			want, aerr := c.digest(c.value)
			if aerr != nil {
				return nil, aerr
			}
			vb.checks = append(vb.checks, digestCheck{h: c.newHash(), want: want, code: "BadDigest", what: c.header, header: c.header})
		}
	}
	if t := strings.ToLower(strings.TrimSpace(h.Get("X-Amz-Trailer"))); t != "" {
		if vb.chunked == nil {
			return nil, s3err("InvalidRequest", "x-amz-trailer needs an aws-chunked body with trailers")
		}
		name, ok := strings.CutPrefix(t, checksumHeaderPrefix)
		newHash := checksumAlgorithms[name]
		if !ok || newHash == nil {
			return nil, s3err("InvalidArgument", "trailer %q is not a checksum this gateway knows (%s)", truncate(t, 64), checksumNames)
		}
		vb.checks = append(vb.checks, digestCheck{h: newHash(), trailer: t, code: "BadDigest", what: t, header: t})
	}
	return vb, nil
}

// digestCheck compares a digest of the decoded body with what the client
// said, in a header or (trailer set) in a trailing header.
type digestCheck struct {
	h       hash.Hash
	want    []byte
	trailer string
	code    string
	what    string
	header  string // the x-amz-checksum-* header a reply echoes it in; "" for other digests
}

// verifiedBody feeds the decoded body through its digests and checks them
// and the length at the end. After a consumer of the body failed, failure
// tells whether the body was the cause.
type verifiedBody struct {
	r       io.Reader
	want    int64 // decoded length; -1 when unknown
	n       int64
	checks  []digestCheck
	chunked *chunkedReader
	onFail  func()
	err     error
	// verified holds the x-amz-checksum-* values that matched, by
	// header, once the body ended.
	verified map[string]string
}

func (v *verifiedBody) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		for _, c := range v.checks {
			c.h.Write(p[:n])
		}
		v.n += int64(n)
		if v.want >= 0 && v.n > v.want {
			return n, v.fail(s3err("IncompleteBody", "the body is longer than the %d bytes declared", v.want))
		}
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		if v.want >= 0 && v.n != v.want {
			return n, v.fail(s3err("IncompleteBody", "you did not provide the number of bytes declared: %d of %d", v.n, v.want))
		}
		for _, c := range v.checks {
			if aerr := v.verify(c); aerr != nil {
				return n, v.fail(aerr)
			}
		}
		return n, io.EOF
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = s3err("IncompleteBody", "the request body ended early: %v", err)
	}
	return n, v.fail(ae)
}

func (v *verifiedBody) verify(c digestCheck) *apiError {
	want := c.want
	if c.trailer != "" {
		val, ok := v.chunked.trailers[c.trailer]
		if !ok {
			return s3err("InvalidRequest", "the body did not end with the trailer %s that x-amz-trailer announced", c.trailer)
		}
		var err error
		if want, err = base64.StdEncoding.DecodeString(val); err != nil {
			return s3err("InvalidArgument", "trailer %s is not base64", c.trailer)
		}
	}
	if !bytes.Equal(c.h.Sum(nil), want) {
		return s3err(c.code, "the %s you specified did not match the checksum of the body received", c.what)
	}
	if c.header != "" {
		if v.verified == nil {
			v.verified = map[string]string{}
		}
		v.verified[c.header] = base64.StdEncoding.EncodeToString(want)
	}
	return nil
}

// echoChecksums sets, on a reply to a write whose body verified, the
// x-amz-checksum-* headers the client sent with it, as S3 does, and
// reports whether there were any.
func (v *verifiedBody) echoChecksums(h http.Header) bool {
	for name, val := range v.verified {
		h.Set(name, val)
	}
	return len(v.verified) > 0
}

// failure is the error the body failed with, nil if it did not.
func (v *verifiedBody) failure() error { return v.err }

func (v *verifiedBody) fail(err *apiError) error {
	if v.err == nil {
		v.err = err
		if v.onFail != nil {
			v.onFail()
		}
	}
	return v.err
}

// chunkedReader decodes an aws-chunked body:
//
//	<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//
// then, for the trailer variants, trailing "name:value\r\n" lines (and a
// signed trailer's x-amz-trailer-signature) and a final \r\n. Chunk data
// streams through as it arrives; a signed chunk's signature is checked
// when its data ends, before any byte of the next one is returned.
type chunkedReader struct {
	br       *bufio.Reader
	signer   *chunkSigner // nil for unsigned chunks
	trailer  bool
	left     int64 // data bytes of the current chunk not yet read
	sum      hash.Hash
	sig      string // the current chunk's signature
	trailers map[string]string
	done     bool
	atEOF    bool // the last readLine met the end of the body
	err      error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.nextChunk(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if c.sum != nil {
		c.sum.Write(p[:n])
	}
	if c.left == 0 {
		if aerr := c.endChunk(); aerr != nil {
			c.err = aerr
			return n, aerr
		}
		return n, nil
	}
	if err != nil {
		c.err = s3err("IncompleteBody", "the aws-chunked body ended inside a chunk: %v", err)
		return n, c.err
	}
	return n, nil
}

// nextChunk reads a chunk header; at the final chunk it reads the
// trailers and checks the end.
func (c *chunkedReader) nextChunk() *apiError {
	line, aerr := c.readLine()
	if aerr != nil {
		return aerr
	}
	sizeHex, ext, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeHex), 16, 64)
	if err != nil || size < 0 || size > maxChunkSize {
		return s3err("IncompleteBody", "malformed aws-chunked chunk header %q", truncate(line, 80))
	}
	if c.signer != nil {
		sig, ok := strings.CutPrefix(strings.TrimSpace(ext), "chunk-signature=")
		if !ok || len(sig) != 64 {
			return s3err("SignatureDoesNotMatch", "an aws-chunked chunk lacks its chunk-signature")
		}
		c.sig = sig
	}
	if size > 0 {
		c.left = size
		if c.signer != nil {
			if c.sum == nil {
				c.sum = sha256.New()
			}
			c.sum.Reset()
		}
		return nil
	}
	if c.signer != nil {
		if aerr := c.signer.verifyChunk(c.sig, emptySHA256); aerr != nil {
			return aerr
		}
	}
	if c.trailer {
		if aerr := c.readTrailers(); aerr != nil {
			return aerr
		}
	} else {
		// The final CRLF; some clients end right after the last chunk.
		line, aerr := c.readLine()
		switch {
		case aerr != nil && !c.atEOF:
			return aerr
		case aerr == nil && line != "":
			return s3err("IncompleteBody", "unexpected data after the last aws-chunked chunk")
		}
	}
	c.done = true
	return nil
}

// endChunk checks the CRLF after a chunk's data and its signature.
func (c *chunkedReader) endChunk() *apiError {
	var crlf [2]byte
	if _, err := io.ReadFull(c.br, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
		return s3err("IncompleteBody", "an aws-chunked chunk does not end with CRLF")
	}
	if c.signer != nil {
		return c.signer.verifyChunk(c.sig, hex.EncodeToString(c.sum.Sum(nil)))
	}
	return nil
}

// readTrailers reads "name:value" lines up to an empty line (or the end
// of the body).
func (c *chunkedReader) readTrailers() *apiError {
	c.trailers = map[string]string{}
	var signed strings.Builder
	trailerSig := ""
	for i := 0; ; i++ {
		line, aerr := c.readLine()
		if aerr != nil {
			if i > 0 && c.atEOF {
				break
			}
			return aerr
		}
		if line == "" {
			// Some clients (minio-go) end each trailing header with
			// "\n" and put a blank line before the signature's.
			if c.signer != nil && trailerSig == "" && c.nextIsTrailerSignature() {
				continue
			}
			break
		}
		if i >= 16 {
			return s3err("InvalidRequest", "too many trailing headers")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return s3err("IncompleteBody", "malformed trailing header %q", truncate(line, 80))
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if name == "x-amz-trailer-signature" {
			trailerSig = value
			continue
		}
		c.trailers[name] = value
		signed.WriteString(name + ":" + value + "\n")
	}
	if c.signer != nil {
		return c.signer.verifyTrailer(trailerSig, signed.String())
	}
	return nil
}

// nextIsTrailerSignature reports whether the next line is a signed
// trailer's x-amz-trailer-signature.
func (c *chunkedReader) nextIsTrailerSignature() bool {
	const name = "x-amz-trailer-signature:"
	b, _ := c.br.Peek(len(name))
	return strings.EqualFold(string(b), name)
}

// readLine reads one CRLF-terminated line of at most 4 KiB.
func (c *chunkedReader) readLine() (string, *apiError) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", s3err("IncompleteBody", "an aws-chunked header line is too long")
		}
		c.atEOF = errors.Is(err, io.EOF) && len(line) == 0
		return "", s3err("IncompleteBody", "the aws-chunked body ended early")
	}
	if len(line) > 4096 {
		return "", s3err("IncompleteBody", "an aws-chunked header line is too long")
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// chunkSigner verifies the chain of chunk signatures of a
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD body: each chunk's signature signs
// its data's hash and the previous signature, starting from the
// request's own.
type chunkSigner struct {
	key     []byte
	amzDate string
	scope   string
	prev    string
}

func (s *chunkSigner) verifyChunk(sig, dataHash string) *apiError {
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + s.amzDate + "\n" + s.scope + "\n" + s.prev + "\n" + emptySHA256 + "\n" + dataHash
	return s.verify(sig, sts, "chunk")
}

func (s *chunkSigner) verifyTrailer(sig, trailers string) *apiError {
	h := sha256.Sum256([]byte(trailers))
	sts := "AWS4-HMAC-SHA256-TRAILER\n" + s.amzDate + "\n" + s.scope + "\n" + s.prev + "\n" + hex.EncodeToString(h[:])
	return s.verify(sig, sts, "trailer")
}

func (s *chunkSigner) verify(sig, sts, what string) *apiError {
	want := hex.EncodeToString(hmacSHA256(s.key, sts))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		e := s3err("SignatureDoesNotMatch", "the %s signature of the aws-chunked body does not match", what)
		e.StringToSign = sts
		return e
	}
	s.prev = want
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
