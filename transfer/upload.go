package transfer

import (
	"context"
	"fmt"
	"io"

	"github.com/lakemesh/lakemesh/cachenode"
)

// Pull reads a whole file version from the node at addr of region from
// into this region, in pieces each granted by the budget of the line
// from -> this region under class before it is asked for, and counted in
// the Account. It is how a node of a lake's home region takes a file
// another region wrote (a write-back upload): the receiving region's
// governor paces it like any other transfer into the region.
//
// The reader keeps up to piecesInFlight pieces crossing at once; Close
// stops it.
func (s *Source) Pull(ctx context.Context, from, addr string, ref cachenode.FileRef, class Class) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	ps := s.pieceSize(from)
	type piece struct {
		buf  []byte
		done chan error
	}
	queue := make(chan *piece, piecesInFlight)
	go func() { // asks for pieces in order, several at once
		defer close(queue)
		for off := int64(0); off < ref.Size; off += ps {
			p := &piece{buf: make([]byte, min(ps, ref.Size-off)), done: make(chan error, 1)}
			select {
			case queue <- p:
			case <-ctx.Done():
				return
			}
			go func(at int64) {
				wait, err := s.grant(ctx, from, class, int64(len(p.buf)))
				if err == nil {
					_, err = s.readPiece(ctx, from, addr, ref, at, p.buf, readOpts{forRegion: s.cfg.Region, class: class})
					s.arrived(from, int64(len(p.buf)))
				}
				if err == nil && s.cfg.Account != nil {
					s.cfg.Account.Add(Direction{From: from, To: s.cfg.Region}, class, int64(len(p.buf)), wait)
				}
				p.done <- err
			}(off)
		}
	}()
	go func() { // writes them out in order
		for p := range queue {
			if err := <-p.done; err != nil {
				pw.CloseWithError(fmt.Errorf("pull %s from %s in %s: %w", ref, addr, from, cachenode.FromStatus(err)))
				cancel()
				return
			}
			if _, err := pw.Write(p.buf); err != nil {
				cancel()
				return
			}
		}
		if ctx.Err() != nil {
			pw.CloseWithError(ctx.Err())
			return
		}
		pw.Close()
	}()
	return &pullReader{PipeReader: pr, cancel: cancel}
}

type pullReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *pullReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}
