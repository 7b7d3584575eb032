package router

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// Entry is a file or directory of the namespace.
type Entry struct {
	Path    string // namespace path, e.g. "/lake/s3-use1/train/part-0001"
	Size    int64
	ModTime time.Time
	IsDir   bool
	Version string
	// UploadedFrom is the write-back journal version this version was
	// uploaded from (the same bytes), when the region still knows it: a
	// client that saw the file before its upload holds that version.
	UploadedFrom string
}

// Name is the last element of Path.
func (e Entry) Name() string { return path.Base(e.Path) }

func entryFrom(pe *nodepb.Entry) Entry {
	e := Entry{Path: pe.GetPath(), Size: pe.GetSize(), IsDir: pe.GetDir(), Version: pe.GetVersion(), UploadedFrom: pe.GetUploadedFrom()}
	if ns := pe.GetMtimeUnixNano(); ns != 0 {
		e.ModTime = time.Unix(0, ns)
	}
	return e
}

// CleanNamespacePath checks a user-supplied namespace path: absolute, no
// ".." elements; it returns the canonical form ("/" or "/a/b").
func CleanNamespacePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q: %w: a namespace path starts with /, like /lake/s3-use1/file", p, ufs.ErrInvalidPath)
	}
	rel, err := ufs.CleanPath(p)
	if err != nil {
		return "", err
	}
	return "/" + rel, nil
}

// metaKey places a path's metadata on a node.
func metaKey(p string) string { return "meta:" + p }

// Stat returns the entry at a namespace path.
func (c *Client) Stat(ctx context.Context, p string) (Entry, error) {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	err = c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, m region.Member) error {
		// A node on this host answers on its short-circuit socket.
		if r, answered, err := c.sc.stat(ctx, m, p, false); answered {
			if err == nil {
				e = entryFrom(r.GetEntry())
			}
			return err
		}
		r, err := nc.Stat(ctx, &nodepb.StatRequest{Path: p})
		if err == nil {
			e = entryFrom(r.GetEntry())
		}
		return err
	})
	if err != nil && c.fallback(err) {
		return c.directStat(ctx, p)
	}
	return e, err
}

// StatAttrs is Stat with the file's attrs (ufs.Attrs: the standard
// headers and user metadata an S3 client stored with it); nil for a
// directory, or a file that has none or whose lake keeps none.
func (c *Client) StatAttrs(ctx context.Context, p string) (Entry, ufs.Attrs, error) {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return Entry{}, nil, err
	}
	var e Entry
	var attrs ufs.Attrs
	err = c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, m region.Member) error {
		r, answered, err := c.sc.stat(ctx, m, p, true)
		if !answered {
			r, err = nc.StatAttrs(ctx, &nodepb.StatRequest{Path: p})
		}
		if err == nil {
			e, attrs = entryFrom(r.GetEntry()), r.GetAttrs()
		}
		return err
	})
	if err != nil && c.fallback(err) {
		return c.directStatAttrs(ctx, p)
	}
	return e, attrs, err
}

// List returns one page of the entries of a directory; next is "" after
// the last page. limit <= 0 means the node's default page size.
func (c *Client) List(ctx context.Context, dir, token string, limit int) (entries []Entry, next string, err error) {
	dir, err = CleanNamespacePath(dir)
	if err != nil {
		return nil, "", err
	}
	err = c.onCandidates(ctx, metaKey(dir), func(nc nodepb.NodeClient, _ region.Member) error {
		r, err := nc.List(ctx, &nodepb.ListRequest{Path: dir, Token: token, Limit: int32(limit)})
		if err != nil {
			return err
		}
		entries = entries[:0]
		for _, pe := range r.GetEntries() {
			entries = append(entries, entryFrom(pe))
		}
		next = r.GetNext()
		return nil
	})
	if err != nil && c.fallback(err) {
		return c.directList(ctx, dir, token, limit)
	}
	return entries, next, err
}

// Walk calls fn for every entry of dir, page by page, until fn returns an
// error or the listing ends.
func (c *Client) Walk(ctx context.Context, dir string, pageSize int, fn func(Entry) error) error {
	token := ""
	for {
		entries, next, err := c.List(ctx, dir, token, pageSize)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}
