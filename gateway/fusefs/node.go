package fusefs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
)

// node is one file or directory of the namespace, as the kernel knows it.
// Its namespace path is where it sits in go-fuse's tree (which follows
// renames), so it is never stored.
type node struct {
	fs.Inode
	fsys *FS

	mu           sync.Mutex             // guards the fields below; a leaf lock
	entry        router.Entry           // what the namespace said last
	statAt       time.Time              // when entry was fetched or written
	local        bool                   // created here, not yet in the lake
	unlinked     bool                   // removed while open: writes are dropped
	cacheVersion string                 // the version whose pages the kernel may hold
	readers      map[string]int         // open read handles by version
	writers      map[*writeHandle]bool  // open write handles
	followers    map[*followReader]bool // open handles' readers, which follow renames
	pending      map[string]bool        // (directory) names created here, not yet in the lake
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
)

// Root is the root node of the mount: "/" of the namespace.
func (f *FS) Root() fs.InodeEmbedder {
	return &node{fsys: f, entry: router.Entry{Path: "/", IsDir: true}, statAt: time.Now()}
}

// path is the node's namespace path; ok is false once the node is no
// longer in the tree (unlinked, or replaced by a rename).
func (n *node) path() (p string, ok bool) {
	var names []string
	in := n.EmbeddedInode()
	for !in.IsRoot() {
		name, parent := in.Parent()
		if parent == nil {
			return "", false
		}
		names = append(names, name)
		in = parent
	}
	slices.Reverse(names)
	return "/" + strings.Join(names, "/"), true
}

// childPath checks name and returns the namespace path of the child.
func (n *node) childPath(name string) (string, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return "", errno
	}
	dir, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	return childPath(dir, name), 0
}

// Lookup finds a child: from the namespace (the owner node's metadata
// cache), or the file this mount created and has not written yet.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, errno := n.childPath(name)
	if errno != 0 {
		return nil, errno
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	e, err := n.fsys.ns.Stat(octx, p)
	if err != nil {
		if ch := n.localChild(name); ch != nil {
			ch.Operations().(*node).fillEntryOut(p, out)
			return ch, 0
		}
		if errors.Is(err, cachenode.ErrNoMount) {
			return nil, syscall.ENOENT // a name above the mounts that leads nowhere
		}
		return nil, n.fsys.errno(octx, "lookup", p, err)
	}
	return n.child(ctx, name, e, out), 0
}

// localChild is the child called name if this mount created it and has
// not written it to the lake yet.
func (n *node) localChild(name string) *fs.Inode {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	cn, ok := ch.Operations().(*node)
	if !ok {
		return nil
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if !cn.local {
		return nil
	}
	return ch
}

// child returns the inode of the child name described by e, the one the
// kernel already knows when its type has not changed (so inode numbers
// stay put), and fills out.
func (n *node) child(ctx context.Context, name string, e router.Entry, out *fuse.EntryOut) *fs.Inode {
	if ch := n.GetChild(name); ch != nil && ch.IsDir() == e.IsDir {
		if cn, ok := ch.Operations().(*node); ok {
			cn.learn(e)
			cn.fillEntryOut(e.Path, out)
			return ch
		}
	}
	cn := &node{fsys: n.fsys, entry: e, statAt: time.Now()}
	mode := uint32(syscall.S_IFREG)
	if e.IsDir {
		mode = syscall.S_IFDIR
	}
	ch := n.NewInode(ctx, cn, fs.StableAttr{Mode: mode})
	cn.fillEntryOut(e.Path, out)
	return ch
}

// learn records what the namespace says of the node now. A file created
// here and not yet written keeps its local entry.
func (n *node) learn(e router.Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.local {
		n.entry, n.statAt = e, time.Now()
	}
}

// attrs fills a with what the node is now: its open writers' size when
// it has one, else the last entry.
func (n *node) attrs(a *fuse.Attr) {
	n.mu.Lock()
	e := n.entry
	for w := range n.writers {
		if size, ok := w.localSize(); ok {
			e.Size = size
			e.ModTime = w.modTime()
		}
	}
	n.mu.Unlock()
	n.fsys.fillAttr(e, a)
}

// fillAttr turns an entry into kernel attributes.
func (f *FS) fillAttr(e router.Entry, a *fuse.Attr) {
	perm := uint32(0o644)
	if e.IsDir {
		a.Mode = syscall.S_IFDIR
		perm = 0o755
		a.Nlink = 2
	} else {
		a.Mode = syscall.S_IFREG
		a.Nlink = 1
		a.Size = uint64(e.Size)
	}
	if f.cfg.ReadOnly {
		perm &^= 0o222
	}
	a.Mode |= perm
	mtime := e.ModTime
	if mtime.IsZero() {
		mtime = f.started
	}
	a.SetTimes(&mtime, &mtime, &mtime)
	a.Owner = fuse.Owner{Uid: f.cfg.UID, Gid: f.cfg.GID}
	// A 1 MiB I/O size hint makes cp, cat and friends read and write
	// 1 MiB at a time, the size of the mount's largest request.
	a.Blksize = 1 << 20
	a.Blocks = (a.Size + 511) / 512
}

// fillEntryOut fills a lookup answer for the node at p, cached by the
// kernel for p's metadata TTL.
func (n *node) fillEntryOut(p string, out *fuse.EntryOut) {
	n.attrs(&out.Attr)
	ttl := n.fsys.ttl(p)
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
}

// Getattr answers from the node when it has unwritten changes or its
// entry is younger than the path's TTL, else asks the namespace. An
// answer from the entry is cached by the kernel only for what is left of
// the entry's TTL, so the kernel never holds attributes more than a TTL
// older than the namespace's answer. The kernel asks before its timeout
// too, whenever a read has made the atime stale: that must not cost a
// Stat per open of a file.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	p, ok := n.path()
	if !ok || p == "/" {
		n.attrs(&out.Attr)
		out.SetTimeout(n.fsys.ttl(p))
		return 0
	}
	if left, ok := n.cachedFor(n.fsys.ttl(p)); ok {
		n.attrs(&out.Attr)
		out.SetTimeout(left)
		return 0
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	e, err := n.fsys.ns.Stat(octx, p)
	if err != nil {
		if fh != nil {
			// An open file that changed or went away keeps the
			// attributes it was opened with.
			n.attrs(&out.Attr)
			return 0
		}
		return n.fsys.errno(octx, "getattr", p, err)
	}
	n.learn(e)
	n.attrs(&out.Attr)
	out.SetTimeout(n.fsys.ttl(p))
	return 0
}

// cachedFor says how much longer the node's entry may be used without
// asking, when an entry is used for at most maxAge after it was fetched;
// ok is false when it must be fetched again. An entry this mount is
// changing (created here, unlinked, or with a writer's size) is never
// fetched again and is good for maxAge.
func (n *node) cachedFor(maxAge time.Duration) (left time.Duration, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.local || n.unlinked {
		return maxAge, true
	}
	for w := range n.writers {
		if _, ok := w.localSize(); ok {
			return maxAge, true
		}
	}
	left = maxAge - time.Since(n.statAt)
	return left, left > 0
}

// current returns the node's entry at p, fetched again when it is more
// than maxAge old.
func (n *node) current(p string, maxAge time.Duration) (router.Entry, syscall.Errno) {
	if _, ok := n.cachedFor(maxAge); ok {
		n.mu.Lock()
		defer n.mu.Unlock()
		e := n.entry
		e.Path = p
		return e, 0
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	e, err := n.fsys.ns.Stat(octx, p)
	if err != nil {
		return router.Entry{}, n.fsys.errno(octx, "stat", p, err)
	}
	n.learn(e)
	return e, 0
}

// Statfs answers without the network: a large, mostly free file system
// with names of up to 255 bytes.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const blockSize = 1 << 20
	out.Bsize = blockSize
	out.Frsize = blockSize
	out.Blocks = 1 << 30 // 1 PiB
	out.Bfree = 1 << 30
	out.Bavail = 1 << 30
	out.Files = 1 << 40
	out.Ffree = 1 << 40
	out.NameLen = maxNameLen
	return 0
}
