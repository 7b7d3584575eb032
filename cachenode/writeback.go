package cachenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/metadata"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/ufs"
)

// Writes. A write to a lake homed in this region in write-through mode
// goes straight to the lake. Every other write goes to the node's journal
// first (synced to disk), then to its lake: in write-back mode the write
// is acknowledged as soon as the journal has it and the upload runs in the
// background under the write-back class; in write-through mode the
// acknowledgement waits for the upload, which runs as interactive. An
// upload to a lake homed in another region is pulled by a node of that
// region (NodeConfig.Upload) so it crosses the line within that line's
// budget; a node of the lake's own region writes it itself.
//
// Until its upload, a journaled file is served by the node that holds it:
// Stat (this node owns the path's metadata, since writes go to that owner)
// answers the journal's entry, whose version "wb:<node>:<id>" routes its
// pages to this node. Every other node of the region is told (Announce,
// and again when members join, since a new one never heard of it), so
// the directory's owner lists it, and a stat that lands elsewhere (the
// path's next node while this one is down, or a node that joined and now
// owns the path) answers the journal's version too, never the lake's
// older one. A node that answers one of these entries while the journal's
// node is up asks that node first (checkPending): an entry whose upload
// it missed hearing about is dropped there. While the journal's node is
// down, its entries are answered as they are, so readers of those files
// get an error naming the node instead of the previous version.
//
// Once the lake has it, the file's pages are seeded under the lake's new
// version on their owners in this region, from the journal's data file
// before the entry is retired (a write-through to a lake homed here seeds
// from the bytes it kept on their way): the region wrote those bytes and
// does not fetch them again. See seed.go.

// writeBack says whether p is written back (acknowledged once in the
// journal).
func (n *Node) writeBack(p string) bool { return n.cfg.WriteBack != nil && n.cfg.WriteBack(p) }

// homedElsewhere says whether lake is homed in another region, whose nodes
// pull what is written to it here.
func (n *Node) homedElsewhere(lake Lake) bool {
	return lake.Region != "" && lake.Region != n.cfg.Region
}

// journals says whether a write of p in lake goes through the journal:
// write-back, or a lake homed in another region.
func (n *Node) journals(lake Lake, p string) bool { return n.writeBack(p) || n.homedElsewhere(lake) }

// writeJournaled writes a file through the journal and, for write-through,
// waits for its upload.
func (n *Node) writeJournaled(ctx context.Context, lake Lake, p string, r *writeStreamReader, attrs ufs.Attrs, back bool) (*nodepb.Entry, error) {
	e, err := n.cfg.Journal.AppendAttrs(p, r, attrs)
	if err != nil {
		return nil, err
	}
	return n.journaled(ctx, e, back)
}

// journaled tells the region of a new journal entry and, for
// write-through, uploads it now.
func (n *Node) journaled(ctx context.Context, e JournalEntry, back bool) (*nodepb.Entry, error) {
	p := e.Path
	n.meta.invalidate(p)
	n.announce(ctx, e, false)
	if back {
		n.log.Info("file written to the write-back journal", "path", p, "bytes", e.Size, "version", e.Version())
		return n.journalEntry(e), nil
	}
	// Write-through: this call uploads it now, ahead of the background.
	entry, err := n.uploadNow(ctx, e, "interactive")
	if err != nil {
		return nil, fmt.Errorf("write %s: the region's journal has it, but its lake does not yet (it will be retried in the background): %w", p, err)
	}
	return entry, nil
}

func (n *Node) journalEntry(e JournalEntry) *nodepb.Entry {
	return &nodepb.Entry{Path: e.Path, Size: e.Size, MtimeUnixNano: e.ModTime.UnixNano(), Version: e.Version()}
}

// uploadNow takes e from the uploader's queue if it can and uploads it.
func (n *Node) uploadNow(ctx context.Context, e JournalEntry, class string) (*nodepb.Entry, error) {
	if !n.cfg.Journal.claim(e.ID) {
		// The background uploader has it already: wait for it.
		if err := n.cfg.Journal.WaitUploaded(ctx, e.Path); err != nil {
			return nil, err
		}
		return n.statEntry(ctx, e.Path)
	}
	entry, err := n.upload(ctx, e, class)
	if err != nil {
		if n.cfg.Journal.Failed(e) {
			return nil, fmt.Errorf("%s was deleted or written again while it was uploaded: %w", e.Path, err)
		}
		return nil, err
	}
	return entry, nil
}

// upload sends one journal entry to its lake and retires it.
func (n *Node) upload(ctx context.Context, e JournalEntry, class string) (*nodepb.Entry, error) {
	lake, rel, err := n.writableLake(e.Path)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var entry *nodepb.Entry
	local := true
	if n.cfg.Upload != nil && n.homedElsewhere(lake) {
		entry, err = n.cfg.Upload(ctx, e, class)
		local = errors.Is(err, ErrNoHomeNode)
		if local {
			n.log.Warn("the lake's home region has no node up; writing the lake from this node", "path", e.Path, "region", lake.Region)
		}
	}
	if local {
		entry, err = n.uploadLocal(ctx, lake, rel, e)
	}
	if err != nil {
		return nil, fmt.Errorf("upload %s to its lake: %w", e.Path, err)
	}
	// The region has the new version's bytes: seed its pages while the
	// journal still holds them (Done lets the data file go).
	n.seedJournaled(ctx, lake, rel, e, entry)
	n.attrs.put(e.Path, entry.GetVersion(), e.Attrs, lake.MetadataTTL)
	n.uploaded.put(e.Path, e.Version(), entry.GetVersion())
	// The lake's entry cached here goes before the journal's: a stat that
	// no longer finds the journal's must not find the older lake entry.
	n.invalidateUp(e.Path)
	if err := n.cfg.Journal.Done(e); err != nil {
		n.log.Warn("write-back journal: could not retire an uploaded file; it will be uploaded again", "path", e.Path, "err", err)
	}
	n.announceUploaded(ctx, e, entry.GetVersion())
	n.log.Info("file uploaded to its lake", "path", e.Path, "bytes", e.Size, "class", class, "version", entry.GetVersion(), "took", time.Since(start))
	return entry, nil
}

// writeThrough writes a file straight to a lake homed in this region and
// seeds the new version's pages in the region from the bytes it kept on
// the way.
func (n *Node) writeThrough(ctx context.Context, lake Lake, rel string, r io.Reader, attrs ufs.Attrs) (ufs.FileInfo, error) {
	if n.cfg.Store == nil {
		return create(ctx, lake, rel, r, attrs)
	}
	tee := n.newSeedTee(r)
	defer tee.release()
	fi, err := create(ctx, lake, rel, tee, attrs)
	if err != nil {
		return fi, err
	}
	if fi.Size != tee.total {
		n.log.Warn("file not seeded in the region: the lake's size after the write is not what was written",
			"path", lake.Path+"/"+rel, "size", fi.Size, "written", tee.total)
		return fi, nil
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: fi.Version, Size: fi.Size}
	n.seed(ctx, ref, tee, tee.kept())
	return fi, nil
}

// uploadLocal writes a journal entry to its lake from this node.
func (n *Node) uploadLocal(ctx context.Context, lake Lake, rel string, e JournalEntry) (*nodepb.Entry, error) {
	f, err := n.cfg.Journal.OpenData(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := create(ctx, lake, rel, f, e.Attrs)
	if err != nil {
		return nil, err
	}
	return entryProto(lake, fi), nil
}

func (n *Node) statEntry(ctx context.Context, p string) (*nodepb.Entry, error) {
	r, err := n.Stat(ctx, &nodepb.StatRequest{Path: p})
	if err != nil {
		return nil, FromStatus(err)
	}
	return r.GetEntry(), nil
}

// RunUploads uploads the journal's entries in the background, oldest
// first, until ctx ends. A failed upload is retried with backoff (up to a
// minute); nothing acknowledged is dropped.
func (n *Node) RunUploads(ctx context.Context) {
	if n.cfg.Journal == nil {
		return
	}
	n.AnnouncePending(ctx) // after a restart, the region learns them again
	backoff := time.Second
	for {
		e, err := n.cfg.Journal.Next(ctx)
		if err != nil {
			return
		}
		if _, err := n.upload(ctx, e, "write-back"); err != nil {
			if n.cfg.Journal.Failed(e) {
				n.log.Info("write-back upload failed, and the file was deleted or written again meanwhile: not retried", "path", e.Path, "err", err)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("write-back upload failed; retrying", "path", e.Path, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// announceUploaded tells the region that e is in its lake, unless a
// newer write of its path is still in the journal: then it tells that
// one again, for a removal of the path would hide the newer write too,
// and the region's listings would show the lake's older file meanwhile.
func (n *Node) announceUploaded(ctx context.Context, e JournalEntry, lakeVersion string) {
	n.announceMu.Lock()
	defer n.announceMu.Unlock()
	if newer, ok := n.cfg.Journal.Pending(e.Path); ok {
		n.announceLocked(ctx, newer, false, "")
		return
	}
	n.announceLocked(ctx, e, true, lakeVersion)
}

// announce tells the region's nodes that e is pending (or, done, that it
// is not any more).
func (n *Node) announce(ctx context.Context, e JournalEntry, done bool) {
	n.announceMu.Lock()
	defer n.announceMu.Unlock()
	n.announceLocked(ctx, e, done, "")
}

// announceLocked is announce; n.announceMu is held. lakeVersion, with
// done, is the version the lake gave e, which the region's nodes answer
// e's version as (uploaded_from) for a while.
func (n *Node) announceLocked(ctx context.Context, e JournalEntry, done bool, lakeVersion string) {
	dir := path.Dir(e.Path)
	if done {
		n.overlay(dir, nil, []string{e.Path})
	} else {
		n.overlay(dir, []*nodepb.Entry{n.journalEntry(e)}, nil)
	}
	if n.cfg.Announce == nil {
		return
	}
	req := &nodepb.PendingRequest{Dir: dir}
	if done {
		req.Remove = []string{e.Path}
		if lakeVersion != "" {
			req.Uploaded = []*nodepb.Entry{{Path: e.Path, Version: lakeVersion, UploadedFrom: e.Version()}}
		}
	} else {
		req.Add = []*nodepb.Entry{n.journalEntry(e)}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := n.cfg.Announce(actx, req); err != nil {
		n.log.Warn("could not tell every node of the region about a write-back file", "path", e.Path, "done", done, "err", err)
	}
}

// AnnouncePending tells the region's other nodes about every file in this
// node's journal: after a restart, and when nodes join.
func (n *Node) AnnouncePending(ctx context.Context) {
	if n.cfg.Journal == nil {
		return
	}
	for _, e := range n.cfg.Journal.All() {
		n.announce(ctx, e, false)
	}
}

// checkPending decides whether a stat may answer e, a pending entry
// another node announced. While e's journal node is a member, that node
// says: an entry it no longer has (its upload's news never came here) is
// dropped and ok is false, so the stat asks the lake. While it is not
// (down), e is answered as it is. Without a way to reach it, e is trusted.
func (n *Node) checkPending(ctx context.Context, e *nodepb.Entry) (*nodepb.Entry, bool) {
	holder, ok := JournalNode(e.GetVersion())
	if !ok || holder == n.cfg.ID || n.cfg.Members == nil || n.cfg.PeerConn == nil {
		return e, true
	}
	var addr string
	for _, m := range n.cfg.Members() {
		if m.GetId() == holder {
			addr = m.GetAddr()
		}
	}
	if addr == "" {
		return e, true // its node is down: its readers get an error, not the older file
	}
	cc, err := n.cfg.PeerConn(addr)
	if err != nil {
		return e, true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The holder answers from its journal and its lake, not from entries
	// others announced to it: two nodes never ask each other in turn.
	ctx = metadata.AppendToOutgoingContext(ctx, journalOnlyHeader, "1")
	reply, err := nodepb.NewNodeClient(cc).Stat(ctx, &nodepb.StatRequest{Path: e.GetPath()})
	switch {
	case err != nil && !errors.Is(FromStatus(err), ufs.ErrNotFound):
		return e, true // cannot tell: the announced entry stands
	case err == nil && reply.GetEntry().GetVersion() == e.GetVersion():
		return e, true
	case err == nil && journalHolder(reply.GetEntry().GetVersion()) == holder:
		// Written again there since: its newer entry.
		n.overlay(path.Dir(e.GetPath()), []*nodepb.Entry{reply.GetEntry()}, nil)
		return reply.GetEntry(), true
	}
	// Uploaded (or deleted) since: the news never came here.
	n.overlay(path.Dir(e.GetPath()), nil, []string{e.GetPath()})
	return nil, false
}

// checkedPending returns the pending entries of dir known to this node,
// each one another node announced checked as a stat checks it
// (checkPending, at most 8 at once): a listing does not show an entry
// whose upload this node never heard of.
func (n *Node) checkedPending(ctx context.Context, dir string) map[string]*nodepb.Entry {
	pending := n.pendingIn(dir)
	if len(pending) == 0 {
		return pending
	}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(8)
	for _, e := range slices.Collect(maps.Values(pending)) {
		g.Go(func() error {
			checked, ok := n.checkPending(ctx, e)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				pending[e.GetPath()] = checked
			} else {
				delete(pending, e.GetPath())
			}
			return nil
		})
	}
	g.Wait()
	return pending
}

// pendingDirs returns the directories directly under dir that exist only
// because write-back files below them are not in their lake yet (S3 has
// no directory but what is below it): a listing of dir shows them, and a
// stat of one answers a directory. only, if set, is the one directory
// asked about. Announced files count once their journal's node confirms
// them (checkPending).
func (n *Node) pendingDirs(ctx context.Context, dir, only string) map[string]bool {
	under := map[string][]*nodepb.Entry{} // child directory -> pending files below it
	add := func(p string, e *nodepb.Entry) {
		rest := p[len(dir)+1:]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			if c := dir + "/" + rest[:i]; only == "" || c == only {
				under[c] = append(under[c], e)
			}
		}
	}
	if n.cfg.Journal != nil {
		for _, e := range n.cfg.Journal.PendingBelow(dir) {
			add(e.Path, nil) // this node's own: no need to ask
		}
	}
	n.pendMu.Lock()
	for d, m := range n.pending {
		if strings.HasPrefix(d, dir+"/") {
			for p, e := range m {
				add(p, e)
			}
		}
	}
	n.pendMu.Unlock()
	dirs := map[string]bool{}
	for c, entries := range under {
		for _, e := range entries {
			if e == nil {
				dirs[c] = true
				break
			}
			if _, ok := n.checkPending(ctx, e); ok {
				dirs[c] = true
				break
			}
		}
	}
	return dirs
}

// journalOnlyHeader, on a Stat, asks the node not to answer from pending
// entries other nodes announced (checkPending's question to a holder).
const journalOnlyHeader = "lakemesh-journal-only"

// journalHolder is the node of a journal version, or "".
func journalHolder(version string) string {
	holder, _ := JournalNode(version)
	return holder
}

// journalOnly reports whether a Stat came from checkPending.
func journalOnly(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(journalOnlyHeader)) > 0
}

// Pending records write-back files another node of the region holds, so
// this node's listings of their directory show them and its stats of
// them answer the journal's version (see checkPending).
func (n *Node) Pending(ctx context.Context, req *nodepb.PendingRequest) (*nodepb.PendingReply, error) {
	for _, u := range req.GetUploaded() {
		n.uploaded.put(u.GetPath(), u.GetUploadedFrom(), u.GetVersion())
	}
	n.overlay(req.GetDir(), req.GetAdd(), req.GetRemove())
	return &nodepb.PendingReply{}, nil
}

// overlay adds and removes pending entries of dir.
func (n *Node) overlay(dir string, add []*nodepb.Entry, remove []string) {
	n.pendMu.Lock()
	defer n.pendMu.Unlock()
	m := n.pending[dir]
	if m == nil {
		m = map[string]*nodepb.Entry{}
		n.pending[dir] = m
	}
	for _, e := range add {
		m[e.GetPath()] = e
	}
	for _, p := range remove {
		delete(m, p)
	}
	if len(m) == 0 {
		delete(n.pending, dir)
	}
	n.invalidateUp(dir)
}

// invalidateUp drops what this node caches at and below p and the own
// entries of every directory above it up to p's mount: a file that comes
// or goes may make or unmake directories there (S3 has none but what is
// below them), and their listings, negative ones too, must show it.
func (n *Node) invalidateUp(p string) {
	n.meta.invalidate(p)
	if lake, _, err := n.cfg.Lakes.Resolve(p); err == nil {
		for _, a := range federation.DirsAbove(p, lake.Path) {
			n.meta.invalidateSelf(a)
		}
	}
}

// pendingEntry returns the pending entry of path p known to this node, or
// nil.
func (n *Node) pendingEntry(p string) *nodepb.Entry {
	n.pendMu.Lock()
	defer n.pendMu.Unlock()
	return n.pending[path.Dir(p)][p]
}

// pendingIn returns the pending entries of dir known to this node.
func (n *Node) pendingIn(dir string) map[string]*nodepb.Entry {
	n.pendMu.Lock()
	defer n.pendMu.Unlock()
	out := make(map[string]*nodepb.Entry, len(n.pending[dir]))
	for p, e := range n.pending[dir] {
		out[p] = e
	}
	return out
}

// forgetPending drops a deleted file from the journal and the overlay,
// once an upload of it in flight has ended.
func (n *Node) forgetPending(ctx context.Context, p string) (bool, error) {
	found := false
	if n.cfg.Journal != nil {
		var err error
		if found, err = n.cfg.Journal.Forget(ctx, p); err != nil {
			return found, err
		}
	}
	n.pendMu.Lock()
	if m := n.pending[path.Dir(p)]; m != nil {
		if _, ok := m[p]; ok {
			found = true
			delete(m, p)
		}
	}
	n.pendMu.Unlock()
	return found, nil
}

// Upload pulls a file another region's node journaled into this region
// and writes it to its lake (this region is the lake's home).
func (n *Node) Upload(ctx context.Context, req *nodepb.UploadRequest) (*nodepb.WriteReply, error) {
	f := req.GetFile()
	lake, rel, err := n.writableLake(f.GetPath())
	if err != nil {
		return nil, ToStatus(err)
	}
	if n.cfg.Pull == nil {
		return nil, ToStatus(fmt.Errorf("upload %s: this node is not part of a federated mesh", f.GetPath()))
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: f.GetVersion(), Size: f.GetSize()}
	r := n.cfg.Pull(ctx, req.GetFromRegion(), req.GetFromNode(), ref, req.GetClass())
	// As a write-through here does: the new version's pages are seeded
	// in this region from the bytes that pass, so its readers do not
	// read the file back from the lake.
	fi, err := n.writeThrough(ctx, lake, rel, r, req.GetAttrs())
	r.Close()
	n.meta.invalidate(f.GetPath())
	n.meta.invalidate(path.Dir(f.GetPath()))
	if err != nil {
		return nil, ToStatus(fmt.Errorf("upload %s from region %s: %w", f.GetPath(), req.GetFromRegion(), err))
	}
	n.attrs.put(f.GetPath(), fi.Version, req.GetAttrs(), lake.MetadataTTL)
	n.log.Info("file uploaded from another region", "path", f.GetPath(), "from", req.GetFromRegion(), "bytes", fi.Size, "class", req.GetClass())
	return &nodepb.WriteReply{Entry: entryProto(lake, fi)}, nil
}

// ErrNoHomeNode is what NodeConfig.Upload returns when the lake's home
// region has no node up: the node then writes the lake itself.
var ErrNoHomeNode = errors.New("the lake's home region has no node up")

// errNoJournal is returned for writes that need a journal on a node
// started without one.
var errNoJournal = errors.New("this node has no write-back journal (lakemesh node --cache-dir holds it)")

// uploadedAliasTTL is how long a node remembers which journal version a
// lake version was uploaded from, and uploadedAliases how many it keeps.
const (
	uploadedAliasTTL = time.Hour
	uploadedAliases  = 1 << 16
)

// uploadedAliasTable remembers, for the files this node uploaded, the
// journal version each lake version came from: the same bytes under the
// ETag clients saw until the upload (Entry.uploaded_from), so a
// conditional request with it (If-Match, If-None-Match) is not refused
// because the upload landed in between.
type uploadedAliasTable struct {
	expiringMap[uploadedAlias] // path ->
}

type uploadedAlias struct {
	journal, lake string
}

func newUploadedAliasTable() uploadedAliasTable {
	return uploadedAliasTable{expiringMap[uploadedAlias]{limit: uploadedAliases}}
}

func (t *uploadedAliasTable) put(p, journal, lake string) {
	if lake != "" {
		t.expiringMap.put(p, uploadedAlias{journal: journal, lake: lake}, uploadedAliasTTL)
	}
}

// mark sets e's uploaded_from when this node uploaded its version from
// its journal; it returns e.
func (t *uploadedAliasTable) mark(e *nodepb.Entry) *nodepb.Entry {
	if e.GetDir() {
		return e
	}
	if a, ok := t.get(e.GetPath()); ok && a.lake == e.GetVersion() {
		e.UploadedFrom = a.journal
	}
	return e
}
