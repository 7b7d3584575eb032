package router

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/ufs"
)

// The last resort of the read path: when no node of the region can serve,
// a client that is allowed to reads the lake itself. The bytes are not
// cached anywhere, and the version check still holds.

func (c *Client) fallback(err error) bool {
	return c.cfg.DirectFallback && errors.Is(err, ErrNoNode)
}

// lake opens (once) the lake of a mount for direct reads.
func (c *Client) lake(ctx context.Context, m federation.Mount) (ufs.FS, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.lakes[m.Path]; ok {
		return l, nil
	}
	l, err := ufs.Open(ctx, m.UFS)
	if err != nil {
		return nil, fmt.Errorf("open lake of %s for a direct read: %w", m.Path, err)
	}
	c.lakes[m.Path] = l
	return l, nil
}

func (c *Client) resolve(p string) (federation.Mount, string, error) {
	m, rel, ok := c.cfg.Topology.Resolve(p)
	if !ok {
		return federation.Mount{}, "", fmt.Errorf("path %s: no mount holds it (mounts: %s)", p, mountList(c.cfg.Topology))
	}
	return m, rel, nil
}

func mountList(t *federation.Topology) string {
	s := ""
	for i, m := range t.Mounts {
		if i > 0 {
			s += ", "
		}
		s += m.Path
	}
	return s
}

func (c *Client) directStat(ctx context.Context, p string) (Entry, error) {
	m, rel, err := c.resolve(p)
	if err != nil {
		return Entry{}, err
	}
	l, err := c.lake(ctx, m)
	if err != nil {
		return Entry{}, err
	}
	fi, err := l.Stat(ctx, rel)
	if err != nil {
		return Entry{}, fmt.Errorf("stat %s directly from %s: %w", p, l, err)
	}
	return entryOf(m, fi), nil
}

func (c *Client) directStatAttrs(ctx context.Context, p string) (Entry, ufs.Attrs, error) {
	m, rel, err := c.resolve(p)
	if err != nil {
		return Entry{}, nil, err
	}
	l, err := c.lake(ctx, m)
	if err != nil {
		return Entry{}, nil, err
	}
	afs, ok := l.(ufs.AttrFS)
	if !ok {
		e, err := c.directStat(ctx, p)
		return e, nil, err
	}
	fi, attrs, err := afs.StatAttrs(ctx, rel)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("stat %s directly from %s: %w", p, l, err)
	}
	return entryOf(m, fi), attrs, nil
}

func (c *Client) directList(ctx context.Context, dir, token string, limit int) ([]Entry, string, error) {
	m, rel, err := c.resolve(dir)
	if err != nil {
		return nil, "", err
	}
	l, err := c.lake(ctx, m)
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = 1000
	}
	page, err := l.List(ctx, rel, token, limit)
	if err != nil {
		return nil, "", fmt.Errorf("list %s directly from %s: %w", dir, l, err)
	}
	out := make([]Entry, 0, len(page.Entries))
	for _, fi := range page.Entries {
		out = append(out, entryOf(m, fi))
	}
	return out, page.Next, nil
}

func (c *Client) directRead(ctx context.Context, f *File, off int64, buf []byte) error {
	l, err := c.lake(ctx, f.mount)
	if err != nil {
		return err
	}
	rc, err := l.ReadRange(ctx, f.ref.Path, f.ref.Version, off, int64(len(buf)))
	if err != nil {
		return fmt.Errorf("read %s directly from %s: %w", f.entry.Path, l, err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, buf); err != nil {
		return fmt.Errorf("read %s directly from %s: %w", f.entry.Path, l, err)
	}
	return nil
}

func entryOf(m federation.Mount, fi ufs.FileInfo) Entry {
	p := m.Path
	if fi.Path != "" {
		p += "/" + fi.Path
	}
	return Entry{Path: p, Size: fi.Size, ModTime: fi.ModTime, IsDir: fi.IsDir, Version: fi.Version}
}
