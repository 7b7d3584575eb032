package ufs_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/ufs"
	"github.com/lakemesh/lakemesh/ufs/ufstest"
)

func openLake(t testing.TB, uri string) ufs.FS {
	t.Helper()
	fs, err := ufs.Open(t.Context(), uri)
	if err != nil {
		t.Fatalf("open %s: %v", uri, err)
	}
	return fs
}

// TestS3Conformance runs the suite against a real MinIO, once with lakes
// at the root of fresh buckets and once with lakes under key prefixes of
// one shared bucket (which also checks that a lake sees nothing of its
// neighbours).
func TestS3Conformance(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	var n atomic.Int64
	t.Run("bucket", func(t *testing.T) {
		ufstest.Run(t, func(t *testing.T) ufs.FS {
			bucket := fmt.Sprintf("lake-%d", n.Add(1))
			m.CreateBucket(t, bucket)
			return openLake(t, m.URI(bucket, ""))
		})
	})
	m.CreateBucket(t, "shared")
	t.Run("prefix", func(t *testing.T) {
		ufstest.Run(t, func(t *testing.T) ufs.FS {
			fs := openLake(t, m.URI("shared", fmt.Sprintf("lakes/%d", n.Add(1))))
			// Files over 1 MiB are copied in parts here, so the suite's
			// large renames take the multipart copy too.
			ufs.SetS3CopyLimits(fs, 1<<20, 5<<20)
			return fs
		})
	})
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestS3ReadRangeAsksForTheRangeOnly reads 4 KiB of a 16 MiB object
// through a counting proxy: had the GET no end offset, MinIO would stream
// the rest of the object into the connection.
func TestS3ReadRangeAsksForTheRangeOnly(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "bkt")
	data := randomBytes(16<<20, 1)
	m.PutObject(t, "bkt", "big", data)
	proxy := testenv.Proxy(t, m.Addr)
	fs := openLake(t, "s3://bkt?endpoint=http://"+proxy.Addr())
	defer fs.Close()

	fi, err := fs.Stat(t.Context(), "big")
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	proxy.Reset()
	const off, n = 5 << 20, 4 << 10
	rc, err := fs.ReadRange(t.Context(), "big", fi.Version, off, n)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[off:off+n]) {
		t.Fatalf("read %d bytes (err %v), want the %d at %d", len(got), err, n, off)
	}
	// The reply is the range plus headers, well under 8 KiB; without an end
	// offset it would be megabytes.
	if from := proxy.BytesFromTarget(); from < n || from > n+4<<10 {
		t.Fatalf("%d bytes came from MinIO for a %d-byte range", from, n)
	}
	if to := proxy.BytesToTarget(); to > 4<<10 {
		t.Fatalf("%d bytes went to MinIO for one GET", to)
	}
}

// TestS3MultipartUpload creates an object larger than two upload parts
// from a stream of unknown size.
func TestS3MultipartUpload(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "bkt")
	fs := openLake(t, m.URI("bkt", "p"))
	defer fs.Close()
	data := randomBytes(20<<20+17, 2)
	fi, err := fs.Create(t.Context(), "multi", io.MultiReader(bytes.NewReader(data))) // hides the size
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if fi.Size != int64(len(data)) || !strings.Contains(fi.Version, "-") {
		t.Fatalf("create = %+v, want %d bytes with a multipart ETag", fi, len(data))
	}
	rc, err := fs.ReadRange(t.Context(), "multi", fi.Version, 0, fi.Size)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read: %v", err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("content differs after multipart upload")
	}
}

// TestS3RenameMultipartCopy renames an object above the (lowered)
// single-copy limit, which copies it in parts.
func TestS3RenameMultipartCopy(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "bkt")
	fs := openLake(t, m.URI("bkt", ""))
	defer fs.Close()
	ufs.SetS3CopyLimits(fs, 1<<20, 5<<20)
	data := randomBytes(12<<20+5, 3)
	attrs := ufs.Attrs{"content-type": "application/x-parquet", "expires": "Fri, 01 Jan 2038 00:00:00 GMT", "x-amz-meta-origin": "ingest 7"}
	if _, err := fs.(ufs.AttrFS).CreateAttrs(t.Context(), "src dir/big+1", bytes.NewReader(data), attrs); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := fs.Rename(t.Context(), "src dir/big+1", "dst/big"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, err := fs.Stat(t.Context(), "src dir/big+1"); !errors.Is(err, ufs.ErrNotFound) {
		t.Fatalf("source after rename: %v", err)
	}
	rc, err := fs.ReadRange(t.Context(), "dst/big", "", 0, 1<<30)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied object: %d bytes, err %v; want the %d bytes written", len(got), err, len(data))
	}
	// UploadPartCopy copies no metadata: the attrs came from the source's
	// HEAD.
	if _, gotAttrs, err := fs.(ufs.AttrFS).StatAttrs(t.Context(), "dst/big"); err != nil || !maps.Equal(gotAttrs, attrs) {
		t.Fatalf("copied object's attrs = %q, %v; want %q", gotAttrs, err, attrs)
	}
}

// TestS3Attrs checks what the S3 adapter does to attrs on their way to
// the store and back: non-ASCII user metadata goes RFC 2047-encoded (raw
// UTF-8 would fail the signature on AWS) and comes back decoded, also when
// another writer put it there raw; expires is sent as a date; and what the
// store refuses is ErrInvalidAttrs.
func TestS3Attrs(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "bkt")
	lake := openLake(t, m.URI("bkt", "p"))
	defer lake.Close()
	fs := lake.(ufs.AttrFS)
	ctx := t.Context()
	head := func(key string) *s3.HeadObjectOutput {
		t.Helper()
		out, err := m.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("head %s: %v", key, err)
		}
		return out
	}

	const name = "Grüße 日本"
	if _, err := fs.CreateAttrs(ctx, "utf8", strings.NewReader("x"), ufs.Attrs{"x-amz-meta-name": name}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if raw := head("p/utf8").Metadata["name"]; raw != mime.QEncoding.Encode("UTF-8", name) {
		t.Errorf("stored x-amz-meta-name = %q, want it RFC 2047-encoded", raw)
	}
	if _, attrs, err := fs.StatAttrs(ctx, "utf8"); err != nil || attrs["x-amz-meta-name"] != name {
		t.Errorf("stat utf8 = %q, %v; want x-amz-meta-name %q", attrs, err, name)
	}
	// Another writer's raw UTF-8 (MinIO takes it; AWS would not) comes back
	// encoded from MinIO, and decoded from the lake.
	_, err := m.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("bkt"), Key: aws.String("p/foreign"), Body: strings.NewReader("x"),
		Metadata: map[string]string{"Name": name},
	})
	if err != nil {
		t.Fatalf("put foreign object: %v", err)
	}
	if _, attrs, err := fs.StatAttrs(ctx, "foreign"); err != nil || attrs["x-amz-meta-name"] != name {
		t.Errorf("stat foreign = %q, %v; want x-amz-meta-name %q", attrs, err, name)
	}

	// Any HTTP date is taken, and comes back in the preferred form.
	if _, err := fs.CreateAttrs(ctx, "rfc850", strings.NewReader("x"), ufs.Attrs{"expires": "Wednesday, 21-Oct-37 07:28:00 GMT"}); err != nil {
		t.Fatalf("create with an RFC 850 date: %v", err)
	}
	if _, attrs, err := fs.StatAttrs(ctx, "rfc850"); err != nil || attrs["expires"] != "Wed, 21 Oct 2037 07:28:00 GMT" {
		t.Errorf("stat rfc850 = %q, %v", attrs, err)
	}
	// An Expires that is no date: MinIO would drop it, so it is refused.
	_, err = fs.CreateAttrs(ctx, "nodate", strings.NewReader("x"), ufs.Attrs{"expires": "0"})
	if !errors.Is(err, ufs.ErrInvalidAttrs) || !strings.Contains(err.Error(), `value "0" is not an HTTP date`) {
		t.Errorf("create with expires 0: %v, want ErrInvalidAttrs naming the value", err)
	}
	// Validate counts UTF-8 bytes, as AWS does; MinIO counts the encoded
	// header, which is longer, and refuses it: still ErrInvalidAttrs.
	big := ufs.Attrs{"x-amz-meta-big": strings.Repeat("日", (ufs.MaxUserAttrsSize-len("x-amz-meta-big"))/3)}
	if err := big.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	_, err = fs.CreateAttrs(ctx, "big", strings.NewReader("x"), big)
	wantErr := func(what string, err, target error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%s: %v, want %v", what, err, target)
		}
	}
	wantErr("create with metadata MinIO finds too large", err, ufs.ErrInvalidAttrs)
	_, err = lake.Stat(ctx, "big")
	wantErr("stat after a refused create", err, ufs.ErrNotFound)
}

// TestS3ForeignLayout reads a bucket written by someone else: keys without
// directory markers, and a directory marker with nothing below it.
func TestS3ForeignLayout(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "bkt")
	m.PutObject(t, "bkt", "data/train/part-0", []byte("0"))
	m.PutObject(t, "bkt", "data/train/part-1", []byte("11"))
	m.PutObject(t, "bkt", "data/empty/", nil)
	m.PutObject(t, "bkt", "other/x", []byte("x"))
	fs := openLake(t, m.URI("bkt", "data"))
	defer fs.Close()
	ctx := t.Context()
	for _, d := range []string{"", "train", "empty"} {
		if fi, err := fs.Stat(ctx, d); err != nil || !fi.IsDir {
			t.Fatalf("stat %q = %+v, %v; want a directory", d, fi, err)
		}
	}
	page, err := fs.List(ctx, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range page.Entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "empty,train" {
		t.Fatalf("list root = %v", names)
	}
	page, err = fs.List(ctx, "empty", "", 0)
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("list empty = %+v, %v", page, err)
	}
	page, err = fs.List(ctx, "train", "", 0)
	if err != nil || len(page.Entries) != 2 || page.Entries[1].Size != 2 {
		t.Fatalf("list train = %+v, %v", page, err)
	}
	if _, err := fs.Stat(ctx, "x"); !errors.Is(err, ufs.ErrNotFound) {
		t.Fatalf("a key outside the lake's prefix is visible: %v", err)
	}
}

func TestS3OpenErrors(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"s3://AKIAEXAMPLE:secret@bucket/p", "credentials in the URI"},
		{"s3:///no-bucket", "want s3://bucket"},
		{"s3://bucket/p?endpont=http://x", "unknown option"},
		{"s3://bucket/p?endpoint=ftp://x", "endpoint"},
		{"s3://bucket/p?path_style=maybe", "path_style"},
		{"s3://bucket/../p", "invalid path"},
	} {
		fs, err := ufs.Open(t.Context(), tc.uri)
		if err == nil {
			fs.Close()
			t.Errorf("open %q succeeded", tc.uri)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("open %q: %v; want it to mention %q", tc.uri, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("open %q: the error shows the secret: %v", tc.uri, err)
		}
	}
}

func TestS3String(t *testing.T) {
	fs, err := ufs.Open(t.Context(), "s3://bucket/some/prefix/?endpoint=http://127.0.0.1:1&region=eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if got, want := fs.String(), "s3://bucket/some/prefix?endpoint=http://127.0.0.1:1&region=eu-west-1"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// TestS3LeanGet: GETs to a path-style endpoint are sent without the SDK's
// middleware (s3_get.go), for every key the SDK can name, and every
// reply but a 200 or 206 is left to the SDK, which maps it as before.
func TestS3LeanGet(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "lean")
	fs := openLake(t, m.URI("lean", "under a prefix"))
	defer fs.Close()
	if on, _, _ := ufs.S3LeanGets(fs); !on {
		t.Fatal("a lake on a path-style endpoint sends its GETs through the SDK")
	}
	ctx := t.Context()
	data := randomBytes(300<<10, 7)
	names := []string{"plain", "dir/sub/file.bin", "a b+c=d&e;f,g$h@i:j!k(l)m*n'o", "ünï/çødé 名前.txt", "per%25cent%2Fslash"}
	for _, name := range names {
		if _, err := fs.Create(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	for _, name := range names {
		fi, err := fs.Stat(ctx, name)
		if err != nil {
			t.Fatalf("stat %q: %v", name, err)
		}
		for _, r := range [][2]int64{{0, 300 << 10}, {4096, 65536}, {300<<10 - 1, 1}} {
			rc, err := fs.ReadRange(ctx, name, fi.Version, r[0], r[1])
			if err != nil {
				t.Fatalf("read %q %v: %v", name, r, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
				t.Fatalf("read %q %v: %d bytes, %v", name, r, len(got), err)
			}
		}
	}
	_, served, fellBack := ufs.S3LeanGets(fs)
	if served != int64(3*len(names)) || fellBack != 0 {
		t.Errorf("%d GETs sent without the SDK, %d left to it; want %d and 0", served, fellBack, 3*len(names))
	}
	// Replies that are not bytes go through the SDK: the errors are the
	// same as ever.
	if _, err := fs.ReadRange(ctx, "plain", "not-its-version", 0, 10); !errors.Is(err, ufs.ErrVersionChanged) {
		t.Errorf("read of another version: %v, want ErrVersionChanged", err)
	}
	if _, err := fs.ReadRange(ctx, "missing", "", 0, 10); !errors.Is(err, ufs.ErrNotFound) {
		t.Errorf("read of a missing key: %v, want ErrNotFound", err)
	}
	if rc, err := fs.ReadRange(ctx, "plain", "", 400<<10, 10); err != nil {
		t.Errorf("read past the end: %v", err)
	} else if b, _ := io.ReadAll(rc); len(b) != 0 {
		t.Errorf("read past the end: %d bytes", len(b))
	}
	if _, _, fellBack := ufs.S3LeanGets(fs); fellBack != 3 {
		t.Errorf("%d GETs left to the SDK, want the 3 that failed", fellBack)
	}
	// AWS's own endpoints keep the SDK for every request.
	aws := openLake(t, "s3://some-bucket?region=eu-west-1")
	if on, _, _ := ufs.S3LeanGets(aws); on {
		t.Error("a lake on AWS's endpoints sends its own GETs")
	}
}

// A stat of an S3 lake on a path-style endpoint is a HEAD sent without
// the SDK's middleware: the same size, time, version and attrs as the
// SDK's HeadObject gives (every standard header, user metadata in
// UTF-8), a missing key ErrNotFound and another
// version ErrVersionChanged from the HEAD's own status, a directory found
// after its HEAD's 404; none left to the SDK.
func TestS3LeanHead(t *testing.T) {
	m := testenv.MinIO(t)
	m.SetEnv(t)
	m.CreateBucket(t, "leanhead")
	lean := openLake(t, m.URI("leanhead", ""))
	defer lean.Close()
	sdk := openLake(t, m.URI("leanhead", ""))
	defer sdk.Close()
	ufs.S3WithoutLean(sdk)
	ctx := t.Context()
	objects := map[string]ufs.Attrs{
		"plain": nil,
		"dir/every header": {
			"content-type": "text/plain; charset=utf-8", "content-encoding": "gzip", "content-language": "de",
			"content-disposition": `attachment; filename="a b.txt"`, "cache-control": "max-age=60",
			"expires": "Wed, 21 Oct 2026 07:28:00 GMT",
		},
		"ünï/meta 名前": {"x-amz-meta-name": "Grüße, 日本", "x-amz-meta-empty": "", "x-amz-meta-a.b_c": "v"},
	}
	for key, attrs := range objects {
		if _, err := lean.(ufs.AttrFS).CreateAttrs(ctx, key, strings.NewReader("bytes of "+key), attrs); err != nil {
			t.Fatalf("create %q: %v", key, err)
		}
	}
	before, _ := ufs.S3LeanHeads(lean) // the creates' own
	for key := range objects {
		fi, attrs, err := lean.(ufs.AttrFS).StatAttrs(ctx, key)
		if err != nil {
			t.Fatalf("stat %q: %v", key, err)
		}
		wantFI, wantAttrs, err := sdk.(ufs.AttrFS).StatAttrs(ctx, key)
		if err != nil {
			t.Fatalf("stat %q through the SDK: %v", key, err)
		}
		if fi.Size != wantFI.Size || !fi.ModTime.Equal(wantFI.ModTime) || fi.Version != wantFI.Version || fi.Path != wantFI.Path || fi.Size != int64(len("bytes of "+key)) {
			t.Errorf("stat %q: %+v; the SDK's %+v", key, fi, wantFI)
		}
		if !maps.Equal(attrs, wantAttrs) || len(attrs) < len(objects[key]) {
			t.Errorf("attrs of %q: %v; the SDK's %v, stored %v", key, attrs, wantAttrs, objects[key])
		}
	}
	if _, err := lean.Stat(ctx, "missing"); !errors.Is(err, ufs.ErrNotFound) {
		t.Errorf("stat of a missing key: %v; want ErrNotFound", err)
	}
	if fi, err := lean.Stat(ctx, "dir"); err != nil || !fi.IsDir {
		t.Errorf("stat of a directory: %+v, %v", fi, err)
	}
	if _, err := lean.ReadRange(ctx, "plain", "not-its-version", 0, 0); !errors.Is(err, ufs.ErrVersionChanged) {
		t.Errorf("an empty read of another version: %v; want ErrVersionChanged", err)
	}
	served, fellBack := ufs.S3LeanHeads(lean)
	if want := int64(len(objects) + 3); served-before != want || fellBack != 0 {
		t.Errorf("%d HEADs sent without the SDK, %d left to it; want %d and 0", served-before, fellBack, want)
	}
	if served, _ := ufs.S3LeanHeads(sdk); served != 0 {
		t.Errorf("the lake told to use the SDK sent %d HEADs of its own", served)
	}
}
