package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/region"
)

// writeChunk is the payload of one streamed write message.
const writeChunk = 1 << 20

// Put writes a whole file from r (write-through: it returns once the lake
// has the file). Readers see the old content or the new, never a mix.
//
// A Put is sent to one node and is not retried on another if that node
// fails mid-stream, since r has been partly consumed; the caller retries.
func (c *Client) Put(ctx context.Context, p string, r io.Reader) (Entry, error) {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	started := false
	err = c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, _ region.Member) error {
		if started {
			return fmt.Errorf("put %s: the node failed mid-write; nothing was acknowledged, retry the write", p)
		}
		// Cancelling the stream, never closing it, is how a write is
		// abandoned: the node commits only on a clean end of the stream.
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := nc.Write(sctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&nodepb.WriteChunk{Path: p}); err != nil {
			_, err = stream.CloseAndRecv()
			return err
		}
		started = true
		buf := make([]byte, writeChunk)
		for {
			n, rerr := fill(r, buf)
			if n > 0 {
				if err := stream.Send(&nodepb.WriteChunk{Data: buf[:n]}); err != nil {
					_, err = stream.CloseAndRecv()
					return err
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				cancel()
				return fmt.Errorf("put %s: read input: %w; nothing was written", p, rerr)
			}
		}
		reply, err := stream.CloseAndRecv()
		if err == nil {
			e = entryFrom(reply.GetEntry())
		}
		return err
	})
	if err != nil {
		return Entry{}, err
	}
	c.invalidateOwner(ctx, path.Dir(p))
	return e, nil
}

// fill reads from r until buf is full or r fails. It returns io.EOF only
// for the input's own clean end: an input that breaks off with
// io.ErrUnexpectedEOF (a truncated body) is an error, which io.ReadFull
// could not tell apart from a short last chunk.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Remove deletes a file, or a directory if it is empty.
func (c *Client) Remove(ctx context.Context, p string) error {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return err
	}
	err = c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Delete(ctx, &nodepb.DeleteRequest{Path: p})
		return err
	})
	if err == nil {
		c.invalidateOwner(ctx, path.Dir(p))
	}
	return err
}

// Mkdir creates a directory and its parents.
func (c *Client) Mkdir(ctx context.Context, p string) error {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return err
	}
	err = c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Mkdir(ctx, &nodepb.MkdirRequest{Path: p})
		return err
	})
	if err == nil {
		c.invalidateOwner(ctx, path.Dir(p))
	}
	return err
}

// Rename moves a file within one mount, replacing the destination.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	from, err := CleanNamespacePath(from)
	if err != nil {
		return err
	}
	if to, err = CleanNamespacePath(to); err != nil {
		return err
	}
	err = c.onCandidates(ctx, metaKey(from), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Rename(ctx, &nodepb.RenameRequest{From: from, To: to})
		return err
	})
	if err == nil {
		for _, p := range []string{to, path.Dir(from), path.Dir(to)} {
			c.invalidateOwner(ctx, p)
		}
	}
	return err
}

// invalidateOwner drops cached metadata of p at the node that owns it, so
// a change made through another node is visible at once in this region.
// Best effort: a failure only means the old answer lives until its TTL.
func (c *Client) invalidateOwner(ctx context.Context, p string) {
	err := c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: p})
		return err
	})
	if err != nil {
		c.log.Warn("metadata invalidation failed; the old entry lives until its TTL", "path", p, "err", err)
	}
}

// Sync drops cached metadata at and below p on every node of the region
// (each told directly), and asks the first node that answers to pass it
// on to every other region over NATS. It returns how many entries this
// region dropped, whether the rest of the mesh was told, and an error
// naming the nodes it could not reach.
func (c *Client) Sync(ctx context.Context, p string) (dropped int, mesh bool, err error) {
	p, err = CleanNamespacePath(p)
	if err != nil {
		return 0, false, err
	}
	var errs []error
	for _, m := range c.cfg.Members.Members() {
		nc, err := c.node(m.Addr)
		if err == nil {
			var r *nodepb.InvalidateReply
			if r, err = nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: p, Mesh: !mesh}); err == nil {
				dropped += int(r.GetDropped())
				mesh = mesh || r.GetMeshPublished()
				continue
			}
		}
		errs = append(errs, fmt.Errorf("node %s (%s): %w", m.ID, m.Addr, err))
	}
	return dropped, mesh, errors.Join(errs...)
}
