package cachenode

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// Attrs. A file's attrs (ufs.Attrs: the standard headers and user
// metadata an S3 client stored with it) travel with its write: in the
// Write stream's first message, in the journal's record until the
// upload, and in the Upload request to a lake homed in another region;
// the lake keeps them (ufs.AttrFS). A lake that keeps none (hdfs) drops
// the standard headers and refuses user metadata (ufs.ErrAttrsNotKept),
// so what a client asked to keep is never silently lost.
//
// Listings carry no attrs, so the node keeps the attrs it wrote or looked
// up (one lake call, a HEAD on S3) for the mount's metadata TTL, for the
// version it was told; an invalidation of the path drops them. A
// StatAttrs whose stat misses the metadata cache asks the lake for both
// with that one call.

// attrsCacheEntries bounds the attrs a node keeps.
const attrsCacheEntries = 1 << 16

// checkAttrs says whether lake can keep attrs, before any byte is written.
func checkAttrs(lake Lake, attrs ufs.Attrs) error {
	if len(attrs) == 0 {
		return nil
	}
	if err := attrs.Validate(); err != nil {
		return err
	}
	if _, ok := lake.FS.(ufs.AttrFS); !ok && hasUserAttrs(attrs) {
		return noUserAttrs(lake)
	}
	return nil
}

func noUserAttrs(lake Lake) error {
	return fmt.Errorf("the lake %s keeps no user metadata (x-amz-meta-*): %w", lake.FS, ufs.ErrAttrsNotKept)
}

func hasUserAttrs(attrs ufs.Attrs) bool {
	for k := range attrs {
		if strings.HasPrefix(k, ufs.UserAttrPrefix) {
			return true
		}
	}
	return false
}

// create writes a lake file with its attrs (checked by checkAttrs).
func create(ctx context.Context, lake Lake, rel string, r io.Reader, attrs ufs.Attrs) (ufs.FileInfo, error) {
	if afs, ok := lake.FS.(ufs.AttrFS); ok && len(attrs) > 0 {
		return afs.CreateAttrs(ctx, rel, r, attrs)
	}
	if hasUserAttrs(attrs) {
		return ufs.FileInfo{}, noUserAttrs(lake)
	}
	return lake.FS.Create(ctx, rel, r)
}

// attrsCache holds files' attrs by path, each for one version until a
// deadline.
type attrsCache struct {
	expiringMap[cachedAttrs]
}

type cachedAttrs struct {
	version string
	attrs   ufs.Attrs
}

func newAttrsCache() attrsCache {
	return attrsCache{expiringMap[cachedAttrs]{limit: attrsCacheEntries}}
}

func (c *attrsCache) put(p, version string, attrs ufs.Attrs, ttl time.Duration) {
	if ttl > 0 && version != "" {
		c.expiringMap.put(p, cachedAttrs{version: version, attrs: attrs.Clone()}, ttl)
	}
}

// get returns the attrs of p at version, if held and fresh.
func (c *attrsCache) get(p, version string) (ufs.Attrs, bool) {
	e, ok := c.expiringMap.get(p)
	if !ok || e.version != version {
		return nil, false
	}
	return e.attrs, true
}

// drop forgets p and everything below it.
func (c *attrsCache) drop(p string) {
	p = strings.TrimSuffix(p, "/")
	c.expiringMap.drop(func(k string) bool { return p == "" || k == p || strings.HasPrefix(k, p+"/") })
}

// StatAttrs is Stat with the file's attrs: a journaled file's from its
// record, else the node's cached ones for the version Stat answers, else
// one lake call. When the lake's file changed since Stat's answer, the
// lake's newer entry is the answer, with its attrs.
func (n *Node) StatAttrs(ctx context.Context, req *nodepb.StatRequest) (*nodepb.StatAttrsReply, error) {
	st, err := n.stat(ctx, req, true)
	if err != nil {
		return nil, err
	}
	e, p := st.GetEntry(), req.GetPath()
	if e.GetDir() {
		return &nodepb.StatAttrsReply{Entry: e}, nil
	}
	if _, ok := JournalNode(e.GetVersion()); ok {
		if n.cfg.Journal != nil {
			if j, ok := n.cfg.Journal.Pending(p); ok && j.Version() == e.GetVersion() {
				return &nodepb.StatAttrsReply{Entry: e, Attrs: j.Attrs}, nil
			}
		}
		// Another node's journal holds it (this one answers for it while
		// that node is away, or after it moved): its attrs are there.
		return &nodepb.StatAttrsReply{Entry: e}, nil
	}
	if attrs, ok := n.attrs.get(p, e.GetVersion()); ok {
		return &nodepb.StatAttrsReply{Entry: e, Attrs: attrs}, nil
	}
	lake, rel, err := n.cfg.Lakes.Resolve(p)
	if err != nil {
		return nil, ToStatus(err)
	}
	afs, ok := lake.FS.(ufs.AttrFS)
	if !ok {
		return &nodepb.StatAttrsReply{Entry: e}, nil
	}
	fi, attrs, err := afs.StatAttrs(ctx, rel)
	if err != nil {
		return nil, ToStatus(fmt.Errorf("stat %s: %w", p, err))
	}
	if fi.Version != e.GetVersion() {
		n.meta.invalidate(p) // the lake moved on since the cached stat
	}
	n.attrs.put(p, fi.Version, attrs, lake.MetadataTTL)
	return &nodepb.StatAttrsReply{Entry: n.uploaded.mark(entryProto(lake, fi)), Attrs: attrs}, nil
}
