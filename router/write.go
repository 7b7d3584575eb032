package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// writeChunk is the payload of one streamed write message.
const writeChunk = 1 << 20

// writeStreamDesc describes the node's Write stream for calls made
// without the generated stub (raw chunks need their own message type).
var writeStreamDesc = &grpc.StreamDesc{StreamName: "Write", ClientStreams: true}

// ChunkReader is an input that lends Put its bytes instead of having
// them copied into Put's buffers (the FUSE mount's write-behind window
// does). Put reads an input that implements it with NextChunk only.
type ChunkReader interface {
	// NextChunk returns the input's next bytes, at most max of them,
	// and an error as io.Reader's Read does: io.EOF at the input's
	// clean end, any other error fails the Put (after the bytes
	// returned with it are sent). The bytes must stay as they are until
	// release is called (never nil with bytes; with none it may be nil):
	// the transport calls it once they are on the wire, possibly after
	// Put has returned and from another goroutine. A release may never
	// come (a transport that dropped the bytes leaves them to the
	// garbage collector), so the input must not wait for it to go on.
	NextChunk(max int) (b []byte, release func(), err error)
}

// Put writes a whole file from r (write-through: it returns once the lake
// has the file). Readers see the old content or the new, never a mix.
//
// A Put is sent to one node and is not retried on another if that node
// fails mid-stream, since r has been partly consumed; the caller retries.
//
// The bytes go as raw chunks (cachenode.RawCodecName): the transport
// sends them from the input's own buffers if it is a ChunkReader, else
// from pooled buffers they are read into, and marshals nothing.
func (c *Client) Put(ctx context.Context, p string, r io.Reader) (Entry, error) {
	return c.PutAttrs(ctx, p, r, nil)
}

// PutAttrs is Put that stores attrs with the file (ufs.Attrs), in its
// lake where the lake keeps them. Attrs that ufs.Attrs.Validate refuses,
// or user metadata for a lake that keeps none, fail the write before any
// byte is written (ufs.ErrInvalidAttrs, ufs.ErrAttrsNotKept).
func (c *Client) PutAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (Entry, error) {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return Entry{}, err
	}
	chunks, ok := r.(ChunkReader)
	if !ok {
		chunks = &pooledChunks{r: r, pool: c.frameBufs}
	}
	var e Entry
	started := false
	err = c.onCandidates(ctx, metaKey(p), func(_ nodepb.NodeClient, m region.Member) error {
		if started {
			return fmt.Errorf("put %s: %w", p, ErrWriteInterrupted)
		}
		cc, err := c.conn(m.Addr)
		if err != nil {
			return err
		}
		// Cancelling the stream, never closing it, is how a write is
		// abandoned: the node commits only on a clean end of the stream.
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cs, err := cc.NewStream(sctx, writeStreamDesc, nodepb.Node_Write_FullMethodName, grpc.CallContentSubtype(cachenode.RawCodecName))
		if err != nil {
			return err
		}
		stream := &grpc.GenericClientStream[nodepb.WriteChunk, nodepb.WriteReply]{ClientStream: cs}
		if err := stream.Send(&nodepb.WriteChunk{Path: p, Attrs: attrs}); err != nil {
			_, err = stream.CloseAndRecv()
			return err
		}
		started = true
		for {
			b, release, rerr := chunks.NextChunk(writeChunk)
			if len(b) > 0 {
				if err := cs.SendMsg(&cachenode.RawWrite{Data: mem.BufferSlice{lent(b, release)}}); err != nil {
					_, err = stream.CloseAndRecv()
					return err
				}
			} else if release != nil {
				release()
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
	c.invalidateChanged(ctx, p)
	return e, nil
}

// lent makes bytes lent by a ChunkReader a transport buffer whose free
// releases them.
func lent(b []byte, release func()) mem.Buffer {
	if mem.IsBelowBufferPoolingThreshold(cap(b)) {
		// The transport never frees so small a buffer: it gets a copy.
		b = bytes.Clone(b)
		release()
		return mem.SliceBuffer(b)
	}
	return mem.NewBuffer(&b, releasePool(release))
}

// releasePool is the buffer pool of one lent buffer: the transport puts
// the buffer back once it has sent it, which releases it.
type releasePool func()

func (f releasePool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (f releasePool) Put(*[]byte)       { f() }

// pooledChunks makes a plain io.Reader a ChunkReader: each chunk is read
// into a buffer of pool, the one copy of its bytes on their way to the
// socket, and goes back to the pool once sent.
type pooledChunks struct {
	r    io.Reader
	pool *cachenode.RawBufferPool
}

func (p *pooledChunks) NextChunk(max int) ([]byte, func(), error) {
	bp := p.pool.Get(max)
	n, err := fill(p.r, *bp)
	return (*bp)[:n], func() { p.pool.Put(bp) }, err
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
		c.invalidateChanged(ctx, p)
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
		c.invalidateChanged(ctx, p)
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
	// A write-back of the destination still in its node's journal is
	// uploaded first, or it would land over the renamed file.
	err = c.onCandidates(ctx, metaKey(to), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.WaitUploaded(ctx, &nodepb.WaitUploadedRequest{Path: to})
		if status.Code(err) == codes.Unimplemented {
			return nil // a node from before WaitUploaded
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	err = c.onCandidates(ctx, metaKey(from), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Rename(ctx, &nodepb.RenameRequest{From: from, To: to})
		return err
	})
	if err == nil {
		c.invalidateOwner(ctx, to)
		c.invalidateChanged(ctx, from, to)
	}
	return err
}

// invalidateChanged drops, after a change to the files or directories
// ps, the metadata that changed with them: everything about each one's
// directory at its node (its listing, the path's own entry) and, at each
// node of a directory further up to the mount, that directory's own stat
// and listing, which change when a directory appears (a file written
// under a new one: S3 has no directories but what is below them) or goes
// (its last file removed). Each directory is told once.
func (c *Client) invalidateChanged(ctx context.Context, ps ...string) {
	parents, above := map[string][]string{}, map[string]bool{}
	for _, p := range ps {
		parents[path.Dir(p)] = append(parents[path.Dir(p)], p)
		if m, _, ok := c.cfg.Topology.Resolve(p); ok {
			for _, d := range federation.DirsAbove(path.Dir(p), m.Path) {
				above[d] = true
			}
		}
	}
	for d, changed := range parents {
		c.invalidateOwner(ctx, d, changed...)
		delete(above, d) // dropped whole already
	}
	var wg sync.WaitGroup
	for a := range above {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.onCandidates(ctx, metaKey(a), func(nc nodepb.NodeClient, _ region.Member) error {
				_, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: a, SelfOnly: true, Origin: c.origin})
				return err
			})
			if err != nil {
				c.log.Warn("metadata invalidation failed; the old listing lives until its TTL", "path", a, "err", err)
			}
		}()
	}
	wg.Wait()
}

// invalidateOwner drops cached metadata of p at the node that owns it, so
// a change made through another node is visible at once in this region,
// and tells the node's watchers which paths below p changed (changed).
// Best effort: a failure only means the old answer lives until its TTL.
func (c *Client) invalidateOwner(ctx context.Context, p string, changed ...string) {
	err := c.onCandidates(ctx, metaKey(p), func(nc nodepb.NodeClient, _ region.Member) error {
		_, err := nc.Invalidate(ctx, &nodepb.InvalidateRequest{Path: p, Changed: changed, Origin: c.origin})
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
			if err := cachenode.FromStatus(err); errors.Is(err, cachenode.ErrNoMount) {
				return 0, false, err // every node would say the same
			}
		}
		errs = append(errs, fmt.Errorf("node %s (%s): %w", m.ID, m.Addr, err))
	}
	return dropped, mesh, errors.Join(errs...)
}
