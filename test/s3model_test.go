package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestS3MatchesAModel applies random S3 operations (PUT, multipart
// uploads, GET whole and ranged, HEAD, COPY, DELETE, DeleteObjects,
// ListObjectsV2) on a few keys through the gateway, under write_mode
// through and back, and checks every answer against a map of what each
// key must hold; MinIO must end with the same. The seed is logged;
// LAKEMESH_S3X_SEED replays one.
func TestS3MatchesAModel(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/s3x-back\n    write_mode: back\n"})
	gw := startS3Gateway(t, m)
	c := gw.client(gw.secret)
	for _, mode := range []string{"through", "back"} {
		t.Run(mode, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			if s := os.Getenv("LAKEMESH_S3X_SEED"); s != "" {
				seed, _ = strconv.ParseUint(s, 10, 64)
			}
			x := &s3Model{t: t, c: c, rng: rand.New(rand.NewPCG(seed, seed)), prefix: "s3x-" + mode + "/",
				keys: []string{"k0", "k 1+%.bin", "d/k2", "d/e/ключ 3"}, want: map[string][]byte{}, meta: map[string]map[string]string{}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			for i := 0; i < 150; i++ {
				if err := x.step(ctx); err != nil {
					t.Fatalf("seed %d, op %d: %v\nlast operations:\n  %s", seed, i, err, strings.Join(x.ops[max(0, len(x.ops)-20):], "\n  "))
				}
			}
			deadline := time.Now().Add(time.Minute)
			for _, k := range x.keys {
				want, exists := x.want[k]
				for {
					got, ok := minioObject(t, m, x.prefix+k)
					if ok == exists && bytes.Equal(got, want) && (!exists || minioMeta(t, m, x.prefix+k, x.meta[k])) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("seed %d: MinIO's %s%s is %d bytes (found %v), want %d bytes (exists %v)", seed, x.prefix, k, len(got), ok, len(want), exists)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}

// s3xBucket is the gateway's bucket of the mount /lake/s3 (MinIO's
// bucket "lake").
const s3xBucket = "s3"

type s3Model struct {
	t      *testing.T
	c      *s3.Client
	rng    *rand.Rand
	prefix string
	keys   []string
	want   map[string][]byte            // key -> content; absent keys are not there
	meta   map[string]map[string]string // key -> its user metadata (x-amz-meta-*), nil for none
	ops    []string
}

// metadata is random user metadata for a write, nil a third of the
// time; some values are not ASCII.
func (x *s3Model) metadata() map[string]string {
	switch x.rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return map[string]string{"op": strconv.Itoa(len(x.ops))}
	}
	return map[string]string{"op": strconv.Itoa(len(x.ops)), "note": "ключ " + strconv.Itoa(x.rng.IntN(100))}
}

// checkMeta compares the metadata an answer carried with the model's.
func (x *s3Model) checkMeta(what, k string, got map[string]string) error {
	if want := x.meta[k]; !maps.Equal(got, want) {
		return fmt.Errorf("%s %s: metadata %v, want %v", what, k, got, want)
	}
	return nil
}

func (x *s3Model) logf(format string, args ...any) {
	x.ops = append(x.ops, time.Now().UTC().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (x *s3Model) key() string { return x.keys[x.rng.IntN(len(x.keys))] }

func (x *s3Model) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(x.rng.Uint32())
	}
	return b
}

// copySource URL-encodes a "bucket/key" for x-amz-copy-source, as S3
// wants (the SDK sends the header as given).
func copySource(s string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return strings.Join(segs, "/")
}

// notFound reports whether err is S3's 404 for a missing key.
func notFound(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}

func (x *s3Model) step(ctx context.Context) error {
	k := x.key()
	bucket, key := aws.String(s3xBucket), aws.String(x.prefix+k)
	switch op := x.rng.IntN(20); {
	case op < 5:
		size := x.rng.IntN(3 << 20)
		if x.rng.IntN(3) == 0 {
			size = x.rng.IntN(100)
		}
		data, meta := x.bytes(size), x.metadata()
		x.logf("put %s %d bytes, metadata %v", k, size, meta)
		if _, err := x.c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: key, Body: bytes.NewReader(data), Metadata: meta}); err != nil {
			return fmt.Errorf("put %s: %v", k, err)
		}
		x.want[k], x.meta[k] = data, meta
	case op < 6:
		return x.multipart(ctx, k)
	case op < 10:
		data, exists := x.want[k]
		in := &s3.GetObjectInput{Bucket: bucket, Key: key}
		lo, hi := 0, len(data)
		if exists && len(data) > 0 && x.rng.IntN(2) == 0 {
			lo = x.rng.IntN(len(data))
			hi = lo + 1 + x.rng.IntN(len(data)-lo)
			in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", lo, hi-1))
		}
		x.logf("get %s [%d, %d) (exists %v)", k, lo, hi, exists)
		if exists && x.rng.IntN(4) == 0 {
			// Conditional: its own ETag matches, another does not.
			head, err := x.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key})
			if err != nil {
				return fmt.Errorf("head %s: %v", k, err)
			}
			in.IfMatch = head.ETag
			if x.rng.IntN(2) == 0 {
				in.IfMatch = aws.String(`"0123456789abcdef0123456789abcdef"`)
				x.logf("  with If-Match of another ETag")
				_, err := x.c.GetObject(ctx, in)
				var re *awshttp.ResponseError
				if !errors.As(err, &re) || re.HTTPStatusCode() != 412 {
					return fmt.Errorf("get %s with If-Match of another ETag: %v, want 412", k, err)
				}
				return nil
			}
		}
		// Under write_mode back the ETag is the journal's version until
		// the upload reaches the lake, then the lake's: one taken before
		// still matches after (Entry.UploadedFrom).
		out, err := x.c.GetObject(ctx, in)
		if !exists {
			if !notFound(err) {
				return fmt.Errorf("get of %s, which does not exist: %v, want 404", k, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("get %s: %v", k, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("get %s: body: %v", k, err)
		}
		if !bytes.Equal(got, data[lo:hi]) {
			return fmt.Errorf("get %s [%d, %d): %d bytes, not the %d it holds", k, lo, hi, len(got), hi-lo)
		}
		return x.checkMeta("get", k, out.Metadata)
	case op < 12:
		data, exists := x.want[k]
		x.logf("head %s (exists %v)", k, exists)
		out, err := x.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key})
		switch {
		case !exists && !notFound(err):
			return fmt.Errorf("head of %s, which does not exist: %v, want 404", k, err)
		case exists && err != nil:
			return fmt.Errorf("head %s: %v", k, err)
		case exists && aws.ToInt64(out.ContentLength) != int64(len(data)):
			return fmt.Errorf("head %s: %d bytes, want %d", k, aws.ToInt64(out.ContentLength), len(data))
		case exists:
			return x.checkMeta("head", k, out.Metadata)
		}
	case op < 14:
		from := x.key()
		data, exists := x.want[from]
		in := &s3.CopyObjectInput{Bucket: bucket, Key: key, CopySource: aws.String(copySource(s3xBucket + "/" + x.prefix + from))}
		meta, replace := x.meta[from], x.rng.IntN(3) == 0
		if replace {
			meta = x.metadata()
			in.MetadataDirective, in.Metadata = types.MetadataDirectiveReplace, meta
		}
		x.logf("copy %s to %s (exists %v), replacing metadata %v: %v", from, k, exists, replace, meta)
		_, err := x.c.CopyObject(ctx, in)
		if !exists {
			if !notFound(err) {
				return fmt.Errorf("copy of %s, which does not exist: %v, want 404", from, err)
			}
			return nil
		}
		if from == k && !replace {
			// S3 refuses a copy onto itself that changes nothing.
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
				return fmt.Errorf("copy of %s onto itself: %v, want 400 InvalidRequest", k, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy %s to %s: %v", from, k, err)
		}
		x.want[k], x.meta[k] = slices.Clone(data), meta
	case op < 16:
		x.logf("delete %s", k)
		if _, err := x.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: key}); err != nil {
			return fmt.Errorf("delete %s: %v", k, err)
		}
		delete(x.want, k)
	case op < 17:
		other := x.key()
		x.logf("delete objects %s %s", k, other)
		out, err := x.c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: bucket, Delete: &types.Delete{Objects: []types.ObjectIdentifier{
			{Key: key}, {Key: aws.String(x.prefix + other)}}}})
		if err != nil || len(out.Errors) > 0 {
			return fmt.Errorf("delete objects %s %s: %v %+v", k, other, err, out)
		}
		delete(x.want, k)
		delete(x.want, other)
	case op < 19:
		return x.list(ctx)
	default:
		return x.listDelimited(ctx)
	}
	return nil
}

// listDelimited compares a listing of the prefix's first level (delimiter
// "/") with the model: its keys there, and a common prefix for each
// directory with keys below it.
func (x *s3Model) listDelimited(ctx context.Context) error {
	x.logf("list with delimiter")
	items, err := x.listAll(ctx, "/", 2)
	if err != nil {
		return fmt.Errorf("list with delimiter: %v", err)
	}
	got := slices.Sorted(maps.Keys(items))
	var want []string
	for k := range x.want {
		if i := strings.IndexByte(k, '/'); i >= 0 {
			k = k[:i+1]
		}
		if !slices.Contains(want, k) {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		x.listAgain(ctx, "/")
		return fmt.Errorf("list of %s with delimiter /: %q, want %q", x.prefix, got, want)
	}
	return nil
}

// listAll lists the prefix in pages of maxKeys: each key below it (the
// prefix cut off) with its size, and each common prefix with -1.
func (x *s3Model) listAll(ctx context.Context, delimiter string, maxKeys int32) (map[string]int64, error) {
	items := map[string]int64{}
	var token *string
	for {
		out, err := x.c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(s3xBucket), Prefix: aws.String(x.prefix),
			Delimiter: aws.String(delimiter), ContinuationToken: token, MaxKeys: aws.Int32(maxKeys)})
		if err != nil {
			return nil, err
		}
		for _, o := range out.Contents {
			items[strings.TrimPrefix(aws.ToString(o.Key), x.prefix)] = aws.ToInt64(o.Size)
		}
		for _, cp := range out.CommonPrefixes {
			items[strings.TrimPrefix(aws.ToString(cp.Prefix), x.prefix)] = -1
		}
		if !aws.ToBool(out.IsTruncated) {
			return items, nil
		}
		token = out.NextContinuationToken
	}
}

// listAgain logs the listing once more, by pages of 2 and in one page,
// to tell a listing that missed a moment from one that stays wrong.
func (x *s3Model) listAgain(ctx context.Context, delimiter string) {
	paged, err := x.listAll(ctx, delimiter, 2)
	whole, err2 := x.listAll(ctx, delimiter, 1000)
	x.t.Logf("listed again right after, by pages of 2: %v (%v); in one page: %v (%v)", paged, err, whole, err2)
}

func (x *s3Model) multipart(ctx context.Context, k string) error {
	bucket, key := aws.String(s3xBucket), aws.String(x.prefix+k)
	parts, meta := [][]byte{x.bytes(5 << 20), x.bytes(1 + x.rng.IntN(1<<20))}, x.metadata()
	x.logf("multipart %s %d+%d bytes, metadata %v", k, len(parts[0]), len(parts[1]), meta)
	up, err := x.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: key, Metadata: meta})
	if err != nil {
		return fmt.Errorf("create multipart %s: %v", k, err)
	}
	var done []types.CompletedPart
	for i, p := range parts {
		out, err := x.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: key, UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			return fmt.Errorf("upload part %d of %s: %v", i+1, k, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := x.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		return fmt.Errorf("complete multipart %s: %v", k, err)
	}
	x.want[k], x.meta[k] = append(slices.Clone(parts[0]), parts[1]...), meta
	return nil
}

// list compares a recursive listing of the prefix with the model.
func (x *s3Model) list(ctx context.Context) error {
	x.logf("list")
	got, err := x.listAll(ctx, "", 2)
	if err != nil {
		return fmt.Errorf("list: %v", err)
	}
	for k := range got {
		if strings.HasSuffix(k, "/") {
			delete(got, k) // a directory the lake keeps
		}
	}
	want := map[string]int64{}
	for k, v := range x.want {
		want[k] = int64(len(v))
	}
	if !maps.Equal(got, want) {
		x.listAgain(ctx, "")
		return fmt.Errorf("list of %s: %v, want %v (key: size)", x.prefix, got, want)
	}
	return nil
}

// minioMeta says whether MinIO holds want as key's user metadata (values
// that are not ASCII are stored RFC 2047-encoded).
func minioMeta(t *testing.T, m *mesh, key string, want map[string]string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := m.minio.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return false
	}
	var dec mime.WordDecoder
	got := map[string]string{}
	for k, v := range out.Metadata {
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		got[k] = v
	}
	if len(want) == 0 {
		return len(got) == 0
	}
	return maps.Equal(got, want)
}
