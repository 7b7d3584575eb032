package cachenode

import (
	"context"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// One listing per region. When stats miss in a directory, each node that
// gets them revalidates the directory with a listing (metadir.go); readers
// spread a directory's stats over every node of the region (by path), so
// without more each node would list the directory from the lake: one LIST
// per node, each costing the lake a read of every entry's metadata, and
// crossing the line when the lake is in another region. Instead a node
// asks the directory's metadata owner (the node clients send its listings
// to, region rendezvous hashing over "meta:"+dir) for the lake's pages.
// The owner answers from its metadata cache, asking the lake on a miss, so
// the listings of the region's nodes share one lake LIST; the owner's own
// stat revalidation reads the same cached pages.
//
// Freshness: the owner says how old its page is (when it asked the lake,
// as a duration, so clocks need not agree), and the entries are cached
// until then plus the TTL, never longer than a listing of the node's own.
// A page the lake gave before this node last saw the directory change (an
// invalidation the owner may not have applied yet) is not used. Whenever
// the owner cannot answer (down, not yet upgraded, its page too old), the
// node lists the lake itself, as before.
const (
	// lakePageHeader, on a List call, asks for the lake's page alone:
	// without the write-back files a node merges into client listings
	// (stats consult those apart, before the metadata cache).
	lakePageHeader = "lakemesh-lake-page"
	// pageAgeHeader answers it: nanoseconds since the lake was asked
	// for the page.
	pageAgeHeader = "lakemesh-page-age"
	// peerListTimeout bounds a listing asked of the owner; stats wait
	// for it, and list the lake themselves past it.
	peerListTimeout = 10 * time.Second
)

// statPages lists a page of a directory for stat revalidation: the
// owner's page when another node owns the directory's metadata and can
// answer, otherwise the lake's through this node's metadata cache.
func (n *Node) statPages(ctx context.Context, lake Lake, dir, relDir, token string) (ufs.ListPage, time.Time, error) {
	if page, asOf, ok := n.ownerPage(ctx, lake, dir, token); ok {
		return page, asOf, nil
	}
	return n.meta.listAt(ctx, dir, token, ufs.DefaultListLimit, lake.MetadataTTL, func(ctx context.Context) (ufs.ListPage, error) {
		return lake.FS.List(ctx, relDir, token, ufs.DefaultListLimit)
	})
}

// ownerPage asks dir's metadata owner for the lake's page at token; ok is
// false when there is no other owner or its answer cannot be used.
func (n *Node) ownerPage(ctx context.Context, lake Lake, dir, token string) (page ufs.ListPage, asOf time.Time, ok bool) {
	if n.cfg.PageOwners == nil || n.cfg.PeerConn == nil {
		return page, asOf, false
	}
	owner := n.cfg.PageOwners([]string{"meta:" + dir})[0]
	if owner == nil || owner.GetId() == n.cfg.ID || owner.GetAddr() == "" {
		return page, asOf, false
	}
	cc, err := n.cfg.PeerConn(owner.GetAddr())
	if err != nil {
		return page, asOf, false
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, lakePageHeader, "1"), peerListTimeout)
	defer cancel()
	asked := n.meta.now()
	var hdr metadata.MD
	r, err := nodepb.NewNodeClient(cc).List(ctx, &nodepb.ListRequest{Path: dir, Token: token, Limit: ufs.DefaultListLimit}, grpc.Header(&hdr))
	if err != nil {
		n.log.Debug("listing for stats not answered by the directory's owner; listing the lake", "dir", dir, "owner", owner.GetId(), "err", err)
		return page, asOf, false
	}
	ages := hdr.Get(pageAgeHeader)
	if len(ages) != 1 {
		return page, asOf, false // an owner that does not know lakePageHeader
	}
	age, err := strconv.ParseInt(ages[0], 10, 64)
	if err != nil || age < 0 {
		return page, asOf, false
	}
	asOf = asked.Add(-time.Duration(age))
	if n.meta.changedSince(dir, asOf) {
		return page, asOf, false
	}
	page.Next = r.GetNext()
	page.Entries = make([]ufs.FileInfo, 0, len(r.GetEntries()))
	for _, e := range r.GetEntries() {
		rel, found := strings.CutPrefix(e.GetPath(), lake.Path+"/")
		if !found {
			return ufs.ListPage{}, asOf, false
		}
		page.Entries = append(page.Entries, ufs.FileInfo{
			Path:    rel,
			Size:    e.GetSize(),
			ModTime: time.Unix(0, e.GetMtimeUnixNano()),
			IsDir:   e.GetDir(),
			Version: e.GetVersion(),
		})
	}
	return page, asOf, true
}

// wantsLakePage reports whether a List call asks for the lake's page alone.
func wantsLakePage(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(lakePageHeader)) > 0
}

// listLakePage answers a List call that wants the lake's page alone (see
// lakePageHeader), saying how old the page is.
func (n *Node) listLakePage(ctx context.Context, lake Lake, p, rel, token string, limit int) (*nodepb.ListReply, error) {
	page, asOf, err := n.meta.listAt(ctx, p, token, limit, lake.MetadataTTL, func(ctx context.Context) (ufs.ListPage, error) {
		return lake.FS.List(ctx, rel, token, limit)
	})
	if err != nil {
		return nil, err
	}
	age := max(n.meta.now().Sub(asOf), 0)
	if err := grpc.SetHeader(ctx, metadata.Pairs(pageAgeHeader, strconv.FormatInt(int64(age), 10))); err != nil {
		return nil, err
	}
	reply := &nodepb.ListReply{Next: page.Next, Entries: make([]*nodepb.Entry, 0, len(page.Entries))}
	for _, fi := range page.Entries {
		reply.Entries = append(reply.Entries, entryProto(lake, fi))
	}
	return reply, nil
}
