package s3gw

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

func TestMultipartUpload(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	key := "multi/part object"
	create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	id := create.UploadId
	parts := [][]byte{randomBytes(5<<20, 11), randomBytes(5<<20+7, 12), randomBytes(1<<20+3, 13)}
	etags := make([]string, len(parts))
	// Out of order: 3, 1, 2; part 2 twice (the second replaces the first).
	for _, n := range []int{3, 1, 2, 2} {
		body := parts[n-1]
		if n == 2 && etags[1] == "" {
			body = []byte("a first, replaced upload of part 2")
		}
		out, err := g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: id,
			PartNumber: aws.Int32(int32(n)), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(body)
		if want := `"` + hex.EncodeToString(sum[:]) + `"`; aws.ToString(out.ETag) != want {
			t.Errorf("part %d ETag %s, want its MD5 %s", n, aws.ToString(out.ETag), want)
		}
		etags[n-1] = aws.ToString(out.ETag)
	}
	lp, err := g.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: id})
	if err != nil {
		t.Fatal(err)
	}
	var completed []types.CompletedPart
	for i, p := range lp.Parts {
		if aws.ToInt32(p.PartNumber) != int32(i+1) || aws.ToString(p.ETag) != etags[i] || aws.ToInt64(p.Size) != int64(len(parts[i])) {
			t.Errorf("listed part %d: %d %s %d", i+1, aws.ToInt32(p.PartNumber), aws.ToString(p.ETag), aws.ToInt64(p.Size))
		}
		completed = append(completed, types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag})
	}
	if len(lp.Parts) != 3 {
		t.Fatalf("listed %d parts", len(lp.Parts))
	}
	ups, err := g.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("a")})
	if err != nil || len(ups.Uploads) != 1 || aws.ToString(ups.Uploads[0].UploadId) != aws.ToString(id) {
		t.Errorf("ListMultipartUploads: %+v %v", ups, err)
	}
	complete := func(ps []types.CompletedPart) (*s3.CompleteMultipartUploadOutput, error) {
		return g.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: ps}})
	}
	_, err = complete([]types.CompletedPart{completed[1], completed[0], completed[2]})
	wantAPIError(t, err, "InvalidPartOrder", 400)
	_, err = complete([]types.CompletedPart{completed[0], {PartNumber: aws.Int32(2), ETag: aws.String(`"00000000000000000000000000000000"`)}, completed[2]})
	wantAPIError(t, err, "InvalidPart", 400)
	_, err = complete([]types.CompletedPart{completed[2], {PartNumber: aws.Int32(4), ETag: completed[2].ETag}})
	wantAPIError(t, err, "InvalidPart", 400)
	out, err := complete(completed)
	if err != nil {
		t.Fatal(err)
	}
	got, gout, err := g.get("a", key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Fatalf("completed object: %d bytes, not the parts in order", len(got))
	}
	if aws.ToString(out.ETag) != aws.ToString(gout.ETag) {
		t.Errorf("completion ETag %s, GET ETag %s", aws.ToString(out.ETag), aws.ToString(gout.ETag))
	}
	_, err = g.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: id})
	wantAPIError(t, err, "NoSuchUpload", 404)
	if left, _ := os.ReadDir(g.srv.spool.dir); len(left) != 0 {
		t.Errorf("spool holds %d entries after completion", len(left))
	}
}

func TestMultipartRefusals(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("small")})
	if err != nil {
		t.Fatal(err)
	}
	var ps []types.CompletedPart
	for n := int32(1); n <= 2; n++ {
		out, err := g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader([]byte("tiny"))})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag})
	}
	_, err = g.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: ps}})
	wantAPIError(t, err, "EntityTooSmall", 400)
	_, err = g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId,
		PartNumber: aws.Int32(10001), Body: bytes.NewReader([]byte("x"))})
	wantAPIError(t, err, "InvalidArgument", 400)
	// The upload belongs to its key.
	_, err = g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String("other"), UploadId: create.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("x"))})
	wantAPIError(t, err, "NoSuchUpload", 404)
	for _, id := range []string{"../../etc", "AAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		_, err = g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: aws.String(id),
			PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("x"))})
		wantAPIError(t, err, "NoSuchUpload", 404)
	}
	if _, err := g.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId}); err != nil {
		t.Fatal(err)
	}
	_, err = g.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId})
	wantAPIError(t, err, "NoSuchUpload", 404)
	_, err = g.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("small"), UploadId: create.UploadId})
	wantAPIError(t, err, "NoSuchUpload", 404)
	if _, _, err := g.get("a", "small"); err == nil {
		t.Error("an aborted upload left an object")
	}
}

// TestUploadManager drives the SDK's upload manager (parallel parts) and
// UploadPartCopy.
func TestUploadManager(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	body := randomBytes(17<<20+5, 21)
	up := manager.NewUploader(g.client, func(u *manager.Uploader) { u.PartSize = 5 << 20; u.Concurrency = 3 })
	if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("managed"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	got, _, err := g.get("b", "managed")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("managed upload: %d bytes, %v", len(got), err)
	}
	// Copy it in two ranged parts.
	create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("copied")})
	if err != nil {
		t.Fatal(err)
	}
	var ps []types.CompletedPart
	for i, rng := range []string{"bytes=0-5242879", "bytes=5242880-" + strconv.Itoa(len(body)-1)} {
		out, err := g.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("a"), Key: aws.String("copied"), UploadId: create.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), CopySource: aws.String("b/managed"), CopySourceRange: aws.String(rng)})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.CopyPartResult.ETag})
	}
	if _, err := g.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String("copied"), UploadId: create.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: ps}}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := g.get("a", "copied"); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("UploadPartCopy: %d bytes, %v", len(got), err)
	}
}

// TestTLSTrailingChecksums runs the gateway over TLS, where the SDK sends
// PutObject and UploadPart bodies aws-chunked with a trailing checksum
// (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
func TestTLSTrailingChecksums(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	ts := httptest.NewUnstartedServer(g.srv)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	rec := &recordingClient{c: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}}, seen: map[string]bool{}}
	client := newClient(ts.URL, testKeyID, testSecret, func(o *s3.Options) { o.HTTPClient = rec })
	body := randomBytes(1<<20+9, 31)
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("tls"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	if !rec.seen[streamingUnsignedTrailer] {
		t.Errorf("the SDK sent no %s body (saw %v); the test does not test what it says", streamingUnsignedTrailer, rec.seen)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("tls")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(out.Body)
	out.Body.Close()
	if !bytes.Equal(buf.Bytes(), body) {
		t.Fatal("TLS round trip changed the body")
	}
	up := manager.NewUploader(client, func(u *manager.Uploader) { u.PartSize = 5 << 20 })
	big := randomBytes(11<<20, 32)
	if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("tls-multi"), Body: bytes.NewReader(big)}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := g.get("a", "tls-multi"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("TLS multipart: %d bytes, %v", len(got), err)
	}
}

// recordingClient notes the payload modes requests were sent with.
type recordingClient struct {
	c    *http.Client
	mu   sync.Mutex // guards seen
	seen map[string]bool
}

func (r *recordingClient) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen[req.Header.Get("X-Amz-Content-Sha256")] = true
	r.mu.Unlock()
	return r.c.Do(req)
}

// slowPuts delays every PutAttrs (the gateway's writes), and fails it
// when fail is set.
type slowPuts struct {
	router.Namespace
	delay time.Duration
	fail  atomic.Bool
}

func (s *slowPuts) PutAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (router.Entry, error) {
	time.Sleep(s.delay)
	if s.fail.Load() {
		io.Copy(io.Discard, r)
		return router.Entry{}, fmt.Errorf("put %s: %w", p, router.ErrNoNode)
	}
	return s.Namespace.PutAttrs(ctx, p, r, attrs)
}

// TestCompletionKeepAlive checks a slow completion: the status goes out
// early, whitespace follows, and the result (or the error) comes in the
// body, where S3 clients read it.
func TestCompletionKeepAlive(t *testing.T) {
	defer func(after, every time.Duration) { keepAliveAfter, keepAliveEvery = after, every }(keepAliveAfter, keepAliveEvery)
	keepAliveAfter, keepAliveEvery = 50*time.Millisecond, 50*time.Millisecond
	slow := &slowPuts{delay: 400 * time.Millisecond}
	g := newTestGateway(t, withNamespace(func(ns router.Namespace) router.Namespace { slow.Namespace = ns; return slow }))
	ctx := ctxT(t)
	upload := func(key string) (*s3.CompleteMultipartUploadOutput, error) {
		create, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		part, err := g.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: create.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("one part"))})
		if err != nil {
			t.Fatal(err)
		}
		return g.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key), UploadId: create.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}})
	}
	out, err := upload("slow")
	if err != nil {
		t.Fatal(err)
	}
	if got, gout, err := g.get("a", "slow"); err != nil || string(got) != "one part" || aws.ToString(gout.ETag) != aws.ToString(out.ETag) {
		t.Errorf("slow completion: %q %v", got, err)
	}
	slow.fail.Store(true)
	_, err = upload("failing")
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ServiceUnavailable" {
		t.Errorf("a completion failing after its status went out: %v", err)
	}
}

// TestListMultipartUploadsDelimiterAndEncoding: uploads roll up into
// common prefixes at a delimiter, pages continue past them, and with
// encoding-type=url keys come URL-encoded (a key with "+" or "%" would
// otherwise reach a client that decodes them changed).
func TestListMultipartUploadsDelimiterAndEncoding(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	for _, key := range []string{"a+b%c", "dir/one", "dir/two", "dir/sub/three", "zed"} {
		if _, err := g.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("a"), Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) listMultipartUploadsResult {
		t.Helper()
		status, _, body := g.do("GET", "/a?uploads"+query, nil, nil)
		if status != 200 {
			t.Fatalf("list %s: %d %s", query, status, body)
		}
		var out listMultipartUploadsResult
		if err := xml.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("list %s: %v", query, err)
		}
		return out
	}
	keys := func(r listMultipartUploadsResult) (ks []string) {
		for _, u := range r.Uploads {
			ks = append(ks, u.Key)
		}
		for _, p := range r.CommonPrefixes {
			ks = append(ks, p.Prefix+"*")
		}
		return ks
	}
	if got := keys(list("&delimiter=/")); !slices.Equal(got, []string{"a+b%c", "zed", "dir/*"}) {
		t.Errorf("delimiter /: %q", got)
	}
	if got := keys(list("&delimiter=/&prefix=dir/")); !slices.Equal(got, []string{"dir/one", "dir/two", "dir/sub/*"}) {
		t.Errorf("delimiter / under dir/: %q", got)
	}
	r := list("&encoding-type=url&prefix=a%2B")
	if r.EncodingType != "url" || !slices.Equal(keys(r), []string{"a%2Bb%25c"}) || r.Prefix != "a%2B" {
		t.Errorf("encoding-type=url: %q (prefix %q, encoding %q)", keys(r), r.Prefix, r.EncodingType)
	}
	// Pages of two, continued from the markers: every upload and prefix once.
	var all []string
	marker, idMarker := "", ""
	for page := 0; ; page++ {
		r := list("&delimiter=/&max-uploads=2&key-marker=" + url.QueryEscape(marker) + "&upload-id-marker=" + url.QueryEscape(idMarker))
		all = append(all, keys(r)...)
		if !r.IsTruncated {
			break
		}
		if page > 5 {
			t.Fatal("listing does not end")
		}
		marker, idMarker = r.NextKeyMarker, r.NextUploadIDMarker
	}
	slices.Sort(all)
	if !slices.Equal(all, []string{"a+b%c", "dir/*", "zed"}) {
		t.Errorf("paged with delimiter: %q", all)
	}
}
