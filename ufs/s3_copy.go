package ufs

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// copyParts copies an object too large for CopyObject with a multipart
// upload whose parts are server-side copies of ranges of the source, a few
// at a time. Each part names the source's version, so a source replaced
// mid-copy fails the copy instead of mixing versions. A failed copy is
// aborted, leaving the destination as it was. The parts carry no
// metadata, so the upload is created with the source's attrs.
func (f *s3FS) copyParts(ctx context.Context, src FileInfo, attrs s3Attrs, to string) (err error) {
	fail := func(err error) error { return f.fail("copy to "+f.where(to)+" from", src.Path, err) }
	in := &s3.CreateMultipartUploadInput{
		Bucket: aws.String(f.bucket),
		Key:    aws.String(f.key(to)),
	}
	attrs.setMultipart(in)
	up, err := f.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			// Abort even if ctx is what failed, so the parts are not billed.
			f.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
				Bucket:   aws.String(f.bucket),
				Key:      aws.String(f.key(to)),
				UploadId: up.UploadId,
			})
		}
	}()

	nparts := int((src.Size + f.copyPartSize - 1) / f.copyPartSize)
	parts := make([]types.CompletedPart, nparts)
	// The first failing part cancels the others and stops new ones.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, s3CopyParallel)
	var wg sync.WaitGroup
	for i := range nparts {
		sem <- struct{}{}
		if pctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			first := int64(i) * f.copyPartSize
			last := min(first+f.copyPartSize, src.Size) - 1
			out, err := f.client.UploadPartCopy(pctx, &s3.UploadPartCopyInput{
				Bucket:            aws.String(f.bucket),
				Key:               aws.String(f.key(to)),
				UploadId:          up.UploadId,
				PartNumber:        aws.Int32(int32(i + 1)),
				CopySource:        aws.String(f.copySource(src.Path)),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
				CopySourceIfMatch: aws.String(quoteETag(src.Version)),
			})
			if err != nil {
				cancel(fmt.Errorf("part %d: %w", i+1, err))
				return
			}
			parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))}
		})
	}
	wg.Wait()
	if pctx.Err() != nil {
		return fail(context.Cause(pctx))
	}
	_, err = f.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(f.bucket),
		Key:             aws.String(f.key(to)),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fail(err)
	}
	return nil
}
