package cachenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
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
// pages to this node, and the directory's owner is told (Announce) so
// listings show it.
//
// Once the lake has it, the file's pages are seeded under the lake's new
// version on their owners in this region, from the journal's data file
// before the entry is retired (a write-through to a lake homed here seeds
// from the bytes it kept on their way): the region wrote those bytes and
// does not fetch them again. See seed.go.

// writeJournaled writes a file through the journal and, for write-through,
// waits for its upload.
func (n *Node) writeJournaled(ctx context.Context, lake Lake, p string, r *writeStreamReader, back bool) (*nodepb.Entry, error) {
	e, err := n.cfg.Journal.Append(p, r)
	if err != nil {
		return nil, err
	}
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
		n.cfg.Journal.Failed(e)
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
	if n.cfg.Upload != nil && lake.Region != "" && lake.Region != n.cfg.Region {
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
	if err := n.cfg.Journal.Done(e); err != nil {
		n.log.Warn("write-back journal: could not retire an uploaded file; it will be uploaded again", "path", e.Path, "err", err)
	}
	n.meta.invalidate(e.Path)
	n.announce(ctx, e, true)
	n.log.Info("file uploaded to its lake", "path", e.Path, "bytes", e.Size, "class", class, "version", entry.GetVersion(), "took", time.Since(start))
	return entry, nil
}

// writeThrough writes a file straight to a lake homed in this region and
// seeds the new version's pages in the region from the bytes it kept on
// the way.
func (n *Node) writeThrough(ctx context.Context, lake Lake, rel string, r io.Reader) (ufs.FileInfo, error) {
	if n.cfg.Store == nil {
		return lake.FS.Create(ctx, rel, r)
	}
	tee := n.newSeedTee(r)
	defer tee.release()
	fi, err := lake.FS.Create(ctx, rel, tee)
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
	fi, err := lake.FS.Create(ctx, rel, f)
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
	for _, e := range n.cfg.Journal.All() {
		n.announce(ctx, e, false) // after a restart, listings learn them again
	}
	backoff := time.Second
	for {
		e, err := n.cfg.Journal.Next(ctx)
		if err != nil {
			return
		}
		if _, err := n.upload(ctx, e, "write-back"); err != nil {
			n.cfg.Journal.Failed(e)
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

// announce tells the owner of e's directory listing that e is pending
// (or, done, that it is not any more).
func (n *Node) announce(ctx context.Context, e JournalEntry, done bool) {
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
	} else {
		req.Add = []*nodepb.Entry{n.journalEntry(e)}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := n.cfg.Announce(actx, req); err != nil {
		n.log.Warn("could not tell the directory's node about a write-back file; it lists it once uploaded", "path", e.Path, "err", err)
	}
}

// Pending records write-back files another node of the region holds, so
// this node's listings of their directory show them.
func (n *Node) Pending(ctx context.Context, req *nodepb.PendingRequest) (*nodepb.PendingReply, error) {
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
	n.meta.invalidate(dir)
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

// forgetPending drops a deleted file from the journal and the overlay.
func (n *Node) forgetPending(p string) bool {
	found := n.cfg.Journal != nil && n.cfg.Journal.Forget(p)
	n.pendMu.Lock()
	if m := n.pending[path.Dir(p)]; m != nil {
		if _, ok := m[p]; ok {
			found = true
			delete(m, p)
		}
	}
	n.pendMu.Unlock()
	return found
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
	fi, err := n.writeThrough(ctx, lake, rel, r)
	r.Close()
	n.meta.invalidate(f.GetPath())
	n.meta.invalidate(path.Dir(f.GetPath()))
	if err != nil {
		return nil, ToStatus(fmt.Errorf("upload %s from region %s: %w", f.GetPath(), req.GetFromRegion(), err))
	}
	n.log.Info("file uploaded from another region", "path", f.GetPath(), "from", req.GetFromRegion(), "bytes", fi.Size, "class", req.GetClass())
	return &nodepb.WriteReply{Entry: entryProto(lake, fi)}, nil
}

// ErrNoHomeNode is what NodeConfig.Upload returns when the lake's home
// region has no node up: the node then writes the lake itself.
var ErrNoHomeNode = errors.New("the lake's home region has no node up")

// errNoJournal is returned for writes that need a journal on a node
// started without one.
var errNoJournal = errors.New("this node has no write-back journal (lakemesh node --cache-dir holds it)")
