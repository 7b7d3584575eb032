package fusefs

import (
	"context"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/lakemesh/lakemesh/router"
)

// Changes made through lakemesh elsewhere in the region (another mount,
// the S3 gateway, the CLI) reach the mount as soon as they are made: the
// region's nodes pass on what the changing client tells them
// (router.Watcher), and the mount drops its own entry of each changed
// path and tells the kernel to drop its dentry, attributes and pages
// (FUSE_NOTIFY_INVAL_ENTRY and _INODE), which it would otherwise keep
// for the path's metadata TTL. A change made in the lake directly is
// seen after the TTL, as before.
//
// The kernel's invalidation of a dentry drops the dentries below it
// too, so directories the mount knows are never invalidated as entries
// when only their listing changed (a file written below them): their
// attributes and cached listing are, and their children stay.

// watch starts passing the region's changes to the kernel, until the
// mount ends; it returns once the watch is in place.
func (m *Mount) watch(root *fs.Inode) {
	w, ok := m.fsys.ns.(router.Watcher)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { m.server.Wait(); cancel() }()
	w.WatchChanges(ctx, func(c router.Change) { m.fsys.dropChanged(root, c) })
}

// dropChanged drops what the mount and the kernel hold of a change.
func (f *FS) dropChanged(root *fs.Inode, c router.Change) {
	if c.Lost || c.Below == "/" {
		f.log.Debug("region changes may have been missed; dropping every cached entry")
		dropTree(root)
		return
	}
	if c.Below != "" {
		f.dropPath(root, c.Below)
	}
	for _, p := range c.Paths {
		f.dropPath(root, p)
	}
	for _, d := range c.Dirs {
		if in, _, _ := lookupPath(root, d); in != nil {
			dropOne(in)
		} else {
			f.dropPath(root, d) // a directory this mount may have been told is missing
		}
	}
}

// dropPath drops a path that was written, made, removed or renamed: its
// dentry (or the dentry of the first of its directories the kernel does
// not know as one, which may be cached as missing), its inode and
// everything below, and its directory's listing.
func (f *FS) dropPath(root *fs.Inode, p string) {
	in, parent, name := lookupPath(root, p)
	if in != nil {
		dropTree(in)
	}
	if parent == nil {
		return
	}
	if name != "" {
		parent.NotifyEntry(name)
	}
	dropOne(parent)
}

// lookupPath walks the mount's tree to p. It returns p's inode if the
// mount knows it; else the deepest directory it knows on the way and the
// name there that it does not (parent, name). When p is known, parent is
// its directory and name its name.
func lookupPath(root *fs.Inode, p string) (in, parent *fs.Inode, name string) {
	in = root
	for el := range strings.SplitSeq(strings.Trim(p, "/"), "/") {
		if el == "" {
			continue
		}
		next := in.GetChild(el)
		if next == nil {
			return nil, in, el
		}
		parent, name, in = in, el, next
	}
	return in, parent, name
}

// dropTree drops in and every inode below it.
func dropTree(in *fs.Inode) {
	dropOne(in)
	for _, ch := range in.Children() {
		dropTree(ch)
	}
}

// dropOne makes the mount ask again for in's entry and the kernel drop
// its attributes and cached pages (or listing).
func dropOne(in *fs.Inode) {
	if n, ok := in.Operations().(*node); ok {
		n.mu.Lock()
		n.statAt = time.Time{}
		n.mu.Unlock()
	}
	in.NotifyContent(0, 0)
}
