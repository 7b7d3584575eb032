package ufs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func (f *s3FS) Create(ctx context.Context, p string, r io.Reader) (FileInfo, error) {
	p, err := f.arg(ctx, "put", p)
	if err != nil {
		return FileInfo{}, err
	}
	return f.put(ctx, p, r, s3Attrs{})
}

// put uploads r to the cleaned path p with attrs (none for a plain
// Create, which leaves the store to default the content-type).
func (f *s3FS) put(ctx context.Context, p string, r io.Reader, attrs s3Attrs) (FileInfo, error) {
	if p == "" {
		return FileInfo{}, fmt.Errorf("s3 put %s: %w", f.where(p), ErrIsDir)
	}
	// The uploader streams a body of unknown size in parts; S3 publishes the
	// object only when the last part is in, so readers never see a part,
	// and a failed upload is aborted and leaves the old object. It copies
	// the attrs into its CreateMultipartUpload, so they come with the
	// object either way.
	in := &s3.PutObjectInput{
		Bucket: aws.String(f.bucket),
		Key:    aws.String(f.key(p)),
		Body:   ctxReader{ctx, r},
	}
	attrs.setPut(in)
	_, err := f.uploader.Upload(ctx, in) //nolint:staticcheck // manager.Uploader, see openS3
	if err != nil {
		return FileInfo{}, f.fail("put", p, err)
	}
	// The upload's reply has the ETag but not the size and mtime.
	return f.head(ctx, p, "")
}

func (f *s3FS) Mkdir(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "mkdir", p)
	if err != nil {
		return err
	}
	if p == "" {
		return nil
	}
	if _, err := f.head(ctx, p, ""); err == nil {
		return fmt.Errorf("s3 mkdir %s: %w: a file has that name", f.where(p), ErrNotDir)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	// A zero-byte marker keeps an empty directory; its parents exist as
	// prefixes of it.
	_, err = f.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(f.bucket),
		Key:           aws.String(f.dirKey(p)),
		Body:          bytes.NewReader(nil),
		ContentLength: aws.Int64(0),
	})
	if err != nil {
		return f.fail("mkdir", p, err)
	}
	return nil
}

func (f *s3FS) Delete(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "delete", p)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("s3 delete %s: %w: the root cannot be deleted", f.where(p), ErrInvalidPath)
	}
	// S3 deletes missing keys without complaint; the contract wants
	// ErrNotFound, so look first.
	if _, err := f.head(ctx, p, ""); err == nil {
		return f.deleteKey(ctx, p, f.key(p))
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	// Not a file: a directory, empty only if nothing but its marker is
	// below it.
	out, err := f.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(f.bucket),
		Prefix:  aws.String(f.dirKey(p)),
		MaxKeys: aws.Int32(2),
	})
	if err != nil {
		return f.fail("delete", p, err)
	}
	marker := false
	for _, o := range out.Contents {
		if aws.ToString(o.Key) != f.dirKey(p) {
			return fmt.Errorf("s3 delete %s: %w", f.where(p), ErrNotEmpty)
		}
		marker = true
	}
	if !marker {
		return fmt.Errorf("s3 delete %s: %w", f.where(p), ErrNotFound)
	}
	return f.deleteKey(ctx, p, f.dirKey(p))
}

func (f *s3FS) deleteKey(ctx context.Context, p, key string) error {
	_, err := f.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(f.bucket), Key: aws.String(key)})
	if err != nil {
		return f.fail("delete", p, err)
	}
	return nil
}

// Rename copies the object on the server, then deletes the source. It is
// not atomic: a crash between the two leaves both, and repeating the
// Rename finishes it. Directories are refused, since renaming one would
// copy every key below it. The copy keeps the source's attrs (see copy).
func (f *s3FS) Rename(ctx context.Context, from, to string) error {
	from, err := f.arg(ctx, "rename", from)
	if err != nil {
		return err
	}
	to, err = f.arg(ctx, "rename", to)
	if err != nil {
		return err
	}
	if from == "" || to == "" {
		return fmt.Errorf("s3 rename %s to %s: %w: the root cannot be renamed", f.where(from), f.where(to), ErrInvalidPath)
	}
	src, attrs, err := f.headAttrs(ctx, from, "")
	if errors.Is(err, ErrNotFound) {
		if isDir, derr := f.hasChildren(ctx, from); derr != nil {
			return derr
		} else if isDir {
			return fmt.Errorf("s3 rename %s: %w: renaming a directory on S3 is not supported", f.where(from), ErrIsDir)
		}
	}
	if err != nil {
		return err
	}
	if from == to {
		return nil
	}
	if isDir, err := f.hasChildren(ctx, to); err != nil {
		return err
	} else if isDir {
		return fmt.Errorf("s3 rename %s to %s: %w", f.where(from), f.where(to), ErrIsDir)
	}
	if err := f.copy(ctx, src, attrs, to); err != nil {
		return err
	}
	return f.deleteKey(ctx, from, f.key(from))
}

// copy copies the object src (in its version) with its attrs (from the
// HEAD that gave the version) to path to on the server. CopyObject takes
// objects up to 5 GiB; larger ones are copied in parts.
//
// Both paths set the attrs themselves rather than let the store copy them:
// UploadPartCopy copies none, and MinIO's CopyObject, told to copy the
// metadata, drops Expires. Attrs replaced on the source after the HEAD
// with the same bytes (hence the same ETag) are not seen; that is the same
// race as any write to the source during a Rename.
func (f *s3FS) copy(ctx context.Context, src FileInfo, attrs s3Attrs, to string) error {
	if src.Size > f.maxSingleCopy {
		return f.copyParts(ctx, src, attrs, to)
	}
	in := &s3.CopyObjectInput{
		Bucket:            aws.String(f.bucket),
		Key:               aws.String(f.key(to)),
		CopySource:        aws.String(f.copySource(src.Path)),
		CopySourceIfMatch: aws.String(quoteETag(src.Version)),
		MetadataDirective: types.MetadataDirectiveReplace,
	}
	attrs.setCopy(in)
	_, err := f.client.CopyObject(ctx, in)
	if err != nil {
		return f.fail("copy to "+f.where(to)+" from", src.Path, err)
	}
	return nil
}

// copySource is the URL-encoded "bucket/key" CopyObject wants. "+" is
// escaped too, since some stores decode the header as a query string.
func (f *s3FS) copySource(p string) string {
	segs := strings.Split(f.key(p), "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return f.bucket + "/" + strings.Join(segs, "/")
}
