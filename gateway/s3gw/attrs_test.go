package s3gw

import (
	"bytes"
	"errors"
	"maps"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// What a client stores with an object comes back on HEAD and GET: the
// standard headers and user metadata of a PUT, a multipart upload and a
// copy (COPY keeps the source's, REPLACE gives new ones, also onto the
// object itself); a plain PUT leaves none; metadata over 2 KiB is
// refused with MetadataTooLarge and writes nothing.
func TestObjectAttrs(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	expires := time.Date(2037, 10, 21, 7, 28, 0, 0, time.UTC)
	meta := map[string]string{"owner": "ml-platform", "run": "2026-12-06 #7", "zh": "你好"}
	_, err := g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("m/model.bin"), Body: bytes.NewReader([]byte("weights")),
		ContentType: aws.String("application/x-model"), ContentDisposition: aws.String(`attachment; filename="model.bin"`),
		ContentLanguage: aws.String("en"), CacheControl: aws.String("max-age=60"), ContentEncoding: aws.String("identity"),
		Expires: aws.Time(expires), Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	head := func(key string) *s3.HeadObjectOutput { t.Helper(); return g.head("a", key) }
	want := func(what string, out *s3.HeadObjectOutput, ct string, meta map[string]string) {
		t.Helper()
		if got := aws.ToString(out.ContentType); got != ct {
			t.Errorf("%s: Content-Type %q, want %q", what, got, ct)
		}
		if !maps.Equal(out.Metadata, meta) {
			t.Errorf("%s: metadata %v, want %v", what, out.Metadata, meta)
		}
	}
	h := head("m/model.bin")
	want("PUT", h, "application/x-model", meta)
	if got := aws.ToString(h.ContentDisposition); got != `attachment; filename="model.bin"` {
		t.Errorf("Content-Disposition %q", got)
	}
	if aws.ToString(h.ContentLanguage) != "en" || aws.ToString(h.CacheControl) != "max-age=60" || aws.ToString(h.ContentEncoding) != "identity" {
		t.Errorf("Content-Language %q, Cache-Control %q, Content-Encoding %q", aws.ToString(h.ContentLanguage), aws.ToString(h.CacheControl), aws.ToString(h.ContentEncoding))
	}
	if h.ExpiresString == nil || !strings.Contains(*h.ExpiresString, "2037") {
		t.Errorf("Expires %v", aws.ToString(h.ExpiresString))
	}
	if body, out, err := g.get("a", "m/model.bin"); err != nil || string(body) != "weights" || aws.ToString(out.ContentType) != "application/x-model" || !maps.Equal(out.Metadata, meta) {
		t.Errorf("GET: %q, %v, %v", body, out, err)
	}
	// A signed response override still wins on GET.
	if _, out, err := g.get("a", "m/model.bin", func(in *s3.GetObjectInput) { in.ResponseContentType = aws.String("text/plain") }); err != nil || aws.ToString(out.ContentType) != "text/plain" {
		t.Errorf("GET with response-content-type: %v, %v", out, err)
	}

	// COPY (the default) keeps the source's; REPLACE gives the request's.
	src := url.PathEscape("a/m/model.bin")
	if _, err := g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b"), Key: aws.String("copy.bin"), CopySource: aws.String(src)}); err != nil {
		t.Fatal(err)
	}
	want("COPY", g.head("b", "copy.bin"), "application/x-model", meta)
	if _, err := g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("a"), Key: aws.String("m/model.bin"), CopySource: aws.String(src),
		MetadataDirective: types.MetadataDirectiveReplace, ContentType: aws.String("text/x-new"), Metadata: map[string]string{"stage": "eval"}}); err != nil {
		t.Fatal(err)
	}
	want("copy onto itself with REPLACE", head("m/model.bin"), "text/x-new", map[string]string{"stage": "eval"})
	if body, _, err := g.get("a", "m/model.bin"); err != nil || string(body) != "weights" {
		t.Errorf("after the copy onto itself: %q, %v", body, err)
	}

	// A plain PUT replaces the attrs with none (the type is guessed).
	g.put("m/model.bin", []byte("v2"))
	want("plain PUT", head("m/model.bin"), "application/octet-stream", nil)

	// A multipart upload stores what CreateMultipartUpload was given.
	create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("mp.json"),
		ContentType: aws.String("application/x-ndjson"), Metadata: map[string]string{"parts": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	part, err := g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String("mp.json"), UploadId: create.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("{}\n"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("mp.json"), UploadId: create.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}}); err != nil {
		t.Fatal(err)
	}
	want("multipart", head("mp.json"), "application/x-ndjson", map[string]string{"parts": "1"})

	// Over S3's 2 KiB of user metadata: refused, nothing written.
	_, err = g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("big-meta"), Body: bytes.NewReader([]byte("x")),
		Metadata: map[string]string{"blob": strings.Repeat("m", 2100)}})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "MetadataTooLarge" {
		t.Errorf("PUT with 2.1 KiB of metadata: %v, want MetadataTooLarge", err)
	}
	if _, err := g.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("a"), Key: aws.String("big-meta")}); err == nil {
		t.Error("the refused PUT wrote its object")
	}
}

// head is a HeadObject that must succeed.
func (g *testGateway) head(bucket, key string) *s3.HeadObjectOutput {
	g.t.Helper()
	out, err := g.client.HeadObject(ctxT(g.t), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

func TestWithoutAWSChunked(t *testing.T) {
	for in, want := range map[string]string{"aws-chunked": "", "aws-chunked,gzip": "gzip", "gzip, aws-chunked": "gzip", "gzip": "gzip", "": ""} {
		if got := withoutAWSChunked(in); got != want {
			t.Errorf("withoutAWSChunked(%q) = %q, want %q", in, got, want)
		}
	}
}
