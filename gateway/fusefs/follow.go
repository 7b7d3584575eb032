package fusefs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/lakemesh/lakemesh/router"
)

// followReader is an open handle's reader of the file it opened. A
// router reader reads a path's version, but a kernel file handle follows
// its file: when this mount renames the file, the handle's reader is
// re-pointed at the new path (follow), so reads and copy-ins of a renamed
// open file go on, as they do on a local file system.
type followReader struct {
	mu      sync.Mutex
	r       router.Reader
	limit   int64           // the last Limit, for a new reader; -1 for none
	retired []router.Reader // readers before renames, closed with the handle
}

var _ router.Reader = (*followReader)(nil)

func newFollowReader(r router.Reader) *followReader { return &followReader{r: r, limit: -1} }

func (f *followReader) current() router.Reader {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.r
}

func (f *followReader) Entry() router.Entry { return f.current().Entry() }

func (f *followReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return f.current().ReadAt(ctx, p, off)
}

func (f *followReader) Limit(end int64) {
	f.mu.Lock()
	f.limit = end
	r := f.r
	f.mu.Unlock()
	r.Limit(end)
}

// follow makes r the reader; the one before stays open until Close, for
// reads in flight on it.
func (f *followReader) follow(r router.Reader) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limit >= 0 {
		r.Limit(f.limit)
	}
	f.retired = append(f.retired, f.r)
	f.r = r
}

func (f *followReader) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.r.Close()
	for _, r := range f.retired {
		err = errors.Join(err, r.Close())
	}
	f.retired = nil
	return err
}

// addFollower and dropFollower keep the node's open readers.
func (n *node) addFollower(f *followReader) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.followers == nil {
		n.followers = map[*followReader]bool{}
	}
	n.followers[f] = true
}

func (n *node) dropFollower(f *followReader) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.followers, f)
}

// followRename re-points the node's open readers at p, the path this
// mount just renamed the file to: the same bytes, under a version the
// lake may have changed (S3 copies the object). A reader whose file has
// another size there now (changed since by someone else) is left as it
// is, and reads fail as a changed file's do.
func (n *node) followRename(ctx context.Context, p string) {
	n.mu.Lock()
	open := slices.Collect(maps.Keys(n.followers))
	n.mu.Unlock()
	if len(open) == 0 {
		return
	}
	e, err := n.fsys.ns.Stat(ctx, p)
	if err != nil {
		n.fsys.log.Warn("open handles of a renamed file could not follow it", "path", p, "err", err)
		return
	}
	for _, f := range open {
		if f.Entry().Size != e.Size {
			continue
		}
		r, err := n.fsys.ns.OpenReader(e)
		if err != nil {
			n.fsys.log.Warn("an open handle of a renamed file could not follow it", "path", p, "err", err)
			continue
		}
		f.follow(r)
	}
}
