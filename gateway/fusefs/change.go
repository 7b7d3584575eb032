package fusefs

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// setPending marks name as created here and not yet in the lake (so a
// listing shows it), or clears the mark.
func (n *node) setPending(name string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		if n.pending == nil {
			n.pending = map[string]bool{}
		}
		n.pending[name] = true
	} else {
		delete(n.pending, name)
	}
}

// pendingNames lists the names created here and not yet in the lake.
func (n *node) pendingNames() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	for name := range n.pending {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Create makes a new file, visible at once to this mount and written to
// the lake when it is first flushed (closed or fsynced).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	p, errno := n.childPath(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := n.fsys.changeable(p); errno != 0 {
		return nil, nil, 0, errno
	}
	cn := &node{fsys: n.fsys, entry: router.Entry{Path: p, ModTime: time.Now()}, statAt: time.Now(), local: true}
	ch := n.NewInode(ctx, cn, fs.StableAttr{Mode: syscall.S_IFREG})
	w, errno := cn.openWriter(p, router.Entry{Path: p}, true)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.setPending(name, true)
	cn.fillEntryOut(p, out)
	return ch, w, n.fsys.writeOpenFlags.Load(), 0
}

// Mkdir makes a directory in the lake.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, errno := n.childPath(name)
	if errno != 0 {
		return nil, errno
	}
	if errno := n.fsys.changeable(p); errno != 0 {
		return nil, errno
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	if err := n.fsys.ns.Mkdir(octx, p); err != nil {
		return nil, n.fsys.errno(octx, "mkdir", p, err)
	}
	return n.child(ctx, name, router.Entry{Path: p, IsDir: true, ModTime: time.Now()}, out), 0
}

// Unlink removes a file. An open handle of it keeps working, but what it
// writes is dropped.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	p, errno := n.childPath(name)
	if errno != 0 {
		return errno
	}
	if errno := n.fsys.changeable(p); errno != 0 {
		return errno
	}
	if ch := n.localChild(name); ch != nil {
		ch.Operations().(*node).markUnlinked()
		n.setPending(name, false)
		return 0
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	if err := n.fsys.ns.Remove(octx, p); err != nil {
		return n.fsys.errno(octx, "unlink", p, err)
	}
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			cn.markUnlinked()
		}
	}
	return 0
}

func (n *node) markUnlinked() {
	n.mu.Lock()
	n.unlinked = true
	n.mu.Unlock()
}

// Rmdir removes an empty directory.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	p, errno := n.childPath(name)
	if errno != 0 {
		return errno
	}
	if errno := n.fsys.changeable(p); errno != 0 {
		return errno
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	if err := n.fsys.ns.Remove(octx, p); err != nil {
		return n.fsys.errno(octx, "rmdir", p, err)
	}
	return 0
}

// Rename moves a file (or a directory, where the lake can) within one
// mount, replacing the target. A file with writes not yet in the lake is
// flushed first, so the lake has what is renamed.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	from, errno := n.childPath(name)
	if errno != 0 {
		return errno
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	to, errno := np.childPath(newName)
	if errno != 0 {
		return errno
	}
	for _, p := range []string{from, to} {
		if errno := n.fsys.changeable(p); errno != 0 {
			return errno
		}
	}
	if errno := n.fsys.sameMount(from, to); errno != 0 {
		return errno
	}
	const noReplace = 1 // RENAME_NOREPLACE
	if flags&^noReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	octx, cancel := n.fsys.opContext()
	defer cancel()
	if flags&noReplace != 0 {
		if _, err := n.fsys.ns.Stat(octx, to); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, ufs.ErrNotFound) {
			return n.fsys.errno(octx, "rename", to, err)
		}
	}
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			if errno := cn.flushWriters(); errno != 0 {
				return errno
			}
		}
	}
	if err := n.fsys.ns.Rename(octx, from, to); err != nil {
		if ch := n.GetChild(name); ch != nil && ch.IsDir() && errors.Is(err, ufs.ErrIsDir) {
			// A lake that cannot rename directories (S3): EXDEV, as
			// between file systems, so mv and shutil.move copy the tree
			// and remove the source instead.
			n.fsys.log.Debug("directory rename refused by its lake; EXDEV", "from", from, "to", to, "err", err)
			return syscall.EXDEV
		}
		return n.fsys.errno(octx, "rename", from, err)
	}
	n.setPending(name, false)
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			cn.moved(to)
			cn.followRename(octx, to)
		}
	}
	return 0
}

// moved records a rename to p: the lake may have given the file a new
// version (S3 copies it), so the next open asks again.
func (n *node) moved(p string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.entry.Path, n.statAt = p, time.Time{}
}

// flushWriters writes the node's open writers to the lake.
func (n *node) flushWriters() syscall.Errno {
	n.mu.Lock()
	ws := make([]*writeHandle, 0, len(n.writers))
	for w := range n.writers {
		ws = append(ws, w)
	}
	n.mu.Unlock()
	for _, w := range ws {
		if errno := w.flush(); errno != 0 {
			return errno
		}
	}
	return 0
}
