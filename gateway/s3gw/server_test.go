package s3gw

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/router/routertest"
)

const (
	testKeyID  = "AKIDLAKEMESHTEST"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYtestKEY"
)

// testGateway is a Server over three file:// lakes (mounts /lake/a,
// /lake/b and /lake/c, buckets "a", "b" and "c"; "b" readable
// anonymously; bucket directory /lake/c/buckets) behind a real HTTP
// socket, and an SDK client of it.
type testGateway struct {
	t      *testing.T
	lakes  *routertest.Lakes
	ns     router.Namespace
	srv    *Server
	ts     *httptest.Server
	client *s3.Client
	skew   atomic.Int64 // added to the server's clock, in nanoseconds
}

type gatewayOption func(*Config, *testGateway)

// withNamespace puts a wrapper between the server and the lakes.
func withNamespace(wrap func(router.Namespace) router.Namespace) gatewayOption {
	return func(_ *Config, g *testGateway) { g.ns = wrap(g.ns) }
}

func newTestGateway(t *testing.T, opts ...gatewayOption) *testGateway {
	t.Helper()
	g := &testGateway{t: t}
	g.lakes = routertest.New(t, "/lake/a", "/lake/b", "/lake/c")
	g.ns = g.lakes
	if err := g.lakes.Mkdir(context.Background(), "/lake/c/buckets"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Mounts:      []string{"/lake/a", "/lake/b", "/lake/c"},
		BucketDir:   "/lake/c/buckets",
		Credentials: Credentials{testKeyID: testSecret},
		Anonymous:   []string{"b"},
		SpoolDir:    filepath.Join(t.TempDir(), "spool"),
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Now:         func() time.Time { return time.Now().Add(time.Duration(g.skew.Load())) },
	}
	for _, o := range opts {
		o(&cfg, g)
	}
	srv, err := New(g.ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	g.ts = httptest.NewServer(srv)
	t.Cleanup(func() { g.ts.Close(); srv.Close() })
	g.client = newClient(g.ts.URL, testKeyID, testSecret)
	return g
}

// testWriter sends the server's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newClient(endpoint, keyID, secret string, opts ...func(*s3.Options)) *s3.Client {
	cfg := aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		RetryMaxAttempts: 1,
		// What config.LoadDefaultConfig sets: checksums on uploads.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	}}, opts...)...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantAPIError checks an SDK error's S3 code and HTTP status.
func wantAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s (%d), got no error", code, status)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want %s (%d), got %v", code, status, err)
	}
	if re.HTTPStatusCode() != status {
		t.Errorf("want HTTP %d, got %d (%v)", status, re.HTTPStatusCode(), err)
	}
	var ae smithy.APIError
	if code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != code) {
		t.Errorf("want code %s, got %v", code, err)
	}
}

func (g *testGateway) put(key string, body []byte) *s3.PutObjectOutput {
	g.t.Helper()
	return g.putIn("a", key, body)
}

func (g *testGateway) putIn(bucket, key string, body []byte) *s3.PutObjectOutput {
	g.t.Helper()
	out, err := g.client.PutObject(ctxT(g.t), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	if err != nil {
		g.t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
	return out
}

func (g *testGateway) get(bucket, key string, mod ...func(*s3.GetObjectInput)) ([]byte, *s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	for _, m := range mod {
		m(in)
	}
	out, err := g.client.GetObject(ctxT(g.t), in)
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, out, err
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func TestObjectRoundTrip(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	body := randomBytes(3<<20+123, 1)
	out := g.put("dir/file.bin", body)
	e, err := g.lakes.Stat(ctx, "/lake/a/dir/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	if want := `"` + e.Version + `"`; aws.ToString(out.ETag) != want {
		t.Errorf("PUT ETag %s, want the lake version %s", aws.ToString(out.ETag), want)
	}
	got, gout, err := g.get("a", "dir/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("GET returned %d bytes, not what was put", len(got))
	}
	if aws.ToString(gout.ETag) != aws.ToString(out.ETag) || aws.ToInt64(gout.ContentLength) != int64(len(body)) {
		t.Errorf("GET ETag %s length %d", aws.ToString(gout.ETag), aws.ToInt64(gout.ContentLength))
	}
	head, err := g.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("a"), Key: aws.String("dir/file.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(head.ETag) != aws.ToString(out.ETag) || aws.ToInt64(head.ContentLength) != int64(len(body)) || head.LastModified == nil {
		t.Errorf("HEAD: ETag %s length %d", aws.ToString(head.ETag), aws.ToInt64(head.ContentLength))
	}
	// If-Match works with the ETag a PUT returned.
	if _, _, err := g.get("a", "dir/file.bin", func(in *s3.GetObjectInput) { in.IfMatch = out.ETag }); err != nil {
		t.Errorf("If-Match with the PUT's ETag: %v", err)
	}
	// Overwrite: new version, new ETag.
	out2 := g.put("dir/file.bin", []byte("small"))
	if aws.ToString(out2.ETag) == aws.ToString(out.ETag) {
		t.Error("overwrite kept the ETag")
	}
	if got, _, _ := g.get("a", "dir/file.bin"); string(got) != "small" {
		t.Errorf("after overwrite GET = %q", got)
	}
	// Empty object.
	g.put("empty", nil)
	if got, out, err := g.get("a", "empty"); err != nil || len(got) != 0 || aws.ToInt64(out.ContentLength) != 0 {
		t.Errorf("empty object: %d bytes, %v", len(got), err)
	}
	if _, err := g.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("a"), Key: aws.String("dir/file.bin")}); err != nil {
		t.Fatal(err)
	}
	_, _, err = g.get("a", "dir/file.bin")
	wantAPIError(t, err, "NoSuchKey", 404)
	// The directory the delete left empty is gone, as an S3 prefix is.
	if _, err := g.lakes.Stat(ctx, "/lake/a/dir"); err == nil {
		t.Error("empty directory left behind after its last key was deleted")
	}
	// Deleting a missing key succeeds, as in S3.
	if _, err := g.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("a"), Key: aws.String("no/such/key")}); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
}

func TestListBucketsAndHead(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	out, err := g.client.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range out.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("buckets %v, want a,b,c", names)
	}
	if _, err := g.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("a")}); err != nil {
		t.Error(err)
	}
	if loc, err := g.client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("a")}); err != nil {
		t.Error(err)
	} else if loc.LocationConstraint != "" {
		t.Errorf("GetBucketLocation: %q, want the empty constraint of us-east-1", loc.LocationConstraint)
	}
	_, err = g.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("nope")})
	wantAPIError(t, err, "", 404)
	_, _, err = g.get("nope", "x")
	wantAPIError(t, err, "NoSuchBucket", 404)
}

func TestMissingKeys(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	_, _, err := g.get("a", "missing")
	wantAPIError(t, err, "NoSuchKey", 404)
	var nsk *types.NoSuchKey
	if !errors.As(err, &nsk) {
		t.Errorf("the SDK does not see NoSuchKey: %v", err)
	}
	_, err = g.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("a"), Key: aws.String("missing")})
	wantAPIError(t, err, "", 404)
	// A directory is not an object, and a path below a file is missing.
	g.put("d/f", []byte("x"))
	_, _, err = g.get("a", "d")
	wantAPIError(t, err, "NoSuchKey", 404)
	_, _, err = g.get("a", "d/f/g")
	wantAPIError(t, err, "NoSuchKey", 404)
}

func TestAuthentication(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	g.put("k", []byte("v"))
	g.putIn("b", "public", []byte("open"))

	bad := newClient(g.ts.URL, testKeyID, "not-the-secret")
	_, err := bad.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("k")})
	wantAPIError(t, err, "SignatureDoesNotMatch", 403)

	unknown := newClient(g.ts.URL, "AKIDUNKNOWN", testSecret)
	_, err = unknown.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("k")})
	wantAPIError(t, err, "InvalidAccessKeyId", 403)

	otherRegion := newClient(g.ts.URL, testKeyID, testSecret, func(o *s3.Options) { o.Region = "eu-west-1" })
	_, err = otherRegion.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("k")})
	wantAPIError(t, err, "AuthorizationHeaderMalformed", 400)
	if err != nil && !strings.Contains(err.Error(), "us-east-1") {
		t.Errorf("region error does not name the expected region: %v", err)
	}

	// Anonymous: reads of bucket b only.
	anonGet := func(path string) *http.Response {
		resp, err := http.Get(g.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := anonGet("/b/public"); resp.StatusCode != 200 {
		t.Errorf("anonymous GET of the anonymous bucket: %d", resp.StatusCode)
	}
	if resp := anonGet("/b?list-type=2"); resp.StatusCode != 200 {
		t.Errorf("anonymous list of the anonymous bucket: %d", resp.StatusCode)
	}
	if resp := anonGet("/a/k"); resp.StatusCode != 403 {
		t.Errorf("anonymous GET of a signed-only bucket: %d", resp.StatusCode)
	}
	if resp := anonGet("/"); resp.StatusCode != 403 {
		t.Errorf("anonymous ListBuckets: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPut, g.ts.URL+"/b/anon-write", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("anonymous PUT: %d", resp.StatusCode)
	}

	// A clock 20 minutes off.
	g.skew.Store(int64(20 * time.Minute))
	_, err = g.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("k")})
	wantAPIError(t, err, "RequestTimeTooSkewed", 403)
	g.skew.Store(0)
}

func TestRanges(t *testing.T) {
	g := newTestGateway(t)
	body := randomBytes(3<<20+17, 2)
	g.put("obj", body)
	size := int64(len(body))
	for _, tc := range []struct {
		rng        string
		start, end int64
	}{
		{"bytes=0-9", 0, 10},
		{"bytes=1048576-2097151", 1 << 20, 2 << 20},
		{"bytes=100-", 100, size},
		{"bytes=-5", size - 5, size},
		{"bytes=10-999999999", 10, size},
		{"bytes=-999999999", 0, size},
	} {
		got, out, err := g.get("a", "obj", func(in *s3.GetObjectInput) { in.Range = aws.String(tc.rng) })
		if err != nil {
			t.Errorf("%s: %v", tc.rng, err)
			continue
		}
		if !bytes.Equal(got, body[tc.start:tc.end]) {
			t.Errorf("%s: got %d bytes, want [%d,%d)", tc.rng, len(got), tc.start, tc.end)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, size); aws.ToString(out.ContentRange) != want {
			t.Errorf("%s: Content-Range %q, want %q", tc.rng, aws.ToString(out.ContentRange), want)
		}
	}
	for _, rng := range []string{"bytes=" + fmt.Sprint(size) + "-", "bytes=99999999-", "bytes=-0"} {
		_, _, err := g.get("a", "obj", func(in *s3.GetObjectInput) { in.Range = aws.String(rng) })
		wantAPIError(t, err, "InvalidRange", 416)
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			if cr := re.Response.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("%s: 416 with Content-Range %q", rng, cr)
			}
		}
	}
}

// limitRecorder records how a GET uses its readers: every Limit before
// the first read, and the end of every read.
type limitRecorder struct {
	router.Namespace
	maxEnd  atomic.Int64 // greatest read end
	limitAt atomic.Int64 // the limit set before the first read; -1 when none
}

type recordingReader struct {
	router.Reader
	rec   *limitRecorder
	reads atomic.Int64
}

func (l *limitRecorder) OpenReader(e router.Entry) (router.Reader, error) {
	r, err := l.Namespace.OpenReader(e)
	if err != nil {
		return nil, err
	}
	return &recordingReader{Reader: r, rec: l}, nil
}

func (r *recordingReader) Limit(end int64) {
	if r.reads.Load() == 0 {
		r.rec.limitAt.Store(end)
	}
	r.Reader.Limit(end)
}

func (r *recordingReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.reads.Add(1)
	end := off + int64(len(p))
	for {
		cur := r.rec.maxEnd.Load()
		if end <= cur || r.rec.maxEnd.CompareAndSwap(cur, end) {
			break
		}
	}
	return r.Reader.ReadAt(ctx, p, off)
}

func TestRangedGetLimitsReads(t *testing.T) {
	rec := &limitRecorder{}
	rec.limitAt.Store(-1)
	g := newTestGateway(t, withNamespace(func(ns router.Namespace) router.Namespace { rec.Namespace = ns; return rec }))
	body := randomBytes(8<<20, 3)
	g.put("big", body)
	got, _, err := g.get("a", "big", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=4194304-6291455") })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body[4<<20:6<<20]) {
		t.Fatal("wrong bytes")
	}
	if rec.limitAt.Load() != 6<<20 {
		t.Errorf("Limit before the first read = %d, want the range's end %d", rec.limitAt.Load(), 6<<20)
	}
	if rec.maxEnd.Load() > 6<<20 {
		t.Errorf("a read went to %d, past the range's end %d", rec.maxEnd.Load(), 6<<20)
	}
}

func TestConditionalGet(t *testing.T) {
	g := newTestGateway(t)
	out := g.put("c", []byte("conditional"))
	etag := aws.ToString(out.ETag)
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		mod    func(*s3.GetObjectInput)
		code   string
		status int
	}{
		{"If-Match ok", func(in *s3.GetObjectInput) { in.IfMatch = aws.String(etag) }, "", 200},
		{"If-Match *", func(in *s3.GetObjectInput) { in.IfMatch = aws.String("*") }, "", 200},
		{"If-Match other", func(in *s3.GetObjectInput) { in.IfMatch = aws.String(`"other"`) }, "PreconditionFailed", 412},
		{"If-None-Match same", func(in *s3.GetObjectInput) { in.IfNoneMatch = aws.String(etag) }, "", 304},
		{"If-None-Match other", func(in *s3.GetObjectInput) { in.IfNoneMatch = aws.String(`"other"`) }, "", 200},
		{"If-Modified-Since future", func(in *s3.GetObjectInput) { in.IfModifiedSince = &future }, "", 304},
		{"If-Modified-Since past", func(in *s3.GetObjectInput) { in.IfModifiedSince = &past }, "", 200},
		{"If-Unmodified-Since past", func(in *s3.GetObjectInput) { in.IfUnmodifiedSince = &past }, "PreconditionFailed", 412},
		{"If-Unmodified-Since future", func(in *s3.GetObjectInput) { in.IfUnmodifiedSince = &future }, "", 200},
		{"If-Match ok wins over If-Unmodified-Since", func(in *s3.GetObjectInput) {
			in.IfMatch, in.IfUnmodifiedSince = aws.String(etag), &past
		}, "", 200},
	} {
		got, _, err := g.get("a", "c", tc.mod)
		if tc.status == 200 {
			if err != nil || string(got) != "conditional" {
				t.Errorf("%s: %q, %v", tc.name, got, err)
			}
			continue
		}
		t.Run(tc.name, func(t *testing.T) { wantAPIError(t, err, tc.code, tc.status) })
	}
}

func TestPresignedGet(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	g.put("pre/signed file.txt", []byte("presigned body"))
	ps := s3.NewPresignClient(g.client)
	req, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("pre/signed file.txt")},
		func(o *s3.PresignOptions) { o.Expires = 5 * time.Minute })
	if err != nil {
		t.Fatal(err)
	}
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(req.URL); code != 200 || body != "presigned body" {
		t.Fatalf("presigned GET: %d %q", code, body)
	}
	// Tampered: another key, another expiry, another signature.
	for _, tampered := range []string{
		strings.Replace(req.URL, "signed%20file", "signed%20filX", 1),
		strings.Replace(req.URL, "X-Amz-Expires=300", "X-Amz-Expires=600", 1),
		req.URL[:len(req.URL)-4] + "0000",
	} {
		if tampered == req.URL {
			t.Fatalf("tampering did not change the URL %s", req.URL)
		}
		if code, body := get(tampered); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
			t.Errorf("tampered presigned URL: %d %s", code, body)
		}
	}
	// Expired: the server's clock moves past the expiry.
	g.skew.Store(int64(6 * time.Minute))
	if code, body := get(req.URL); code != 403 || !strings.Contains(body, "AccessDenied") || !strings.Contains(body, "expired") {
		t.Errorf("expired presigned URL: %d %s", code, body)
	}
	g.skew.Store(0)
}

func TestKeysThatCannotMap(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	for _, key := range []string{"../escape", "a/../../escape", "a/./b", "a//b", "/abs", "x/..", "d/.lakemesh-tmp-x", "nul\x00byte", strings.Repeat("n", 300)} {
		_, err := g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String(key), Body: strings.NewReader("x")})
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
			t.Errorf("PUT %q: want 400, got %v", key, err)
			continue
		}
		var ae smithy.APIError
		if errors.As(err, &ae) && !strings.Contains(ae.ErrorMessage(), "key") {
			t.Errorf("PUT %q: message does not name the key: %s", key, ae.ErrorMessage())
		}
		_, _, err = g.get("a", key)
		if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
			t.Errorf("GET %q: want 400, got %v", key, err)
		}
	}
	// Nothing was written anywhere near the lakes.
	root := filepath.Dir(g.lakes.Dir("/lake/a"))
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(p, "escape") {
			t.Errorf("a refused key left %s", p)
		}
		return nil
	})
}

func TestKeyNames(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	long := strings.Repeat("long-element-", 15)[:190]
	keys := []string{
		"日本語/データ ファイル.bin",
		"spaces in/a name with  two spaces",
		"plus+and%percent&amp=eq;semi?q#hash",
		"émoji-😀/ünïcödé",
		strings.Join([]string{long, long, long, long, long}, "/"), // 954 bytes
	}
	for i, k := range keys {
		body := []byte(fmt.Sprintf("body %d", i))
		g.put(k, body)
		got, _, err := g.get("a", k)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("key %q: %q, %v", k, got, err)
		}
	}
	out, err := g.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("a")})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, o := range out.Contents {
		listed[aws.ToString(o.Key)] = true
	}
	for _, k := range keys {
		if !listed[k] {
			t.Errorf("key %q not listed", k)
		}
	}
}

func TestCopyObject(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	body := randomBytes(5<<20+3, 4)
	g.put("src/obj", body)
	out, err := g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b"), Key: aws.String("copied/obj"), CopySource: aws.String("a/src/obj")})
	if err != nil {
		t.Fatal(err)
	}
	got, gout, err := g.get("b", "copied/obj")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("copy across buckets: %d bytes, %v", len(got), err)
	}
	if aws.ToString(gout.ETag) != aws.ToString(out.CopyObjectResult.ETag) {
		t.Errorf("copy ETag %s, GET ETag %s", aws.ToString(out.CopyObjectResult.ETag), aws.ToString(gout.ETag))
	}
	// A key with spaces and unicode as the source.
	g.put("src/ü b", []byte("x"))
	if _, err := g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("a"), Key: aws.String("dst"), CopySource: aws.String("a/src/%C3%BC%20b")}); err != nil {
		t.Errorf("copy of an encoded source: %v", err)
	}
	_, err = g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("a"), Key: aws.String("src/obj"), CopySource: aws.String("a/src/obj")})
	wantAPIError(t, err, "InvalidRequest", 400)
	_, err = g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("a"), Key: aws.String("x"), CopySource: aws.String("a/missing")})
	wantAPIError(t, err, "NoSuchKey", 404)
	_, err = g.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("a"), Key: aws.String("x"), CopySource: aws.String("a/src/obj"), CopySourceIfMatch: aws.String(`"nope"`)})
	wantAPIError(t, err, "PreconditionFailed", 412)
}

func TestDeleteObjects(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	for _, k := range []string{"del/1", "del/2", "keep"} {
		g.put(k, []byte(k))
	}
	out, err := g.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("a"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("del/1")}, {Key: aws.String("del/2")}, {Key: aws.String("del/missing")}, {Key: aws.String("../bad")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Deleted) != 3 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].Code) != "InvalidArgument" {
		t.Errorf("deleted %d, errors %+v", len(out.Deleted), out.Errors)
	}
	for _, k := range []string{"del/1", "del/2"} {
		_, _, err := g.get("a", k)
		wantAPIError(t, err, "NoSuchKey", 404)
	}
	if _, _, err := g.get("a", "keep"); err != nil {
		t.Error(err)
	}
}

func TestBucketDirectory(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	bucket := func(name string) *string { return aws.String(name) }
	if _, err := g.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket("test-bucket-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.lakes.Stat(ctx, "/lake/c/buckets/test-bucket-1"); err != nil {
		t.Fatalf("CreateBucket made no directory: %v", err)
	}
	_, err := g.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket("test-bucket-1")})
	wantAPIError(t, err, "BucketAlreadyOwnedByYou", 409)
	_, err = g.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket("a")})
	wantAPIError(t, err, "BucketAlreadyOwnedByYou", 409)
	_, err = g.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket("Bad_Name")})
	wantAPIError(t, err, "InvalidBucketName", 400)
	_, err = g.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: bucket("a")})
	wantAPIError(t, err, "AccessDenied", 403)

	lb, err := g.client.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range lb.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	if strings.Join(names, ",") != "a,b,c,test-bucket-1" {
		t.Errorf("buckets %v", names)
	}
	g.putIn("test-bucket-1", "deep/key", []byte("in a created bucket"))
	if got, _, err := g.get("test-bucket-1", "deep/key"); err != nil || string(got) != "in a created bucket" {
		t.Errorf("GET from a created bucket: %q %v", got, err)
	}
	_, err = g.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: bucket("test-bucket-1")})
	wantAPIError(t, err, "BucketNotEmpty", 409)
	if _, err := g.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket("test-bucket-1"), Key: aws.String("deep/key")}); err != nil {
		t.Fatal(err)
	}
	// The delete left the bucket empty but did not remove the bucket.
	if _, err := g.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket("test-bucket-1")}); err != nil {
		t.Fatalf("bucket gone with its last key: %v", err)
	}
	if _, err := g.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: bucket("test-bucket-1")}); err != nil {
		t.Fatal(err)
	}
	_, err = g.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket("test-bucket-1")})
	wantAPIError(t, err, "", 404)
	// A write to a bucket that does not exist creates nothing.
	_, err = g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket("no-such-bucket"), Key: aws.String("k"), Body: strings.NewReader("x")})
	wantAPIError(t, err, "NoSuchBucket", 404)
	if _, err := g.lakes.Stat(ctx, "/lake/c/buckets/no-such-bucket"); err == nil {
		t.Error("a PUT to a missing bucket created it")
	}
}

func TestDirectoryMarkers(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	out := g.put("folder/", nil)
	if aws.ToString(out.ETag) != emptyETag {
		t.Errorf("marker ETag %s", aws.ToString(out.ETag))
	}
	if e, err := g.lakes.Stat(ctx, "/lake/a/folder"); err != nil || !e.IsDir {
		t.Fatalf("marker is no directory: %+v %v", e, err)
	}
	head, err := g.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("a"), Key: aws.String("folder/")})
	if err != nil || aws.ToInt64(head.ContentLength) != 0 {
		t.Errorf("HEAD marker: %v", err)
	}
	keys := listAll(t, g.client, "a", "", "")
	if strings.Join(keys, ",") != "folder/" {
		t.Errorf("listing %v, want the empty directory as folder/", keys)
	}
	g.put("folder/inside", []byte("x"))
	if keys := listAll(t, g.client, "a", "", ""); strings.Join(keys, ",") != "folder/inside" {
		t.Errorf("listing %v", keys)
	}
	_, err = g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("other/"), Body: strings.NewReader("body")})
	wantAPIError(t, err, "InvalidArgument", 400)
	// A key cannot be both an object and a prefix.
	_, err = g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("folder"), Body: strings.NewReader("x")})
	wantAPIError(t, err, "InvalidArgument", 400)
}

func TestPayloadVerification(t *testing.T) {
	g := newTestGateway(t)
	ctx := ctxT(t)
	// A body whose SHA-256 is not the signed one: nothing is written.
	req := signedRequest(t, g.ts.URL, http.MethodPut, "/a/tampered", []byte("the body that was signed"))
	req.Body = io.NopCloser(strings.NewReader("another body, same size!"))
	req.GetBody = nil // no retry with the signed body
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "XAmzContentSHA256Mismatch") {
		t.Errorf("tampered body: %d %s", resp.StatusCode, b)
	}
	if _, err := g.lakes.Stat(ctx, "/lake/a/tampered"); err == nil {
		t.Error("a body that failed verification was written")
	}
	// A wrong Content-MD5.
	_, err = g.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("a"), Key: aws.String("md5"), Body: strings.NewReader("abc"),
		ContentMD5: aws.String("1B2M2Y8AsgTpgAmY7PhCfg==")})
	wantAPIError(t, err, "BadDigest", 400)
	if _, err := g.lakes.Stat(ctx, "/lake/a/md5"); err == nil {
		t.Error("a body with a wrong Content-MD5 was written")
	}
	// A body cut short of its Content-Length.
	req = signedRequest(t, g.ts.URL, http.MethodPut, "/a/short", []byte("0123456789"))
	req.Body = io.NopCloser(strings.NewReader("01234"))
	req.GetBody = nil
	req.ContentLength = 10
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if e, err := g.lakes.Stat(ctx, "/lake/a/short"); err == nil {
		t.Errorf("a short body was written: %+v", e)
	}
}

// signedRequest signs a request the way the SDK does, with the payload's
// SHA-256.
func signedRequest(t *testing.T, base, method, path string, payload []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	hash := hex.EncodeToString(sum[:])
	signRequest(t, req, hash, time.Now())
	return req
}

// signRequest adds SigV4 headers to req with the test key, independently
// of the verifier: the SDK's signer does the signing.
func signRequest(t *testing.T, req *http.Request, payloadHash string, now time.Time) {
	t.Helper()
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	err := sdkSigner.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, req, payloadHash, "s3", "us-east-1", now)
	if err != nil {
		t.Fatal(err)
	}
}

// blockingReads holds every ReadAt until release is closed.
type blockingReads struct {
	router.Namespace
	blocked chan struct{} // one send per read that waits
	release chan struct{}
}

type blockingReader struct {
	router.Reader
	b *blockingReads
}

func (b *blockingReads) OpenReader(e router.Entry) (router.Reader, error) {
	r, err := b.Namespace.OpenReader(e)
	return &blockingReader{Reader: r, b: b}, err
}

func (r *blockingReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	select {
	case r.b.blocked <- struct{}{}:
	default:
	}
	<-r.b.release
	return r.Reader.ReadAt(ctx, p, off)
}

// TestTransferSlots checks the bound on transfers in flight: past the
// slots and a queue of four times as many, a GET is told to slow down.
func TestTransferSlots(t *testing.T) {
	br := &blockingReads{blocked: make(chan struct{}, 1), release: make(chan struct{})}
	g := newTestGateway(t,
		withNamespace(func(ns router.Namespace) router.Namespace { br.Namespace = ns; return br }),
		func(c *Config, _ *testGateway) { c.MaxTransfers = 1 })
	g.put("obj", []byte("slot"))
	errs := make(chan error, 5)
	get := func() {
		got, _, err := g.get("a", "obj")
		if err == nil && string(got) != "slot" {
			err = fmt.Errorf("got %q", got)
		}
		errs <- err
	}
	go get()
	<-br.blocked // the first GET holds the only slot
	for i := 0; i < 4; i++ {
		go get()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.srv.waiting.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d GETs waiting for a slot, want 4", g.srv.waiting.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, _, err := g.get("a", "obj")
	wantAPIError(t, err, "SlowDown", 503)
	close(br.release)
	for i := 0; i < 5; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a queued GET: %v", err)
		}
	}
}

func TestUnsupported(t *testing.T) {
	g := newTestGateway(t)
	g.put("k", []byte("v"))
	for _, tc := range []struct {
		method, target string
		status         int
		code           string
	}{
		{"GET", "/a/k?acl", 501, "NotImplemented"},
		{"PUT", "/a?policy", 501, "NotImplemented"},
		{"GET", "/a?versions", 501, "NotImplemented"},
		{"PATCH", "/a/k", 405, "MethodNotAllowed"},
		{"DELETE", "/", 405, "MethodNotAllowed"},
	} {
		resp, err := http.DefaultClient.Do(signedRequest(t, g.ts.URL, tc.method, tc.target, nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), "<Code>"+tc.code+"</Code>") {
			t.Errorf("%s %s: %d %s", tc.method, tc.target, resp.StatusCode, b)
		}
	}
}
