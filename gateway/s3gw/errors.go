package s3gw

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// The S3 error codes this gateway replies with, and their HTTP statuses.
// Clients branch on the codes, so they are the stable, user-facing part of
// an error: add codes, never rename one. Every reply goes through this
// table; a code missing from it is a programming error (InternalError).
var errorStatus = map[string]int{
	"AccessDenied":                      http.StatusForbidden,
	"AuthorizationHeaderMalformed":      http.StatusBadRequest,
	"AuthorizationQueryParametersError": http.StatusBadRequest,
	"BadDigest":                         http.StatusBadRequest,
	"BucketAlreadyExists":               http.StatusConflict,
	"BucketAlreadyOwnedByYou":           http.StatusConflict,
	"BucketNotEmpty":                    http.StatusConflict,
	"EntityTooLarge":                    http.StatusBadRequest,
	"EntityTooSmall":                    http.StatusBadRequest,
	"IncompleteBody":                    http.StatusBadRequest,
	"InternalError":                     http.StatusInternalServerError,
	"InvalidAccessKeyId":                http.StatusForbidden,
	"InvalidArgument":                   http.StatusBadRequest,
	"MetadataTooLarge":                  http.StatusBadRequest,
	"InvalidBucketName":                 http.StatusBadRequest,
	"InvalidDigest":                     http.StatusBadRequest,
	"InvalidPart":                       http.StatusBadRequest,
	"InvalidPartOrder":                  http.StatusBadRequest,
	"InvalidRange":                      http.StatusRequestedRangeNotSatisfiable,
	"InvalidRequest":                    http.StatusBadRequest,
	"InvalidStorageClass":               http.StatusBadRequest,
	"KeyTooLongError":                   http.StatusBadRequest,
	"MalformedXML":                      http.StatusBadRequest,
	"MethodNotAllowed":                  http.StatusMethodNotAllowed,
	"MissingContentLength":              http.StatusLengthRequired,
	"NoSuchBucket":                      http.StatusNotFound,
	"NoSuchKey":                         http.StatusNotFound,
	"NoSuchUpload":                      http.StatusNotFound,
	"NotImplemented":                    http.StatusNotImplemented,
	"NotModified":                       http.StatusNotModified,
	"OperationAborted":                  http.StatusConflict,
	"PreconditionFailed":                http.StatusPreconditionFailed,
	"RequestTimeTooSkewed":              http.StatusForbidden,
	"ServiceUnavailable":                http.StatusServiceUnavailable,
	"SignatureDoesNotMatch":             http.StatusForbidden,
	"SlowDown":                          http.StatusServiceUnavailable,
	"XAmzContentChecksumMismatch":       http.StatusBadRequest,
	"XAmzContentSHA256Mismatch":         http.StatusBadRequest,
}

// apiError is one S3 error reply. Handlers return it (or a Namespace
// error, which reply maps with errors.Is); it never unwraps to
// io.ErrUnexpectedEOF or io.EOF, so a body reader that fails with one is
// never mistaken for the end of a body.
type apiError struct {
	Code    string
	Message string
	// Optional fields of the XML reply, for the client to debug with.
	AccessKeyID      string
	StringToSign     string
	CanonicalRequest string
	Region           string
	// header is sent with the reply (416's Content-Range).
	header map[string]string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// status is the HTTP status of the error's code.
func (e *apiError) status() int {
	if s, ok := errorStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// s3err makes an apiError with a formatted message.
func s3err(code, format string, args ...any) *apiError {
	if _, ok := errorStatus[code]; !ok {
		panic("s3gw: error code not in the table: " + code)
	}
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorReply is the XML body of an error.
type errorReply struct {
	XMLName          xml.Name `xml:"Error"`
	Code             string
	Message          string
	Key              string `xml:",omitempty"`
	BucketName       string `xml:",omitempty"`
	Resource         string
	RequestID        string `xml:"RequestId"`
	AWSAccessKeyID   string `xml:"AWSAccessKeyId,omitempty"`
	StringToSign     string `xml:",omitempty"`
	CanonicalRequest string `xml:",omitempty"`
	Region           string `xml:",omitempty"`
}

// target says what a Namespace call worked on, so its error maps to the
// right S3 code: a missing bucket root is NoSuchBucket, a missing key
// NoSuchKey; a directory where a write wanted a file is a conflict, where
// a read wanted one it is simply no such key.
type target int

const (
	targetRead   target = iota // reading a key: GET, HEAD, copy source
	targetWrite                // writing a key: PUT, copy destination, multipart completion
	targetBucket               // the bucket itself
)

// toAPIError maps any error of a handler to the S3 reply.
func toAPIError(err error, t target, key string) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	msg := err.Error()
	switch {
	case errors.Is(err, router.ErrNoNode), errors.Is(err, cachenode.ErrLineDown):
		return s3err("ServiceUnavailable", "no cache node of this region can serve now, retry later: %s", msg)
	case errors.Is(err, context.DeadlineExceeded):
		return s3err("ServiceUnavailable", "timed out: %s", msg)
	case errors.Is(err, context.Canceled):
		return s3err("ServiceUnavailable", "request cancelled: %s", msg)
	case errors.Is(err, cachenode.ErrReadOnly):
		return s3err("AccessDenied", "the mount is read-only: %s", msg)
	case errors.Is(err, cachenode.ErrResidency):
		return s3err("AccessDenied", "%s", msg)
	case errors.Is(err, cachenode.ErrNoMount):
		return s3err("NoSuchBucket", "no mount holds this bucket: %s", msg)
	case errors.Is(err, ufs.ErrInvalidPath):
		return s3err("InvalidArgument", "key %q cannot be stored in the lake: %s", key, msg)
	case errors.Is(err, ufs.ErrAttrsNotKept):
		return s3err("NotImplemented", "the object's lake keeps no user metadata: %s", msg)
	case errors.Is(err, ufs.ErrInvalidAttrs):
		return s3err("InvalidArgument", "%s", msg)
	case errors.Is(err, ufs.ErrVersionChanged):
		return s3err("ServiceUnavailable", "the object changed while it was read; retry: %s", msg)
	case errors.Is(err, ufs.ErrNotFound):
		if t == targetBucket {
			return s3err("NoSuchBucket", "the specified bucket does not exist")
		}
		if t == targetWrite {
			return s3err("NoSuchBucket", "the bucket's directory is gone: %s", msg)
		}
		return noSuchKey(key)
	case errors.Is(err, ufs.ErrIsDir), errors.Is(err, ufs.ErrNotDir):
		if t == targetRead {
			return noSuchKey(key)
		}
		return s3err("InvalidArgument", "key %q conflicts with the lake's directories: a key cannot be both an object and a prefix of other keys here (%s)", key, msg)
	case errors.Is(err, ufs.ErrNotEmpty):
		return s3err("BucketNotEmpty", "the bucket you tried to delete is not empty")
	}
	return s3err("InternalError", "%s", msg)
}

func noSuchKey(key string) *apiError {
	return s3err("NoSuchKey", "the specified key does not exist: %q", key)
}
