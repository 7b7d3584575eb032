package cachenode

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

// Lake is one mount as a cache node sees it: the namespace path it is
// mounted at and the adapter that reads it.
type Lake struct {
	Path        string // mount path, e.g. "/lake/s3-use1"
	FS          ufs.FS
	MetadataTTL time.Duration
	ReadOnly    bool
	Region      string // home region; "" when the node is not federated
}

// Lakes resolves namespace paths to lakes by longest mount-path prefix.
type Lakes struct {
	byLen []Lake // longest path first
	// lakeBytes counts bytes read from lakes by this node's fills.
	lakeBytes atomic.Int64
}

// NewLakes indexes lakes for resolution.
func NewLakes(lakes []Lake) *Lakes {
	l := &Lakes{byLen: append([]Lake(nil), lakes...)}
	sort.Slice(l.byLen, func(i, j int) bool { return len(l.byLen[i].Path) > len(l.byLen[j].Path) })
	return l
}

// Resolve maps a namespace path to its lake and the cleaned path inside
// it. It refuses paths that are not absolute, hold "..", or lie under no
// mount.
func (l *Lakes) Resolve(path string) (Lake, string, error) {
	if !strings.HasPrefix(path, "/") {
		return Lake{}, "", fmt.Errorf("path %q: %w: must be absolute", path, ufs.ErrInvalidPath)
	}
	for _, lk := range l.byLen {
		if path == lk.Path || strings.HasPrefix(path, lk.Path+"/") {
			rel, err := ufs.CleanPath(path[len(lk.Path):])
			if err != nil {
				return Lake{}, "", err
			}
			return lk, rel, nil
		}
	}
	return Lake{}, "", fmt.Errorf("path %q: %w", path, ErrNoMount)
}

// All returns every lake, longest mount path first.
func (l *Lakes) All() []Lake { return l.byLen }

// Fetch implements Source: the lake itself, read from this node.
func (l *Lakes) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	for _, lk := range l.byLen {
		if lk.Path == ref.Mount {
			rc, err := lk.FS.ReadRange(ctx, ref.Path, ref.Version, off, n)
			if err != nil {
				return nil, fmt.Errorf("read %s [%d,+%d) from lake %s: %w", ref.Path, off, n, lk.FS, err)
			}
			return &countingReader{rc: rc, n: &l.lakeBytes}, nil
		}
	}
	return nil, fmt.Errorf("fetch %s: %w", ref, ErrNoMount)
}

// Spans implements SpanSource: a lake serves any range of a file.
func (l *Lakes) Spans(context.Context, FileRef) bool { return true }

// LakeBytes is the number of bytes this node has read from lakes.
func (l *Lakes) LakeBytes() int64 { return l.lakeBytes.Load() }

type countingReader struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }
