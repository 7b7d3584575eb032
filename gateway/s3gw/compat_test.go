package s3gw

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/xxh3"
)

// Behaviours that third-party S3 suites (minio-go's, in
// test/s3suite_test.go) found missing.

// do sends a signed request with extra headers (signed too) and returns
// the status and body.
func (g *testGateway) do(method, target string, header http.Header, body []byte) (int, http.Header, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.ts.URL+target, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	sum := sha256.Sum256(body)
	signRequest(g.t, req, hex.EncodeToString(sum[:]), time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSubresourcesAreNotOtherOperations: a request for a subresource the
// gateway does not implement does nothing, whatever its method. Before,
// PUT /bucket?versioning created the bucket, PUT /bucket/key?tagging
// replaced the object with the tagging document and DELETE with a
// versionId deleted the object.
func TestSubresourcesAreNotOtherOperations(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	g.put("k", []byte("the object"))
	for _, tc := range []struct {
		method, target, body string
	}{
		{"PUT", "/newbucket?versioning", "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"},
		{"PUT", "/a/k?tagging", "<Tagging><TagSet/></Tagging>"},
		{"PUT", "/a/k?retention", "<Retention/>"},
		{"DELETE", "/a/k?versionId=3HL4kqtJlcpXroDTDmJ", ""},
		{"GET", "/a/k?versionId=3HL4kqtJlcpXroDTDmJ", ""},
		{"DELETE", "/newbucket?cors", ""},
		{"POST", "/a/k?restore", "<RestoreRequest/>"},
	} {
		status, _, body := g.do(tc.method, tc.target, nil, []byte(tc.body))
		if status != 501 || !strings.Contains(body, "<Code>NotImplemented</Code>") {
			t.Errorf("%s %s: %d %s", tc.method, tc.target, status, body)
		}
	}
	if _, err := g.lakes.Stat(ctx, "/lake/c/buckets/newbucket"); err == nil {
		t.Error("PUT ?versioning created a bucket")
	}
	if got, _, err := g.get("a", "k"); err != nil || string(got) != "the object" {
		t.Fatalf("the object after subresource requests: %q, %v", got, err)
	}
	// versionId=null names the object itself.
	if status, _, body := g.do("GET", "/a/k?versionId=null", nil, nil); status != 200 || body != "the object" {
		t.Errorf("GET ?versionId=null: %d %q", status, body)
	}
	if status, _, body := g.do("DELETE", "/a/k?versionId=null", nil, nil); status != 204 {
		t.Errorf("DELETE ?versionId=null: %d %s", status, body)
	}
	if _, err := g.lakes.Stat(ctx, "/lake/a/k"); err == nil {
		t.Error("DELETE ?versionId=null left the object")
	}
}

// TestChecksumHeaders: every S3 checksum algorithm is checked on upload
// and stated in the reply; a header naming an algorithm the gateway does
// not know is refused rather than ignored.
func TestChecksumHeaders(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	body := []byte("a body whose checksums the client sends")
	for name, newHash := range map[string]func() hash.Hash{
		"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
		"md5":       md5.New,
		"sha512":    sha512.New,
		"xxhash64":  func() hash.Hash { return xxhash.New() },
		"xxhash3":   func() hash.Hash { return xxh3.New() },
		"xxhash128": func() hash.Hash { return xxh3.New128() },
	} {
		header := "x-amz-checksum-" + name
		h := newHash()
		wrong := base64.StdEncoding.EncodeToString(h.Sum(nil)) // of no bytes
		h.Write(body)
		right := base64.StdEncoding.EncodeToString(h.Sum(nil))
		status, _, reply := g.do("PUT", "/a/sum-"+name, http.Header{http.CanonicalHeaderKey(header): {wrong}}, body)
		if status != 400 || !strings.Contains(reply, "<Code>BadDigest</Code>") {
			t.Errorf("%s wrong: %d %s", header, status, reply)
		}
		if _, err := g.lakes.Stat(ctx, "/lake/a/sum-"+name); err == nil {
			t.Errorf("%s wrong: the object was written", header)
		}
		status, rh, reply := g.do("PUT", "/a/sum-"+name, http.Header{http.CanonicalHeaderKey(header): {right}}, body)
		if status != 200 || rh.Get(header) != right || rh.Get("X-Amz-Checksum-Type") != "FULL_OBJECT" {
			t.Errorf("%s right: %d, reply states %q (%q), want %q: %s", header, status, rh.Get(header), rh.Get("X-Amz-Checksum-Type"), right, reply)
		}
	}
	status, _, reply := g.do("PUT", "/a/sum-unknown", http.Header{"X-Amz-Checksum-Blake3": {"AAAA"}}, body)
	if status != 400 || !strings.Contains(reply, "<Code>InvalidArgument</Code>") || !strings.Contains(reply, "x-amz-checksum-blake3") {
		t.Errorf("unknown checksum algorithm: %d %s", status, reply)
	}
	if _, err := g.lakes.Stat(ctx, "/lake/a/sum-unknown"); err == nil {
		t.Error("an object with an unknown checksum algorithm was written")
	}
}

// TestSignedTrailerLayouts: a signed trailer is read in AWS's layout and
// in minio-go's, which ends the checksum line with "\n" and puts a blank
// line before the signature's.
func TestSignedTrailerLayouts(t *testing.T) {
	const (
		amzDate = "20130524T000000Z"
		scope   = "20130524/us-east-1/s3/aws4_request"
		seed    = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
	)
	key := []byte("a signing key")
	mac := func(s string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return hex.EncodeToString(m.Sum(nil))
	}
	hexSHA := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	payload := "Hello world"
	sig1 := mac("AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" + scope + "\n" + seed + "\n" + hexSHA("") + "\n" + hexSHA(payload))
	sig0 := mac("AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" + scope + "\n" + sig1 + "\n" + hexSHA("") + "\n" + hexSHA(""))
	trailer := "x-amz-checksum-crc32:i9aeUg==\n" // CRC32 of "Hello world"
	sigT := mac("AWS4-HMAC-SHA256-TRAILER\n" + amzDate + "\n" + scope + "\n" + sig0 + "\n" + hexSHA(trailer))
	chunks := "b;chunk-signature=" + sig1 + "\r\n" + payload + "\r\n0;chunk-signature=" + sig0 + "\r\n"
	decode := func(body string) (string, error) {
		r := httptest.NewRequest("PUT", "http://gw/a/k", strings.NewReader(body))
		r.Header.Set("X-Amz-Decoded-Content-Length", "11")
		r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		s := &Server{}
		b, err := s.body(&request{Request: r, sig: &signature{payload: streamingSignedTrailer, key: key, amzDate: amzDate, scope: scope, seed: seed}}, nil)
		if err != nil {
			return "", err
		}
		out, err := io.ReadAll(b)
		return string(out), err
	}
	for name, body := range map[string]string{
		"aws":      chunks + "x-amz-checksum-crc32:i9aeUg==\r\nx-amz-trailer-signature:" + sigT + "\r\n\r\n",
		"minio-go": chunks + "x-amz-checksum-crc32:i9aeUg==\n\r\nx-amz-trailer-signature:" + sigT + "\r\n\r\n",
	} {
		if got, err := decode(body); err != nil || got != payload {
			t.Errorf("%s layout: %q, %v", name, got, err)
		}
		bad := strings.Replace(body, sigT, mac("another string to sign"), 1)
		if _, err := decode(bad); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
			t.Errorf("%s layout, wrong trailer signature: %v", name, err)
		}
	}
	if _, err := decode(chunks + "x-amz-checksum-crc32:i9aeUg==\r\n\r\n"); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Errorf("signed trailer without its signature: %v", err)
	}
}

// TestCompleteChecksum: the x-amz-checksum-* of a CompleteMultipartUpload
// is the object's, full or composite, verified against the parts as they
// are written; a wrong one writes nothing.
func TestCompleteChecksum(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	parts := [][]byte{randomBytes(5<<20, 31), randomBytes(123_457, 32)}
	upload := func(key string) (*string, []types.CompletedPart) {
		create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		var done []types.CompletedPart
		for i, p := range parts {
			out, err := g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: create.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
			if err != nil {
				t.Fatal(err)
			}
			done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag})
		}
		return create.UploadId, done
	}
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	crc.Write(bytes.Join(parts, nil))
	full := base64.StdEncoding.EncodeToString(crc.Sum(nil))
	var digests []byte
	for _, p := range parts {
		d := sha256.Sum256(p)
		digests = append(digests, d[:]...)
	}
	compositeSum := sha256.Sum256(digests)
	composite := base64.StdEncoding.EncodeToString(compositeSum[:]) + "-2"

	complete := func(key string, id *string, done []types.CompletedPart, in func(*s3.CompleteMultipartUploadInput)) (*s3.CompleteMultipartUploadOutput, error) {
		input := &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}
		in(input)
		return g.client.CompleteMultipartUpload(ctx, input)
	}
	id, done := upload("full")
	_, err := complete("full", id, done, func(in *s3.CompleteMultipartUploadInput) {
		in.ChecksumCRC32C, in.ChecksumType = aws.String("AAAAAA=="), types.ChecksumTypeFullObject
	})
	wantAPIError(t, err, "BadDigest", 400)
	if _, err := g.lakes.Stat(ctx, "/lake/a/full"); err == nil {
		t.Fatal("a completion with a wrong checksum wrote the object")
	}
	out, err := complete("full", id, done, func(in *s3.CompleteMultipartUploadInput) {
		in.ChecksumCRC32C, in.ChecksumType = aws.String(full), types.ChecksumTypeFullObject
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.ChecksumCRC32C) != full || out.ChecksumType != types.ChecksumTypeFullObject {
		t.Errorf("completion states CRC32C %q (%s), want %q (FULL_OBJECT)", aws.ToString(out.ChecksumCRC32C), out.ChecksumType, full)
	}

	id, done = upload("composite")
	_, err = complete("composite", id, done, func(in *s3.CompleteMultipartUploadInput) {
		in.ChecksumSHA256, in.ChecksumType = aws.String(strings.Replace(composite, "-2", "-3", 1)), types.ChecksumTypeComposite
	})
	wantAPIError(t, err, "BadDigest", 400)
	out, err = complete("composite", id, done, func(in *s3.CompleteMultipartUploadInput) {
		in.ChecksumSHA256, in.ChecksumType = aws.String(composite), types.ChecksumTypeComposite
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.ChecksumSHA256) != composite || out.ChecksumType != types.ChecksumTypeComposite {
		t.Errorf("completion states SHA256 %q (%s), want %q (COMPOSITE)", aws.ToString(out.ChecksumSHA256), out.ChecksumType, composite)
	}
	if got, _, err := g.get("a", "composite"); err != nil || !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Errorf("completed object: %d bytes, %v", len(got), err)
	}
}

// TestStorageClassAndObjectLock: an S3 storage class is accepted (a lake
// file has one), any other refused; a bucket asked for with object lock is
// not made without it.
func TestStorageClassAndObjectLock(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	if status, _, reply := g.do("PUT", "/a/cold", http.Header{"X-Amz-Storage-Class": {"GLACIER_IR"}}, []byte("x")); status != 200 {
		t.Errorf("storage class GLACIER_IR: %d %s", status, reply)
	}
	if status, _, reply := g.do("PUT", "/a/bad-class", http.Header{"X-Amz-Storage-Class": {"FROZEN"}}, []byte("x")); status != 400 || !strings.Contains(reply, "<Code>InvalidStorageClass</Code>") {
		t.Errorf("storage class FROZEN: %d %s", status, reply)
	}
	if _, err := g.lakes.Stat(ctx, "/lake/a/bad-class"); err == nil {
		t.Error("an object with an invalid storage class was written")
	}
	_, err := g.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("locked"), ObjectLockEnabledForBucket: aws.Bool(true)})
	wantAPIError(t, err, "NotImplemented", 501)
	if _, err := g.lakes.Stat(ctx, "/lake/c/buckets/locked"); err == nil {
		t.Error("a bucket asked for with object lock was made without it")
	}
}
