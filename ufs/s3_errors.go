package ufs

import (
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// fail wraps an SDK error with the operation, the object and, when there is
// one, the sentinel callers branch on. S3 error codes and HTTP statuses stop
// here; nothing above ufs sees them.
func (f *s3FS) fail(op, p string, err error) error {
	if sentinel := s3Sentinel(err); sentinel != nil {
		return fmt.Errorf("s3 %s %s: %w: %w", op, f.where(p), sentinel, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, f.where(p), err)
}

// s3Sentinel maps an SDK error to ErrNotFound, ErrVersionChanged or
// ErrInvalidAttrs (metadata over the store's limit). A
// missing bucket is deliberately not ErrNotFound: it is a configuration
// error, not a file that went away (HEAD cannot tell them apart, since its
// 404 has no body, but every listing can).
func s3Sentinel(err error) error {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return ErrNotFound
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return ErrNotFound
		case "PreconditionFailed":
			return ErrVersionChanged
		case "MetadataTooLarge":
			return ErrInvalidAttrs
		case "NoSuchBucket":
			return nil
		}
	}
	switch s3Status(err) {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusPreconditionFailed:
		return ErrVersionChanged
	}
	return nil
}

// isInvalidRange reports a GET whose range starts at or past the end of the
// object (HTTP 416).
func isInvalidRange(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "InvalidRange" {
		return true
	}
	return s3Status(err) == http.StatusRequestedRangeNotSatisfiable
}

func s3Status(err error) int {
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) {
		return resp.HTTPStatusCode()
	}
	return 0
}
