package test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Under write_mode: back an object's ETag is its journal version until
// its upload reaches the lake, then the lake's. A client that took the
// first (a multipart download sends If-Match with every ranged GET) must
// still match after the upload lands, until the object changes again.
func TestS3ETagAcrossWriteBackUpload(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/wb-etag\n    write_mode: back\n"})
	gw := startS3Gateway(t, m)
	c := gw.client(gw.secret)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bucket, key := aws.String("s3"), aws.String("wb-etag/ckpt.bin")
	put := func(data []byte) string {
		t.Helper()
		out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: key, Body: bytes.NewReader(data)})
		if err != nil {
			t.Fatal(err)
		}
		etag := aws.ToString(out.ETag)
		if !strings.HasPrefix(etag, `"wb:`) {
			t.Fatalf("a write-back PUT answered ETag %s, want the journal's version", etag)
		}
		// Until the upload lands and the gateway answers the lake's ETag.
		deadline := time.Now().Add(time.Minute)
		for {
			got, ok := minioObject(t, m, "wb-etag/ckpt.bin")
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key})
			if ok && bytes.Equal(got, data) && err == nil && !strings.HasPrefix(aws.ToString(head.ETag), `"wb:`) {
				return etag
			}
			if time.Now().After(deadline) {
				t.Fatalf("the upload of the PUT did not land: MinIO has it %v, HEAD %v, %v", ok && bytes.Equal(got, data), head, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := patternAt(71, 0, 3<<20)
	wbETag := put(first)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key, IfMatch: aws.String(wbETag), Range: aws.String("bytes=1048576-2097151")})
	if err != nil {
		t.Fatalf("ranged GET with If-Match of the ETag before the upload: %v, want the bytes", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, first[1<<20:2<<20]) {
		t.Errorf("ranged GET with If-Match: %d bytes, not the object's", len(got))
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key, IfNoneMatch: aws.String(wbETag)})
	s3Error(t, err, "", 304) // If-None-Match of the ETag before the upload
	// Once the object changes, the old ETag names other bytes.
	put(patternAt(72, 0, 1<<20))
	// The gateway is on the nodes' host: it wrote both PUTs into journal
	// files the path's node lent it (router.LentSpool).
	if n := lentCommits(t, m, "/lake/s3/wb-etag/ckpt.bin"); n != 2 {
		t.Errorf("%d of the 2 PUTs were written into lent journal files", n)
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key, IfMatch: aws.String(wbETag)})
	s3Error(t, err, "", 412) // If-Match of an older version's ETag
}
