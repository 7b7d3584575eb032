package cachenode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// chunkSize is the payload of one streamed read message.
const chunkSize int64 = 1 << 20

// NodeConfig is what a cache node's data server needs; the daemon wires
// it from flags, the topology and membership.
type NodeConfig struct {
	ID     string
	Region string
	Addr   string // advertised gRPC address
	Lakes  *Lakes
	Store  *Store
	Cache  *Cache
	// Members returns the region's members as this node sees them (for
	// clients that bootstrap from one node).
	Members func() []*nodepb.Member
	// PageOwners, when set, returns the owner in the region of each page
	// key (PageID.Key), as readers place pages (region's rendezvous
	// hashing), or nil for a key with no owner. Seeding a written file's
	// pages uses it; without it this node keeps every page itself.
	PageOwners func(keys []string) []*nodepb.Member
	// PeerConn, when set, returns the node process's connection to
	// another member of the region (kept for the process's life); without
	// it a seeding dials the member and closes the connection after.
	PeerConn func(addr string) (grpc.ClientConnInterface, error)
	// Topology is the topology.yaml text the node runs with, so clients can
	// bootstrap from a node address alone.
	Topology       []byte
	TopologySource string
	// Events, when set, carries invalidations to every node of the mesh.
	Events *MeshEvents
	// MetadataEntries bounds the metadata cache (default 1M entries).
	MetadataEntries int
	// Residency, when set, says whether the bytes of a namespace path may
	// go to a region; it returns an error wrapping ErrResidency if not.
	// Checked for every read another region asks for.
	Residency func(path, region string) error
	// LineUse, when set, reports the node's traffic over lines for Info.
	LineUse func() []*nodepb.LineUse
	// OtherMembers, when set, returns the members of the other regions
	// the node knows, for Info.
	OtherMembers func() []*nodepb.Member
	// Journal, when set, holds files written in write-back mode, and
	// every write to a lake homed in another region, until their lake has
	// them (see writeback.go). Without it such writes are refused.
	Journal *Journal
	// WriteBack says whether writes of a path are acknowledged once the
	// journal has them (policy write_mode: back).
	WriteBack func(path string) bool
	// Upload sends a journal entry to its lake when that lake is homed in
	// another region (a node there pulls it over the line).
	Upload func(ctx context.Context, e JournalEntry, class string) (*nodepb.Entry, error)
	// Pull reads a journaled file from the node at addr of region from,
	// over the line into this region (for Upload).
	Pull func(ctx context.Context, from, addr string, ref FileRef, class string) io.ReadCloser
	// Announce tells the region's other nodes about pending files (see
	// writeback.go): the node that lists req.Dir shows them, and any node
	// that answers a stat of one answers the journal's version.
	Announce func(ctx context.Context, req *nodepb.PendingRequest) error
	Logger   *slog.Logger
	Tracer   trace.Tracer
}

// Node serves the data plane (nodepb.NodeServer) of one cache node.
type Node struct {
	nodepb.UnimplementedNodeServer
	cfg  NodeConfig
	log  *slog.Logger
	meta *metaCache
	bufs sync.Pool

	pendMu sync.Mutex // guards pending
	// announceMu orders this node's announcements of its journal's
	// files, so the region hears them in the order they happened.
	announceMu sync.Mutex
	pending    map[string]map[string]*nodepb.Entry // dir -> path -> write-back file not in its lake yet

	seedBuf *semaphore.Weighted // bytes write-throughs keep for seeding (seed.go)
	watch   watchers            // Watch streams (watch.go)
	attrs   attrsCache          // files' attrs (attrs.go)
	// uploaded are the journal versions this node's uploads came from
	// (writeback.go).
	uploaded uploadedAliasTable
}

// NewNode returns the data server of a node.
func NewNode(cfg NodeConfig) *Node {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.Members == nil {
		cfg.Members = func() []*nodepb.Member { return nil }
	}
	n := &Node{cfg: cfg, log: cfg.Logger, meta: newMetaCache(cfg.MetadataEntries), pending: map[string]map[string]*nodepb.Entry{},
		seedBuf: semaphore.NewWeighted(seedBufferBytes), attrs: newAttrsCache(), uploaded: newUploadedAliasTable()}
	n.bufs.New = func() any { b := make([]byte, chunkSize); return &b }
	return n
}

// Read streams a byte range of one file version.
func (n *Node) Read(req *nodepb.ReadRequest, stream nodepb.Node_ReadServer) error {
	ctx := stream.Context()
	f := req.GetFile()
	lake, rel, err := n.cfg.Lakes.Resolve(f.GetPath())
	if err != nil {
		return ToStatus(err)
	}
	if req.Offset < 0 || req.Length < 0 {
		return status.Errorf(codes.InvalidArgument, "read %s: negative offset or length", f.GetPath())
	}
	if req.ForRegion != "" && req.ForRegion != n.cfg.Region && n.cfg.Residency != nil {
		if err := n.cfg.Residency(f.GetPath(), req.ForRegion); err != nil {
			return ToStatus(err)
		}
	}
	if req.ForRegion != "" || len(req.Route) > 0 || req.Class != "" {
		ctx = WithFill(ctx, Fill{ForRegion: req.ForRegion, Route: req.Route, Class: req.Class})
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: f.GetVersion(), Size: f.GetSize()}
	off, end := req.Offset, req.Offset+req.Length
	if end > ref.Size {
		end = ref.Size
	}
	ctx, span := n.cfg.Tracer.Start(ctx, "node.read", trace.WithAttributes(
		attribute.String("lakemesh.path", f.GetPath()),
		attribute.Int64("lakemesh.offset", off),
		attribute.Int64("lakemesh.length", max(end-off, 0)),
		attribute.String("lakemesh.node", n.cfg.ID),
	))
	defer span.End()

	if req.FillOnly {
		fs, err := n.cfg.Cache.Fill(ctx, ref, off, end-off, req.Sequential)
		if err != nil {
			span.RecordError(err)
			return ToStatus(fmt.Errorf("fill %s: %w", f.GetPath(), err))
		}
		var sum fetchSummary
		sum.add(fs)
		meta := &nodepb.ReadChunk{Fetches: sum.proto(), Node: n.cfg.ID}
		if req.Raw {
			return stream.SendMsg(&RawChunk{Meta: meta})
		}
		return stream.Send(meta)
	}

	var bp *[]byte
	if !req.Raw {
		bp = n.bufs.Get().(*[]byte)
		defer n.bufs.Put(bp)
	}
	pool := rawChunks
	var fetches fetchSummary
	for {
		m := min(chunkSize, end-off)
		var buf []byte
		if bp != nil {
			buf = *bp
		}
		var rawBuf *[]byte
		if req.Raw && m > 0 {
			// The transport frees this buffer once it is on the wire,
			// so each chunk gets its own from the pool. Only its first
			// k bytes, which the read writes, are sent.
			rawBuf = pool.Get(int(m))
			buf = *rawBuf
		}
		k := 0
		if m > 0 {
			var fs []Fetch
			if req.CachedOnly {
				k, fs, err = n.cfg.Cache.ReadCached(ref, buf[:m], off)
			} else {
				k, fs, err = n.cfg.Cache.ReadAt(ctx, ref, buf[:m], off, req.Sequential)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				if rawBuf != nil {
					pool.Put(rawBuf)
				}
				span.RecordError(err)
				return ToStatus(fmt.Errorf("read %s: %w", f.GetPath(), err))
			}
			fetches.add(fs)
			off += int64(k)
		}
		last := off >= end || k == 0
		var meta *nodepb.ReadChunk
		if last {
			meta = &nodepb.ReadChunk{Fetches: fetches.proto(), Node: n.cfg.ID}
		}
		if req.Raw {
			chunk := &RawChunk{Meta: meta}
			if rawBuf != nil {
				*rawBuf = (*rawBuf)[:k]
				chunk.Data = mem.NewBuffer(rawBuf, pool)
			}
			err = stream.SendMsg(chunk)
		} else {
			if meta == nil {
				meta = &nodepb.ReadChunk{}
			}
			meta.Data = buf[:k]
			err = stream.Send(meta)
		}
		if err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// fetchSummary merges the per-call Fetch reports of one streamed read into
// one per page: the slowest tier that served any part of it, the bytes and
// the time spent.
type fetchSummary struct {
	pages []int64
	by    map[int64]*nodepb.PageFetch
}

var tierRank = map[Tier]int{TierMemory: 0, TierDisk: 1, TierWait: 2, TierLake: 3, TierRemote: 4}

func (s *fetchSummary) add(fs []Fetch) {
	if s.by == nil {
		s.by = map[int64]*nodepb.PageFetch{}
	}
	for _, f := range fs {
		pf, ok := s.by[f.Page]
		if !ok {
			pf = &nodepb.PageFetch{Page: f.Page, Tier: string(f.Tier)}
			s.by[f.Page] = pf
			s.pages = append(s.pages, f.Page)
		}
		if tierRank[f.Tier] > tierRank[Tier(pf.Tier)] {
			pf.Tier = string(f.Tier)
		}
		pf.Bytes += f.Bytes
		pf.Nanos += f.Duration.Nanoseconds()
		if o := f.Origin; o != nil {
			pf.Region, pf.SourceNode = o.Region, o.Node
			for _, l := range o.Lines {
				if !slices.Contains(pf.Lines, l) {
					pf.Lines = append(pf.Lines, l)
				}
			}
			pf.Crossed += o.Crossed
			pf.WaitNanos += o.Wait.Nanoseconds()
			pf.Cost += o.Cost
			pf.Ahead = pf.Ahead || o.Ahead
		}
	}
}

func (s *fetchSummary) proto() []*nodepb.PageFetch {
	out := make([]*nodepb.PageFetch, 0, len(s.pages))
	for _, p := range s.pages {
		out = append(out, s.by[p])
	}
	return out
}

// Prefetch queues whole-page fills (readahead).
func (n *Node) Prefetch(ctx context.Context, req *nodepb.PrefetchRequest) (*nodepb.PrefetchReply, error) {
	f := req.GetFile()
	lake, rel, err := n.cfg.Lakes.Resolve(f.GetPath())
	if err != nil {
		return nil, ToStatus(err)
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: f.GetVersion(), Size: f.GetSize()}
	// Pages are taken in order until the bound on background fills drops
	// one: the reply says how many were taken, so the client asks again
	// for the rest later instead of believing them on their way.
	accepted := n.cfg.Cache.PrefetchPages(ref, req.Pages)
	return &nodepb.PrefetchReply{Accepted: int32(accepted)}, nil
}

// Has reports whether the page store holds a whole range, filling nothing.
func (n *Node) Has(ctx context.Context, req *nodepb.HasRequest) (*nodepb.HasReply, error) {
	f := req.GetFile()
	lake, rel, err := n.cfg.Lakes.Resolve(f.GetPath())
	if err != nil {
		return nil, ToStatus(err)
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: f.GetVersion(), Size: f.GetSize()}
	return &nodepb.HasReply{Held: n.cfg.Cache.Holds(ref, req.Offset, req.Length)}, nil
}

// Stat answers from the metadata cache, asking the lake on a miss.
func (n *Node) Stat(ctx context.Context, req *nodepb.StatRequest) (*nodepb.StatReply, error) {
	return n.stat(ctx, req, false)
}

// stat is Stat. withAttrs asks a lake that keeps attrs for them with the
// same call when the stat misses (S3 answers both with one HEAD), and
// keeps them for StatAttrs, which would otherwise ask the lake again.
func (n *Node) stat(ctx context.Context, req *nodepb.StatRequest, withAttrs bool) (*nodepb.StatReply, error) {
	p := req.GetPath()
	lake, rel, err := n.cfg.Lakes.Resolve(p)
	if errors.Is(err, ErrNoMount) {
		// Not in a mount: a directory above mounts ("/", "/lake") is
		// still a directory of the namespace.
		if _, ok := n.virtualChildren(p); ok {
			return &nodepb.StatReply{Entry: &nodepb.Entry{Path: p, Dir: true}}, nil
		}
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	if n.cfg.Journal != nil {
		if e, ok := n.cfg.Journal.Pending(p); ok {
			return &nodepb.StatReply{Entry: n.journalEntry(e)}, nil
		}
	}
	if e := n.pendingEntry(p); e != nil && !journalOnly(ctx) {
		if e, ok := n.checkPending(ctx, e); ok {
			return &nodepb.StatReply{Entry: e}, nil
		}
	}
	fi, err := n.meta.statIn(ctx, p, lake.MetadataTTL, func(ctx context.Context) (ufs.FileInfo, error) {
		afs, ok := lake.FS.(ufs.AttrFS)
		if !withAttrs || !ok {
			return lake.FS.Stat(ctx, rel)
		}
		fi, attrs, err := afs.StatAttrs(ctx, rel)
		if err == nil && !fi.IsDir {
			n.attrs.put(p, fi.Version, attrs, lake.MetadataTTL)
		}
		return fi, err
	}, newDirLister(lake, p, rel, n.statPages))
	if errors.Is(err, ufs.ErrNotFound) && !journalOnly(ctx) {
		// A directory only pending files below it make yet.
		if n.pendingDirs(ctx, path.Dir(p), p)[p] {
			return &nodepb.StatReply{Entry: &nodepb.Entry{Path: p, Dir: true}}, nil
		}
	}
	if err != nil {
		return nil, ToStatus(fmt.Errorf("stat %s: %w", p, err))
	}
	return &nodepb.StatReply{Entry: n.uploaded.mark(entryProto(lake, fi))}, nil
}

// List answers one page of a directory listing from the metadata cache.
func (n *Node) List(ctx context.Context, req *nodepb.ListRequest) (*nodepb.ListReply, error) {
	p := strings.TrimSuffix(req.GetPath(), "/")
	lake, rel, err := n.cfg.Lakes.Resolve(cmp.Or(p, "/"))
	if errors.Is(err, ErrNoMount) {
		if children, ok := n.virtualChildren(p); ok {
			reply := &nodepb.ListReply{}
			for _, c := range children {
				reply.Entries = append(reply.Entries, &nodepb.Entry{Path: path.Join("/", p, c), Dir: true})
			}
			return reply, nil
		}
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	if wantsLakePage(ctx) {
		reply, err := n.listLakePage(ctx, lake, p, rel, req.GetToken(), limit)
		if err != nil {
			return nil, ToStatus(fmt.Errorf("list %s: %w", p, err))
		}
		return reply, nil
	}
	// Write-back files of the directory that its lake does not have yet
	// are all listed on the first page (in name order there) and left out
	// of the lake's pages, so each path is listed once. They are taken
	// before the lake's page: a file whose upload ends in between is then
	// in one or the other (taken after, it could be in neither: gone from
	// the pending files, and not in a page listed before its upload).
	pending := n.checkedPending(ctx, p)
	if n.cfg.Journal != nil {
		for _, e := range n.cfg.Journal.PendingUnder(p) {
			pending[e.Path] = n.journalEntry(e)
		}
	}
	// Directories that only pending files below them make (on S3): on
	// the first page too, unless the lake's listing has them.
	if req.GetToken() == "" {
		for d := range n.pendingDirs(ctx, p, "") {
			if pending[d] == nil {
				pending[d] = &nodepb.Entry{Path: d, Dir: true}
			}
		}
	}
	page, err := n.meta.list(ctx, p, req.GetToken(), limit, lake.MetadataTTL, func(ctx context.Context) (ufs.ListPage, error) {
		return lake.FS.List(ctx, rel, req.GetToken(), limit)
	})
	if errors.Is(err, ufs.ErrNotFound) && len(pending) > 0 {
		err, page = nil, ufs.ListPage{} // a directory only the journal has yet
	}
	if err != nil {
		return nil, ToStatus(fmt.Errorf("list %s: %w", p, err))
	}
	reply := &nodepb.ListReply{Next: page.Next, Entries: make([]*nodepb.Entry, 0, len(page.Entries)+len(pending))}
	for _, fi := range page.Entries {
		if e := entryProto(lake, fi); pending[e.Path] == nil {
			reply.Entries = append(reply.Entries, e)
		}
	}
	if req.GetToken() == "" && len(pending) > 0 {
		for _, e := range pending {
			reply.Entries = append(reply.Entries, e)
		}
		slices.SortFunc(reply.Entries, func(a, b *nodepb.Entry) int { return strings.Compare(a.Path, b.Path) })
	}
	return reply, nil
}

// virtualChildren lists the names under a path that is not inside any
// mount but leads to mounts ("/" and "/lake" for "/lake/s3-use1"). ok is
// false for paths inside a mount or leading nowhere.
func (n *Node) virtualChildren(p string) (children []string, ok bool) {
	p = strings.TrimSuffix(p, "/")
	seen := map[string]bool{}
	for _, lk := range n.cfg.Lakes.All() {
		if p == lk.Path || strings.HasPrefix(p, lk.Path+"/") {
			return nil, false
		}
		if strings.HasPrefix(lk.Path, p+"/") {
			rest := lk.Path[len(p)+1:]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i]
			}
			if !seen[rest] {
				seen[rest] = true
				children = append(children, rest)
			}
		}
	}
	sort.Strings(children)
	return children, children != nil
}

func entryProto(lake Lake, fi ufs.FileInfo) *nodepb.Entry {
	p := lake.Path
	if fi.Path != "" {
		p += "/" + fi.Path
	}
	return &nodepb.Entry{
		Path:          p,
		Size:          fi.Size,
		MtimeUnixNano: fi.ModTime.UnixNano(),
		Dir:           fi.IsDir,
		Version:       fi.Version,
	}
}

// writableLake resolves a path for a change, refusing read-only mounts.
func (n *Node) writableLake(p string) (Lake, string, error) {
	lake, rel, err := n.cfg.Lakes.Resolve(p)
	if err != nil {
		return Lake{}, "", err
	}
	if lake.ReadOnly {
		return Lake{}, "", fmt.Errorf("%s: %w", lake.Path, ErrReadOnly)
	}
	if rel == "" {
		return Lake{}, "", fmt.Errorf("path %q: %w: the mount point itself cannot be changed", p, ufs.ErrInvalidPath)
	}
	return lake, rel, nil
}

// Write streams a whole file into its lake, or into the journal first
// (see writeback.go).
func (n *Node) Write(stream nodepb.Node_WriteServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	p := first.GetPath()
	lake, rel, err := n.writableLake(p)
	if err != nil {
		return ToStatus(err)
	}
	attrs := ufs.Attrs(first.GetAttrs())
	if err := checkAttrs(lake, attrs); err != nil {
		return ToStatus(fmt.Errorf("write %s: %w", p, err))
	}
	r := newWriteStreamReader(stream, first)
	defer r.close()
	start := time.Now()
	if n.journals(lake, p) {
		if n.cfg.Journal == nil {
			return ToStatus(fmt.Errorf("write %s: %w", p, errNoJournal))
		}
		entry, err := n.writeJournaled(stream.Context(), lake, p, r, attrs, n.writeBack(p))
		if err != nil {
			return ToStatus(err)
		}
		return stream.SendAndClose(&nodepb.WriteReply{Entry: entry})
	}
	if n.cfg.Journal != nil {
		// A write-through replaces a pending write-back, after an upload
		// of it in flight, which would otherwise land after this write.
		if _, err := n.cfg.Journal.Forget(stream.Context(), p); err != nil {
			return ToStatus(fmt.Errorf("write %s: %w", p, err))
		}
	}
	fi, err := n.writeThrough(stream.Context(), lake, rel, r, attrs)
	n.meta.invalidate(p)
	if err != nil {
		return ToStatus(fmt.Errorf("write %s: %w", p, err))
	}
	n.attrs.put(p, fi.Version, attrs, lake.MetadataTTL)
	n.log.Info("file written", "path", p, "bytes", r.n, "version", fi.Version, "took", time.Since(start))
	return stream.SendAndClose(&nodepb.WriteReply{Entry: entryProto(lake, fi)})
}

// writeStreamReader reads the data of a Write stream as one io.Reader.
// On a raw call (RawCodecName) each message's bytes are received straight
// into the buffer given to Read, the journal's or the lake upload's, so
// they are copied once on the node and no message is allocated; on a
// protobuf call they are copied out of each decoded message.
type writeStreamReader struct {
	stream nodepb.Node_WriteServer
	raw    bool
	sink   writeSink // bytes received and not read yet
	n      int64
	done   bool
}

func newWriteStreamReader(stream nodepb.Node_WriteServer, first *nodepb.WriteChunk) *writeStreamReader {
	r := &writeStreamReader{stream: stream, raw: rawCall(stream.Context())}
	r.sink.hold(first.GetData())
	return r
}

func (w *writeStreamReader) Read(p []byte) (int, error) {
	for len(p) > 0 {
		if k := w.sink.drain(p); k > 0 {
			w.n += int64(k)
			return k, nil
		}
		if w.done {
			return 0, io.EOF
		}
		var err error
		if w.raw {
			w.sink.dst = p
			err = w.stream.RecvMsg(&w.sink)
			w.sink.dst = nil
		} else {
			var msg *nodepb.WriteChunk
			if msg, err = w.stream.Recv(); err == nil {
				w.sink.hold(msg.GetData())
			}
		}
		if errors.Is(err, io.EOF) {
			w.done = true
			continue
		}
		if err != nil {
			return 0, err
		}
		if k := w.sink.n; k > 0 {
			w.sink.n = 0
			w.n += int64(k)
			return k, nil
		}
	}
	return 0, nil
}

// close gives back the transport's buffers the reader still holds (a
// write that failed before reading everything).
func (w *writeStreamReader) close() { w.sink.free() }

// Delete removes a file or an empty directory from its lake.
func (n *Node) Delete(ctx context.Context, req *nodepb.DeleteRequest) (*nodepb.DeleteReply, error) {
	lake, rel, err := n.writableLake(req.GetPath())
	if err != nil {
		return nil, ToStatus(err)
	}
	pending, err := n.forgetPending(ctx, req.GetPath())
	if err != nil {
		return nil, ToStatus(fmt.Errorf("delete %s: %w", req.GetPath(), err))
	}
	err = lake.FS.Delete(ctx, rel)
	n.meta.invalidate(req.GetPath())
	n.attrs.drop(req.GetPath())
	if pending && errors.Is(err, ufs.ErrNotFound) {
		err = nil // it was only in the journal
	}
	if err != nil {
		return nil, ToStatus(fmt.Errorf("delete %s: %w", req.GetPath(), err))
	}
	return &nodepb.DeleteReply{}, nil
}

// Mkdir creates a directory (and its parents) in a lake.
func (n *Node) Mkdir(ctx context.Context, req *nodepb.MkdirRequest) (*nodepb.MkdirReply, error) {
	lake, rel, err := n.writableLake(req.GetPath())
	if err != nil {
		return nil, ToStatus(err)
	}
	err = lake.FS.Mkdir(ctx, rel)
	n.meta.invalidate(req.GetPath())
	if err != nil {
		return nil, ToStatus(fmt.Errorf("mkdir %s: %w", req.GetPath(), err))
	}
	return &nodepb.MkdirReply{}, nil
}

// Rename moves a file inside one lake.
func (n *Node) Rename(ctx context.Context, req *nodepb.RenameRequest) (*nodepb.RenameReply, error) {
	from, relFrom, err := n.writableLake(req.GetFrom())
	if err != nil {
		return nil, ToStatus(err)
	}
	to, relTo, err := n.writableLake(req.GetTo())
	if err != nil {
		return nil, ToStatus(err)
	}
	if from.Path != to.Path {
		return nil, ToStatus(fmt.Errorf("rename %s to %s: %w: the paths are in different mounts", req.GetFrom(), req.GetTo(), ufs.ErrInvalidPath))
	}
	if n.cfg.Journal != nil {
		// A file still in the journal is uploaded first: the rename is
		// the lake's. So is one it replaces (if this node has it; the
		// router asks the destination's node first), whose upload would
		// otherwise land over the renamed file.
		for _, p := range []string{req.GetFrom(), req.GetTo()} {
			if err := n.cfg.Journal.WaitUploaded(ctx, p); err != nil {
				return nil, ToStatus(fmt.Errorf("rename %s to %s: waiting for the upload of %s: %w", req.GetFrom(), req.GetTo(), p, err))
			}
		}
	}
	err = from.FS.Rename(ctx, relFrom, relTo)
	n.meta.invalidate(req.GetFrom())
	n.meta.invalidate(req.GetTo())
	n.attrs.drop(req.GetFrom())
	n.attrs.drop(req.GetTo())
	if err != nil {
		return nil, ToStatus(fmt.Errorf("rename %s to %s: %w", req.GetFrom(), req.GetTo(), err))
	}
	return &nodepb.RenameReply{}, nil
}

// WaitUploaded returns once the journal has no write of the path waiting
// for its lake.
func (n *Node) WaitUploaded(ctx context.Context, req *nodepb.WaitUploadedRequest) (*nodepb.WaitUploadedReply, error) {
	if n.cfg.Journal != nil {
		if err := n.cfg.Journal.WaitUploaded(ctx, req.GetPath()); err != nil {
			return nil, ToStatus(fmt.Errorf("%s: waiting for its upload: %w", req.GetPath(), err))
		}
	}
	return &nodepb.WaitUploadedReply{}, nil
}

// Invalidate drops cached metadata at and below a path.
func (n *Node) Invalidate(ctx context.Context, req *nodepb.InvalidateRequest) (*nodepb.InvalidateReply, error) {
	p := strings.TrimSuffix(req.GetPath(), "/")
	if err := n.mountedOrAbove(p); err != nil {
		// lakemesh sync of a mistyped mount is said so, not answered
		// "0 entries dropped".
		return nil, ToStatus(err)
	}
	n.tellWatchers(req)
	if req.GetSelfOnly() {
		dropped := n.meta.invalidateSelf(p)
		n.log.Debug("metadata of a directory invalidated", "path", req.GetPath(), "entries", dropped)
		return &nodepb.InvalidateReply{Dropped: int32(dropped)}, nil
	}
	dropped := n.meta.invalidate(p)
	n.attrs.drop(p)
	n.log.Info("metadata invalidated", "path", req.GetPath(), "entries", dropped)
	reply := &nodepb.InvalidateReply{Dropped: int32(dropped)}
	if req.GetMesh() && n.cfg.Events != nil {
		if err := n.cfg.Events.PublishInvalidate(p); err != nil {
			return nil, ToStatus(err)
		}
		reply.MeshPublished = true
	}
	return reply, nil
}

// mountedOrAbove returns an error wrapping ErrNoMount for a path that is
// neither in a mount nor a directory above the mounts ("/", "/lake").
func (n *Node) mountedOrAbove(p string) error {
	if n.cfg.Lakes == nil {
		return nil // a node of tests that serve no lakes
	}
	_, _, err := n.cfg.Lakes.Resolve(cmp.Or(p, "/"))
	if !errors.Is(err, ErrNoMount) {
		return nil
	}
	if _, above := n.virtualChildren(p); above {
		return nil
	}
	return err
}

// InvalidateLocal drops cached metadata at and below a path on this node;
// it is what a mesh invalidation event does.
func (n *Node) InvalidateLocal(path string) {
	dropped := n.meta.invalidate(strings.TrimSuffix(path, "/"))
	n.attrs.drop(path)
	n.log.Debug("metadata invalidated by a mesh event", "path", path, "entries", dropped)
	n.watch.publish(&nodepb.Change{Below: path})
}

// tellWatchers passes an invalidation on to the node's watchers: the
// paths a client changed, a directory whose own listing changed, or,
// for an invalidation that names no change (lakemesh sync), everything
// below its path.
func (n *Node) tellWatchers(req *nodepb.InvalidateRequest) {
	c := &nodepb.Change{Paths: req.GetChanged(), Origin: req.GetOrigin()}
	switch {
	case req.GetSelfOnly():
		c.Dirs = []string{req.GetPath()}
	case len(c.Paths) == 0:
		c.Below = req.GetPath()
	}
	n.watch.publish(c)
}

// Info describes the node for clients and `lakemesh status`.
func (n *Node) Info(ctx context.Context, req *nodepb.InfoRequest) (*nodepb.InfoReply, error) {
	st := n.cfg.Store.Stats()
	var lines []*nodepb.LineUse
	if n.cfg.LineUse != nil {
		lines = n.cfg.LineUse()
	}
	var others []*nodepb.Member
	if n.cfg.OtherMembers != nil {
		others = n.cfg.OtherMembers()
	}
	return &nodepb.InfoReply{
		Lines:          lines,
		OtherMembers:   others,
		NodeId:         n.cfg.ID,
		Region:         n.cfg.Region,
		Addr:           n.cfg.Addr,
		Members:        n.cfg.Members(),
		TopologyYaml:   string(n.cfg.Topology),
		TopologySource: n.cfg.TopologySource,
		PageSize:       n.cfg.Store.PageSize(),
		Cache:          statsProto(st, n.cfg.Lakes.LakeBytes()),
	}, nil
}

func statsProto(st StoreStats, lakeBytes int64) *nodepb.CacheStats {
	return &nodepb.CacheStats{
		Pages:         int64(st.Pages),
		MemoryBytes:   st.MemoryBytes,
		MemoryLimit:   st.MemoryLimit,
		DiskBytes:     st.DiskBytes,
		DiskLimit:     st.DiskLimit,
		HitsMemory:    st.MemoryHits,
		HitsDisk:      st.DiskHits,
		Misses:        st.Misses,
		CorruptBlocks: st.CorruptBlocks,
		EvictedPages:  st.MemoryEvictions + st.DiskEvictions,
		LakeBytes:     lakeBytes,
	}
}
