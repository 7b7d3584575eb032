//go:build !linux

package cachenode

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// ShortCircuitSupported says whether this platform passes page file
// descriptors; only Linux does here, others read over gRPC.
const ShortCircuitSupported = false

var errNoShortCircuit = errors.New("short-circuit reads are linux-only")

// Serve fails: short-circuit reads are linux-only.
func (s *ShortCircuitServer) Serve(lis net.Listener) error {
	lis.Close()
	return errNoShortCircuit
}

// OpenShortCircuit fails: short-circuit reads are linux-only.
func OpenShortCircuit(c *net.UnixConn, req ShortCircuitRequest, deadline time.Time) (*os.File, DiskPage, error) {
	return nil, DiskPage{}, errNoShortCircuit
}

// ErrMemoryReadDenied: memory short-circuit reads are linux-only.
var ErrMemoryReadDenied = errNoShortCircuit

// ErrShortCircuitChecksum is a block read through short-circuit that
// failed its checksum.
var ErrShortCircuitChecksum = errors.New("short-circuit block failed its checksum")

// ReadShortCircuitMemory fails: short-circuit reads are linux-only.
func ReadShortCircuitMemory(ctx context.Context, c *net.UnixConn, req ShortCircuitRequest, buf []byte, deadline time.Time) (*nodepb.PageFetch, error) {
	return nil, errNoShortCircuit
}

// StatShortCircuit fails: short-circuit stats are linux-only.
func StatShortCircuit(ctx context.Context, c *net.UnixConn, p string, withAttrs bool, deadline time.Time) (*nodepb.StatAttrsReply, bool, error) {
	return nil, false, errNoShortCircuit
}

// LendJournalFile fails: short-circuit writes are linux-only.
func LendJournalFile(c *net.UnixConn, p string, attrs ufs.Attrs, deadline time.Time) (*os.File, error) {
	return nil, errNoShortCircuit
}

// CommitLentFile fails: short-circuit writes are linux-only.
func CommitLentFile(c *net.UnixConn, cm LentCommit, deadline time.Time) (*nodepb.Entry, error) {
	return nil, errNoShortCircuit
}
