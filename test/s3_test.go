package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lakemesh/lakemesh/internal/testenv"
)

// s3Gateway is a `lakemesh s3` process serving a mesh.
type s3Gateway struct {
	proc          *nodeProc
	url           string
	keyID, secret string
}

// startS3Gateway runs `lakemesh s3` against the mesh's first node, with a
// fresh credentials file and a bucket directory, and waits until it
// answers. args go after the defaults, so they override them.
func startS3Gateway(t testing.TB, m *mesh, args ...string) *s3Gateway {
	t.Helper()
	return startS3GatewayAt(t, m, testenv.FreeAddr(t), args...)
}

// startS3GatewayAt is startS3Gateway listening on addr.
func startS3GatewayAt(t testing.TB, m *mesh, addr string, args ...string) *s3Gateway {
	t.Helper()
	dir := t.TempDir()
	gw := &s3Gateway{keyID: "lakemesh-e2e", secret: rand.Text()}
	creds := filepath.Join(dir, "s3.keys")
	if err := os.WriteFile(creds, []byte("# e2e\n"+gw.keyID+" "+gw.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw.url = "http://" + addr
	p := &nodeProc{id: "s3 gateway", addr: addr, logPath: filepath.Join(dir, "s3.log")}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(lakemeshBin, append([]string{"s3", "--node", m.nodes[0].addr, "--listen", addr, "--credentials", creds,
		"--spool-dir", filepath.Join(dir, "spool"), "--bucket-dir", "/lake/s3/buckets", "--log-level", "info"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if addr := os.Getenv("LAKEMESH_BENCH_S3_PPROF"); addr != "" {
		// Profiling the gateway in a benchmark: net/http/pprof on addr.
		p.cmd.Env = append(os.Environ(), "LAKEMESH_PPROF="+addr)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start s3 gateway: %v", err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); logf.Close(); close(p.exited) }()
	gw.proc = p
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			t.Logf("log of the s3 gateway:\n%s", tail(string(b), 40))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(gw.url + "/")
		if err == nil {
			resp.Body.Close()
			break // any S3 reply (403 for an unsigned ListBuckets) means it serves
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.logPath)
			t.Fatalf("s3 gateway exited at start:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3 gateway not answering on %s after 30s", addr)
		}
	}
	return gw
}

func (gw *s3Gateway) client(secret string) *s3.Client {
	return gw.clientWith(secret, nil)
}

// clientWith is client with its connections made by http (nil: the
// SDK's default client).
func (gw *s3Gateway) clientWith(secret string, http aws.HTTPClient) *s3.Client {
	return s3.NewFromConfig(aws.Config{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider(gw.keyID, secret, ""),
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
		HTTPClient:                 http,
	}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(gw.url)
		o.UsePathStyle = true
	})
}

// s3Error checks an SDK error's S3 code and HTTP status.
func s3Error(t *testing.T, err error, code string, status int) {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("want HTTP %d %s, got %v", status, code, err)
		return
	}
	var ae smithy.APIError
	if code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != code) {
		t.Errorf("want %s, got %v", code, err)
	}
}

// streamSHA256 streams r into a SHA-256.
func streamSHA256(t *testing.T, r io.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// TestS3Gateway runs the real `lakemesh s3` binary in front of a 3-node
// region over MinIO and drives it with the AWS SDK for Go and Debian's
// AWS CLI.
func TestS3Gateway(t *testing.T) {
	m := newMesh(t, meshOptions{})
	gw := startS3Gateway(t, m)
	c := gw.client(gw.secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const MiB = 1 << 20

	t.Run("cold ranged GET costs the pages it covers", func(t *testing.T) {
		const size, seed = 64 * MiB, 501
		m.upload("cold/big.bin", size, seed)
		m.proxy.Reset()
		const page = 4 * MiB
		start := int64(4 * page) // pages 4 and 5
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("cold/big.bin"),
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", start, start+2*page-1))})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, patternAt(seed, start, 2*page)) {
			t.Fatalf("ranged GET returned %d bytes, not the object's", len(got))
		}
		// Nothing may still be filling: wait for the lake counter to settle.
		time.Sleep(300 * time.Millisecond)
		lake := m.lakeBytes()
		t.Logf("ranged GET of 2 pages of a cold 64 MiB object: %d bytes from MinIO", lake)
		if limit := int64(2*page + 64<<10); lake > limit {
			t.Errorf("a 2-page ranged GET read %d bytes from the lake, more than the pages it covers (%d)", lake, limit)
		}
	})

	t.Run("a cold GET asks the lake for the object once", func(t *testing.T) {
		const size, seed = 100 << 10, 502
		m.upload("cold/small.bin", size, seed)
		heads, gets := m.minio.Requests(t, "HeadObject"), m.minio.Requests(t, "GetObject")
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("cold/small.bin")})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, patternAt(seed, 0, size)) {
			t.Fatalf("GET returned %d bytes (%v), not the object's", len(got), err)
		}
		// Counted by MinIO: the stat and the attrs (headers, user
		// metadata) of the object come from one HEAD, its bytes from one
		// GET.
		heads, gets = m.minio.Requests(t, "HeadObject")-heads, m.minio.Requests(t, "GetObject")-gets
		t.Logf("cold GET of a 100 KiB object: %d HEAD, %d GET at MinIO", heads, gets)
		if heads != 1 || gets != 1 {
			t.Errorf("a cold GET cost MinIO %d HEADs and %d GETs, want 1 and 1", heads, gets)
		}
	})

	t.Run("buckets and objects", func(t *testing.T) {
		lb, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range lb.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
		if !slices.Contains(names, "s3") {
			t.Errorf("buckets %v lack the mount /lake/s3", names)
		}
		key := "objects/ünïcode name with spaces.txt"
		put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("s3"), Key: aws.String(key), Body: strings.NewReader("hello lakemesh")})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String(key), IfMatch: put.ETag})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != "hello lakemesh" || aws.ToString(out.ETag) != aws.ToString(put.ETag) {
			t.Errorf("GET %q ETag %s, PUT ETag %s", b, aws.ToString(out.ETag), aws.ToString(put.ETag))
		}
		// The object is in the lake under the same key.
		direct, err := m.minio.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("object not in MinIO: %v", err)
		}
		b, _ = io.ReadAll(direct.Body)
		direct.Body.Close()
		if string(b) != "hello lakemesh" {
			t.Errorf("MinIO holds %q", b)
		}
		if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("s3"), Key: aws.String("objects/copy"), CopySource: aws.String("s3/objects/%C3%BCn%C3%AFcode%20name%20with%20spaces.txt")}); err != nil {
			t.Errorf("copy: %v", err)
		}
		lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("s3"), Prefix: aws.String("objects/")})
		if err != nil || len(lo.Contents) != 2 || aws.ToString(lo.Contents[0].Key) != "objects/copy" {
			t.Errorf("list: %+v %v", lo, err)
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("s3"), Delete: &s3types.Delete{Objects: []s3types.ObjectIdentifier{
			{Key: aws.String(key)}, {Key: aws.String("objects/copy")},
		}}}); err != nil {
			t.Fatal(err)
		}
		if lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("s3"), Prefix: aws.String("objects/")}); err != nil || len(lo.Contents) != 0 {
			t.Errorf("list after delete: %d keys, %v", len(lo.Contents), err)
		}
		// A bucket of the bucket directory.
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("e2e-bucket")}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("e2e-bucket"), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
			t.Fatal(err)
		}
		_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("e2e-bucket")})
		s3Error(t, err, "BucketNotEmpty", 409)
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("e2e-bucket"), Key: aws.String("k")}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("e2e-bucket")}); err != nil {
			t.Errorf("delete of an empty created bucket: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := gw.client("wrong-secret").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("s3")})
		s3Error(t, err, "SignatureDoesNotMatch", 403)
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("no/such/key")})
		s3Error(t, err, "NoSuchKey", 404)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("s3"), Key: aws.String("errors/ten"), Body: strings.NewReader("0123456789")}); err != nil {
			t.Fatal(err)
		}
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("errors/ten"), Range: aws.String("bytes=10-")})
		s3Error(t, err, "InvalidRange", 416)
		for _, key := range []string{"../escape", "a/../../escape", "a//b"} {
			_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("s3"), Key: aws.String(key), Body: strings.NewReader("x")})
			s3Error(t, err, "InvalidArgument", 400)
		}
		// A body that does not match its signed SHA-256 is not written,
		// though most of it has streamed to the node when the mismatch
		// shows at its end.
		signed := bytes.Repeat([]byte("signed "), 3<<20/7)
		sent := bytes.Repeat([]byte("SENT!! "), 3<<20/7)
		sum := sha256.Sum256(signed)
		req, _ := http.NewRequest(http.MethodPut, gw.url+"/s3/tampered.bin", bytes.NewReader(sent))
		req.GetBody = nil
		req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
		if err := signer.SignHTTP(ctx, aws.Credentials{AccessKeyID: gw.keyID, SecretAccessKey: gw.secret}, req, hex.EncodeToString(sum[:]), "s3", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "XAmzContentSHA256Mismatch") {
			t.Errorf("tampered body: %d %s", resp.StatusCode, b)
		}
		if _, err := m.minio.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("tampered.bin")}); err == nil {
			t.Error("a body that failed verification reached the lake")
		}
	})

	t.Run("multipart upload of 200 MiB", func(t *testing.T) {
		const size, seed = 200 * MiB, 502
		h := sha256.New()
		body := io.TeeReader(io.LimitReader(newPattern(seed), size), h)
		up := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize = 16 * MiB; u.Concurrency = 4 })
		start := time.Now()
		if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String("s3"), Key: aws.String("multipart/200MiB.bin"), Body: body}); err != nil {
			t.Fatal(err)
		}
		t.Logf("200 MiB multipart upload through the gateway: %v", time.Since(start))
		var want [32]byte
		copy(want[:], h.Sum(nil))
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("multipart/200MiB.bin")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToInt64(out.ContentLength) != size {
			t.Errorf("Content-Length %d", aws.ToInt64(out.ContentLength))
		}
		got := streamSHA256(t, out.Body)
		out.Body.Close()
		if got != want {
			t.Error("object read back through the gateway differs from what was uploaded")
		}
		direct, err := m.minio.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("multipart/200MiB.bin")})
		if err != nil {
			t.Fatal(err)
		}
		got = streamSHA256(t, direct.Body)
		direct.Body.Close()
		if got != want {
			t.Error("object read straight from MinIO differs from what was uploaded")
		}
	})

	t.Run("presigned GET", func(t *testing.T) {
		req, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: aws.String("cold/big.bin"),
			Range: aws.String("bytes=0-99")}, func(o *s3.PresignOptions) { o.Expires = time.Minute })
		if err != nil {
			t.Fatal(err)
		}
		hreq, _ := http.NewRequest(http.MethodGet, req.URL, nil)
		for k, v := range req.SignedHeader {
			if k != "Host" {
				hreq.Header[k] = v
			}
		}
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 206 || !bytes.Equal(b, patternAt(501, 0, 100)) {
			t.Errorf("presigned GET: %d, %d bytes", resp.StatusCode, len(b))
		}
		resp, err = http.Get(strings.Replace(req.URL, "cold/big.bin", "cold/big.bim", 1))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("tampered presigned URL: %d", resp.StatusCode)
		}
	})

	t.Run("aws cli", func(t *testing.T) { awsCLI(t, gw) })

	t.Run("graceful shutdown", func(t *testing.T) {
		gw.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-gw.proc.exited:
		case <-time.After(20 * time.Second):
			t.Fatal("gateway did not stop within 20s of SIGTERM")
		}
		if code := gw.proc.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("gateway exited %d after SIGTERM", code)
		}
		b, _ := os.ReadFile(gw.proc.logPath)
		logText := string(b)
		if !strings.Contains(logText, "s3 gateway listening") || !strings.Contains(logText, "buckets=s3") {
			t.Errorf("no start line with the address and buckets:\n%s", tail(logText, 10))
		}
		if strings.Contains(logText, gw.secret) {
			t.Error("the gateway logged a secret")
		}
	})
}

// awsCLI drives Debian's AWS CLI (not whatever aws is first in PATH)
// against the gateway.
func awsCLI(t *testing.T, gw *s3Gateway) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		testenv.Unavailable(t, "%s not found (Debian's awscli package); the AWS CLI part of the S3 gateway test needs it", cli)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ACCESS_KEY_ID="+gw.keyID, "AWS_SECRET_ACCESS_KEY="+gw.secret, "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--endpoint-url", gw.url, "--no-cli-pager"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	c := gw.client(gw.secret)
	ctx := context.Background()

	if out := run("s3", "ls"); !strings.Contains(out, " s3\n") {
		t.Errorf("aws s3 ls:\n%s", out)
	}
	// cp up and down, big enough for the CLI's multipart upload and
	// ranged, parallel download.
	local := filepath.Join(dir, "big.bin")
	data := patternAt(503, 0, 20<<20)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run("s3", "cp", local, "s3://s3/cli/big file.bin")
	back := filepath.Join(dir, "back.bin")
	run("s3", "cp", "s3://s3/cli/big file.bin", back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
		t.Errorf("aws s3 cp down returned %d bytes, not what went up", len(got))
	}
	if out := run("s3", "ls", "s3://s3/cli/"); !strings.Contains(out, "20971520 big file.bin") {
		t.Errorf("aws s3 ls s3://s3/cli/:\n%s", out)
	}
	var head struct {
		ContentLength int64
		ETag          string
	}
	if err := json.Unmarshal([]byte(run("s3api", "head-object", "--bucket", "s3", "--key", "cli/big file.bin")), &head); err != nil {
		t.Fatal(err)
	}
	if head.ContentLength != 20<<20 || head.ETag == "" {
		t.Errorf("aws s3api head-object: %+v", head)
	}
	// sync a directory of a few files, then remove it recursively.
	src := filepath.Join(dir, "tree")
	files := map[string]string{"a.txt": "a", "sub/b.txt": "bb", "sub/deeper/c.bin": "ccc", "with space.txt": "d", "ünï.txt": "e"}
	for name, body := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("s3", "sync", src, "s3://s3/sync/")
	synced := map[string]string{}
	lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("s3"), Prefix: aws.String("sync/")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range lo.Contents {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("s3"), Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		synced[strings.TrimPrefix(aws.ToString(o.Key), "sync/")] = string(b)
	}
	if fmt.Sprint(synced) != fmt.Sprint(files) {
		t.Errorf("aws s3 sync stored %v, want %v", synced, files)
	}
	// A second sync has nothing to do.
	if out := run("s3", "sync", src, "s3://s3/sync/"); strings.Contains(out, "upload:") {
		t.Errorf("second aws s3 sync uploaded again:\n%s", out)
	}
	run("s3", "rm", "--recursive", "s3://s3/sync/")
	if lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("s3"), Prefix: aws.String("sync/")}); err != nil || len(lo.Contents) != 0 {
		t.Errorf("after aws s3 rm --recursive: %d keys, %v", len(lo.Contents), err)
	}
}
