package cachenode

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/ufs"
)

// ErrNoMount is returned for a namespace path that no mount holds.
var ErrNoMount = errors.New("no mount holds this path")

// ErrReadOnly is returned for a write to a read-only mount.
var ErrReadOnly = errors.New("mount is read-only")

// ErrResidency is returned when bytes would enter a region their path's
// residency policy does not allow. It is checked where bytes move (the
// node that would send them and the node that would receive them), so no
// byte of such a path crosses a line.
var ErrResidency = errors.New("residency policy forbids this region")

// ErrNotCached is returned by a cached-only read of bytes the page store
// does not hold.
var ErrNotCached = errors.New("not in this node's cache")

// ErrLineDown is returned when no route to the bytes is usable: every
// line that could carry them is down or refuses them.
var ErrLineDown = errors.New("no usable line")

// The wire form of the errors callers branch on: a gRPC status whose
// ErrorInfo reason names the sentinel, so ToStatus and FromStatus round-trip
// them across the data plane. gRPC codes stay in this file and the server.
var wireErrors = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ufs.ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{ErrNoMount, codes.NotFound, "NO_MOUNT"},
	{ufs.ErrNotDir, codes.FailedPrecondition, "NOT_DIR"},
	{ufs.ErrIsDir, codes.FailedPrecondition, "IS_DIR"},
	{ufs.ErrNotEmpty, codes.FailedPrecondition, "NOT_EMPTY"},
	{ufs.ErrVersionChanged, codes.FailedPrecondition, "VERSION_CHANGED"},
	{ufs.ErrInvalidPath, codes.InvalidArgument, "INVALID_PATH"},
	{ufs.ErrInvalidAttrs, codes.InvalidArgument, "INVALID_ATTRS"},
	{ufs.ErrAttrsNotKept, codes.FailedPrecondition, "ATTRS_NOT_KEPT"},
	{ErrReadOnly, codes.PermissionDenied, "READ_ONLY"},
	{ErrResidency, codes.PermissionDenied, "RESIDENCY"},
	{ErrNotCached, codes.NotFound, "NOT_CACHED"},
	{ErrLineDown, codes.Unavailable, "LINE_DOWN"},
}

// ToStatus turns an error of the node into a gRPC status error that keeps
// which sentinel it wraps.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			st, derr := status.New(w.code, err.Error()).WithDetails(&errdetails.ErrorInfo{Reason: w.reason, Domain: "lakemesh"})
			if derr != nil {
				return status.Error(w.code, err.Error())
			}
			return st.Err()
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// FromStatus turns a status error from a node back into an error that
// wraps the sentinel it was made from. Other errors pass through.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Domain != "lakemesh" {
			continue
		}
		for _, w := range wireErrors {
			if w.reason == info.Reason {
				return &remoteError{msg: st.Message(), sentinel: w.err, status: err}
			}
		}
	}
	return err
}

type remoteError struct {
	msg      string
	sentinel error
	status   error
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Is(target error) bool { return target == e.sentinel }

func (e *remoteError) Unwrap() error { return e.status }
