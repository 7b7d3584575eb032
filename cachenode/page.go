package cachenode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// FileRef names one version of one file of the namespace: the unit whose
// pages the cache holds. Two refs with the same Mount and Path but another
// Version are different files to the cache; that is how a changed lake file
// is never mixed with pages of its old content.
type FileRef struct {
	Mount   string // mount path in the namespace, e.g. "/lake/s3-use1"
	Path    string // path inside the lake, cleaned (ufs.CleanPath)
	Version string // ufs.FileInfo.Version at open time
	Size    int64  // file size of that version
}

// FileID is the identity of a FileRef in the page store: a digest of mount,
// path and version. Size is not part of it (the version already fixes it).
type FileID [16]byte

// ID returns the FileRef's identity.
func (r FileRef) ID() FileID {
	h := sha256.New()
	io.WriteString(h, r.Mount)
	h.Write([]byte{0})
	io.WriteString(h, r.Path)
	h.Write([]byte{0})
	io.WriteString(h, r.Version)
	var id FileID
	copy(id[:], h.Sum(nil))
	return id
}

func (r FileRef) String() string {
	return fmt.Sprintf("%s/%s@%s", r.Mount, r.Path, r.Version)
}

func (id FileID) String() string { return hex.EncodeToString(id[:]) }

// PageID names one page of one file version. Page Index covers the bytes
// [Index*PageSize, (Index+1)*PageSize) of the file.
type PageID struct {
	File  FileID
	Index int64
}

func (p PageID) String() string { return fmt.Sprintf("%s/%d", p.File, p.Index) }

// ExtentPages is how many consecutive pages of a file are placed together:
// one node owns each extent, so a sequential fill of an extent's pages is
// one lake read (16 MiB with 4 MiB pages) instead of one per page. MinIO
// spent 0.74 CPU-s per GiB serving 4 MiB ranged GETs, 3 at a time, and
// 0.54 serving 16 MiB ones.
const ExtentPages = 4

// Key is the page's placement key for rendezvous hashing: every node and
// client computes the same owner from it. It names the page's extent.
func (p PageID) Key() string { return fmt.Sprintf("extent/%s/%d", p.File, p.Index/ExtentPages) }

// Source fetches bytes of a file from the place the cache fills from: the
// lake itself or, in a federated mesh, another region. A Source reads
// exactly the range asked ([off, off+n), fewer only at the end of the
// file), and fails with ufs.ErrVersionChanged rather than return bytes of
// another version than ref.Version.
type Source interface {
	Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error)
}

// SpanSource is a Source that may be asked, for ref, for a range that
// spans several pages: the cache then fills consecutive pages of a
// sequential run with one fetch. A Source that is not one is asked for
// one page's bytes at a time.
type SpanSource interface {
	Source
	Spans(ctx context.Context, ref FileRef) bool
}

// Origin says where the bytes of one Source fetch came from when the
// Source knows more than "the lake": a federated source reports the
// region that served, the lines crossed, the wait for budget and the cost.
type Origin struct {
	Region  string        // region whose cache (or lake) served the bytes
	Node    string        // node in that region that served them
	Lines   []string      // lines crossed, "from->to", in the order the bytes flowed
	Crossed int64         // bytes that crossed lines (once per line)
	Wait    time.Duration // time spent waiting for budget grants
	Cost    float64       // what the crossing cost, from the lines' cost_per_gb
	// Ahead: the bytes were fetched by a readahead before the read that
	// reports them asked (Cache.ClaimAhead).
	Ahead bool
}

// OriginReader is implemented by the reader a Source returns when it can
// say where its bytes came from; the cache asks after reading them all.
type OriginReader interface {
	Origin() Origin
}

// Committer is implemented by the reader a Source returns when the Source
// must know whether the fetched bytes were kept: a federated source lands
// its transfer claim only once the page store holds the bytes. Commit is
// called once, after the store was asked to keep them, before Close.
type Committer interface {
	Commit(stored bool)
}

// Fill is what a cross-region request asks of the fills it causes; the
// node's server puts it in the context of a read, and a Source reads it.
type Fill struct {
	ForRegion string   // region the bytes go to ("" the node's own)
	Route     []string // the way the bytes must come, source first, this region last
	Class     string   // transfer class ("" interactive)
}

type fillKey struct{}

// WithFill returns ctx carrying f for the fills of a read.
func WithFill(ctx context.Context, f Fill) context.Context {
	return context.WithValue(ctx, fillKey{}, f)
}

// FillFrom returns the Fill in ctx, if any.
func FillFrom(ctx context.Context) (Fill, bool) {
	f, ok := ctx.Value(fillKey{}).(Fill)
	return f, ok
}

// Tier says where the bytes of a read came from; it is reported to the
// client for tracing.
type Tier string

const (
	TierMemory Tier = "memory" // the node's memory tier
	TierDisk   Tier = "disk"   // the node's disk tier
	TierLake   Tier = "lake"   // filled from the Source during this read
	TierWait   Tier = "wait"   // filled by another reader's fetch this read waited for
	TierRemote Tier = "remote" // filled from another region during this read
)
