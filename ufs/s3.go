package ufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func init() { Register("s3", openS3) }

// Tuning of the S3 adapter. Cache nodes read many ranges of many objects at
// once, so the HTTP client keeps plenty of connections to one endpoint.
const (
	s3MaxIdleConnsPerHost = 64
	s3MaxIdleConns        = 256
	s3UploadPartSize      = 8 << 20 // per part of a multipart upload; memory is this x concurrency
	s3UploadConcurrency   = 4
	// CopyObject copies at most 5 GiB in one request; larger objects are
	// copied in parts with UploadPartCopy.
	s3MaxSingleCopy = 5 << 30
	s3CopyPartSize  = 512 << 20
	s3CopyParallel  = 8
)

// s3FS is a lake in an S3 bucket, under an optional key prefix, on AWS or
// any S3-compatible endpoint. Directories are key prefixes: a directory
// exists while a key lies below it, or while its zero-byte marker "dir/"
// (written by Mkdir) does. A name can be both a file and a directory on
// S3 (keys "a" and "a/b"): Stat reports the file, List lists the children.
type s3FS struct {
	uri      string // root URI without credentials, for logs and errors
	bucket   string
	prefix   string // "" or ends in "/"
	client   *s3.Client
	uploader *manager.Uploader
	lean     *leanGetter // nil: every GET through the SDK (s3_get.go)

	// Limits of server-side copy; variables so tests can force the
	// multipart path on small objects.
	maxSingleCopy int64
	copyPartSize  int64
}

// openS3 opens s3://bucket/optional/prefix?endpoint=...&region=...&path_style=...
//
// Credentials never come from the URI: the SDK's standard chain finds them
// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared
// files, web identity, instance roles). AWS_ENDPOINT_URL_S3 and
// AWS_ENDPOINT_URL work as they do for every SDK.
func openS3(ctx context.Context, u *url.URL) (FS, error) {
	if u.User != nil {
		safe := *u
		safe.User = nil
		return nil, fmt.Errorf("s3 lake %s: credentials in the URI are refused; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials", safe.String())
	}
	if u.Host == "" || u.Port() != "" || u.Opaque != "" {
		return nil, fmt.Errorf("s3 lake %q: want s3://bucket/optional/prefix", u.String())
	}
	prefix, err := CleanPath(u.Path)
	if err != nil {
		return nil, fmt.Errorf("s3 lake %q: prefix: %w", u.String(), err)
	}
	if prefix != "" {
		prefix += "/"
	}
	opts, err := parseS3Options(u.Query())
	if err != nil {
		return nil, fmt.Errorf("s3 lake %q: %w", u.String(), err)
	}

	// Room for many parallel range reads to one endpoint. A BuildableClient,
	// not a plain http.Client, so the SDK can still apply AWS_CA_BUNDLE.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = s3MaxIdleConns
		tr.MaxIdleConnsPerHost = s3MaxIdleConnsPerHost
		tr.IdleConnTimeout = 90 * time.Second
	})
	load := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if opts.region != "" {
		load = append(load, config.WithRegion(opts.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("s3 lake %s: load AWS configuration: %w", u.String(), err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.endpoint != "" {
			o.BaseEndpoint = aws.String(opts.endpoint)
		}
		custom := o.BaseEndpoint != nil // from the URI or AWS_ENDPOINT_URL(_S3)
		// S3-compatible stores seldom have wildcard DNS for virtual-host
		// buckets, so any custom endpoint gets path-style addressing unless
		// the URI says otherwise.
		o.UsePathStyle = custom
		if opts.pathStyle != nil {
			o.UsePathStyle = *opts.pathStyle
		}
		if custom {
			// Many S3-compatible stores reject the trailing CRC checksums
			// the SDK sends by default; send them only where required.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	// manager.Uploader is deprecated in favour of feature/s3/transfermanager,
	// which is not a dependency yet; it streams bodies of unknown size in
	// parts, which is what Create needs.
	uploader := manager.NewUploader(client, func(up *manager.Uploader) { //nolint:staticcheck // see above
		up.PartSize = s3UploadPartSize
		up.Concurrency = s3UploadConcurrency
	})
	root := url.URL{Scheme: "s3", Host: u.Host, RawQuery: u.RawQuery}
	if prefix != "" {
		root.Path = "/" + strings.TrimSuffix(prefix, "/")
	}
	return &s3FS{
		uri:           root.String(),
		bucket:        u.Host,
		prefix:        prefix,
		client:        client,
		uploader:      uploader,
		lean:          newLeanGetter(client, u.Host),
		maxSingleCopy: s3MaxSingleCopy,
		copyPartSize:  s3CopyPartSize,
	}, nil
}

type s3Options struct {
	endpoint  string
	region    string
	pathStyle *bool
}

func parseS3Options(q url.Values) (s3Options, error) {
	var o s3Options
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil {
				return o, fmt.Errorf("endpoint %q: want http(s)://host[:port] without credentials", v)
			}
			o.endpoint = v
		case "region":
			o.region = v
		case "path_style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("path_style %q: want true or false", v)
			}
			o.pathStyle = &b
		default:
			return o, fmt.Errorf("unknown option %q (known: endpoint, region, path_style)", k)
		}
	}
	return o, nil
}

func (f *s3FS) String() string { return f.uri }

// Close closes the idle connections of the lean path's own GETs
// (s3_conn.go); the SDK owns its connection pool, whose idle connections
// time out on their own.
func (f *s3FS) Close() error {
	if f.lean != nil {
		if raw, ok := f.lean.client.(*rawHTTP); ok {
			raw.close()
		}
	}
	return nil
}

func (f *s3FS) Stat(ctx context.Context, p string) (FileInfo, error) {
	fi, _, err := f.stat(ctx, p)
	return fi, err
}

func (f *s3FS) List(ctx context.Context, dir, token string, limit int) (ListPage, error) {
	dir, err := f.arg(ctx, "list", dir)
	if err != nil {
		return ListPage{}, err
	}
	if limit <= 0 || limit > DefaultListLimit {
		limit = DefaultListLimit // S3 returns at most 1000 keys a call
	}
	prefix := f.dirKey(dir)
	in := &s3.ListObjectsV2Input{
		Bucket:    aws.String(f.bucket),
		Prefix:    aws.String(prefix),
		Delimiter: aws.String("/"),
		MaxKeys:   aws.Int32(int32(limit)),
	}
	if token != "" {
		in.ContinuationToken = aws.String(token)
	}
	out, err := f.client.ListObjectsV2(ctx, in)
	if err != nil {
		return ListPage{}, f.fail("list", dir, err)
	}
	if token == "" && dir != "" && len(out.Contents) == 0 && len(out.CommonPrefixes) == 0 {
		// Nothing below and no marker: a file, or nothing at all.
		if _, err := f.head(ctx, dir, ""); err == nil {
			return ListPage{}, fmt.Errorf("s3 list %s: %w", f.where(dir), ErrNotDir)
		} else if !errors.Is(err, ErrNotFound) {
			return ListPage{}, err
		}
		return ListPage{}, fmt.Errorf("s3 list %s: %w", f.where(dir), ErrNotFound)
	}
	page := ListPage{Entries: make([]FileInfo, 0, len(out.Contents)+len(out.CommonPrefixes))}
	if aws.ToBool(out.IsTruncated) {
		page.Next = aws.ToString(out.NextContinuationToken)
	}
	// S3 returns keys and common prefixes in two lists, each in key order;
	// merging them gives the page in the store's key order.
	objs, dirs := out.Contents, out.CommonPrefixes
	for len(objs) > 0 || len(dirs) > 0 {
		if len(dirs) == 0 || (len(objs) > 0 && aws.ToString(objs[0].Key) < aws.ToString(dirs[0].Prefix)) {
			o := objs[0]
			objs = objs[1:]
			name := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			if !validName(name) {
				continue // the directory's own marker, or a key no path can name
			}
			page.Entries = append(page.Entries, FileInfo{
				Path:    joinPath(dir, name),
				Size:    aws.ToInt64(o.Size),
				ModTime: aws.ToTime(o.LastModified),
				Version: etagVersion(o.ETag),
			})
			continue
		}
		d := dirs[0]
		dirs = dirs[1:]
		name := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(d.Prefix), prefix), "/")
		if !validName(name) {
			continue
		}
		page.Entries = append(page.Entries, FileInfo{Path: joinPath(dir, name), IsDir: true})
	}
	return page, nil
}

func (f *s3FS) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	p, err := f.arg(ctx, "read", p)
	if err != nil {
		return nil, err
	}
	if err := checkRange("s3 get", f.where(p), off, n); err != nil {
		return nil, err
	}
	if p == "" {
		return nil, fmt.Errorf("s3 get %s: %w", f.where(p), ErrIsDir)
	}
	if n == 0 {
		// No byte range can ask for nothing; check the object instead.
		if _, err := f.head(ctx, p, version); err != nil {
			return nil, err
		}
		return emptyReader(), nil
	}
	n = min(n, math.MaxInt64-off)
	if f.lean != nil {
		if body, ranged, ok := f.lean.get(ctx, f.key(p), off, off+n-1, version); ok {
			return f.rangeBody(ctx, p, body, ranged, off, n)
		}
	}
	in := &s3.GetObjectInput{
		Bucket: aws.String(f.bucket),
		Key:    aws.String(f.key(p)),
		// Always with an end offset: the store sends this range and no more.
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	}
	if version != "" {
		in.IfMatch = aws.String(quoteETag(version))
	}
	out, err := f.client.GetObject(ctx, in)
	if err != nil {
		if isInvalidRange(err) {
			// The range starts at or past the end; the object (in that
			// version) must still exist for the empty read to be true.
			if _, err := f.head(ctx, p, version); err != nil {
				return nil, err
			}
			return emptyReader(), nil
		}
		return nil, f.fail("get", p, err)
	}
	return f.rangeBody(ctx, p, out.Body, out.ContentRange != nil, off, n)
}

// rangeBody returns bytes [off, off+n) of a GET's reply body; ranged says
// the store honoured the Range header.
func (f *s3FS) rangeBody(ctx context.Context, p string, body io.ReadCloser, ranged bool, off, n int64) (io.ReadCloser, error) {
	if !ranged && off > 0 {
		// A store that ignores Range sends the whole object; skip to off so
		// the caller still gets exactly its range.
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			body.Close()
			if errors.Is(err, io.EOF) {
				return emptyReader(), nil
			}
			return nil, fmt.Errorf("s3 get %s: %w", f.where(p), err)
		}
	}
	// The HTTP body fails once ctx is cancelled, but bytes already buffered
	// could still be read; checking ctx on every read stops at once.
	return rangeReader{Reader: ctxReader{ctx, io.LimitReader(body, n)}, close: body.Close}, nil
}

// head stats one object, optionally only if it still has the given version.
func (f *s3FS) head(ctx context.Context, p, version string) (FileInfo, error) {
	fi, _, err := f.headAttrs(ctx, p, version)
	return fi, err
}

// hasChildren reports whether any key lies below directory p (its own
// marker included).
func (f *s3FS) hasChildren(ctx context.Context, p string) (bool, error) {
	out, err := f.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(f.bucket),
		Prefix:  aws.String(f.dirKey(p)),
		MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return false, f.fail("list", p, err)
	}
	return len(out.Contents) > 0, nil
}

// arg cleans a path argument and checks the context first, so every
// operation refuses bad paths and cancelled contexts the same way.
func (f *s3FS) arg(ctx context.Context, op, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("s3 %s %s: %w", op, f.where(p), err)
	}
	clean, err := CleanPath(p)
	if err != nil {
		return "", fmt.Errorf("s3 %s in %s: %w", op, f, err)
	}
	return clean, nil
}

func (f *s3FS) key(p string) string { return f.prefix + p }

// dirKey is the prefix of every key below directory p, and the key of its
// marker.
func (f *s3FS) dirKey(p string) string {
	if p == "" {
		return f.prefix
	}
	return f.prefix + p + "/"
}

func (f *s3FS) where(p string) string {
	return "s3://" + f.bucket + "/" + f.prefix + p
}

// validName reports whether a key's remainder below a prefix is one child
// a path can name. Keys such as "a//b" or "a/./b" are skipped.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.Contains(name, "/")
}

// etagVersion is an ETag without its quotes.
func etagVersion(etag *string) string { return strings.Trim(aws.ToString(etag), `"`) }

func quoteETag(v string) string { return `"` + v + `"` }
