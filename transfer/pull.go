package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
)

// piecesInFlight is how many granted pieces of one fetch cross at once:
// enough to keep a line with a long rtt busy, few enough that a fetch
// holds little of the budget ahead of its use.
const piecesInFlight = 4

var readStreamDesc = &grpc.StreamDesc{StreamName: "Read", ServerStreams: true}

// pull brings [off, off+n) of ref into this region over rt: it asks the
// owner of the page in the region one hop toward the source (rt.Next())
// for the bytes, piece by piece, each piece granted by the budget of the
// line into this region before it is requested, so no byte crosses
// ahead of its grant. The neighbour, when it is not the source, fills
// the bytes over the rest of the route first (store and forward, a copy
// kept at each relay).
//
// qd is the fetch's place in the queue on the line into this region when
// the caller counted it there as it chose the route; nil: pull counts it.
func (s *Source) pull(ctx context.Context, ref cachenode.FileRef, off, n int64, rt federation.Route, class Class, qd *queued) (*fetched, error) {
	next := rt.Next()
	members := s.members(next)
	if len(members) == 0 {
		return nil, fmt.Errorf("line %s->%s: region %s has no node up: %w", next, s.cfg.Region, next, cachenode.ErrLineDown)
	}
	// Until its bytes cross, the fetch counts in this node's queue on the
	// line, which weighs the line for the next fetches' routes.
	if qd == nil {
		qd = s.queue(next, class, n)
	}
	defer qd.done()
	upstream := rt.Regions[:len(rt.Regions)-1]
	key := cachenode.PageID{File: ref.ID(), Index: off / s.cfg.PageSize}.Key()
	ranked := region.Rank(key, members)
	pageLen := min(s.cfg.PageSize, ref.Size-off/s.cfg.PageSize*s.cfg.PageSize)
	opts := readOpts{forRegion: s.cfg.Region, route: upstream, class: class, sequential: n == pageLen}

	// Bound the pages this node has in flight over the line to about two
	// seconds of its budget, and those whose pieces cross at once to about
	// one: more would only wait for grants while the sender filled them
	// all at once (and stalled the pieces it sends); the others are being
	// filled at the sender meanwhile, so the line never waits on a fill.
	ahead, pulling := s.pages(next, class)
	if err := ahead.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer ahead.Release(1)
	var (
		mu     sync.Mutex
		origin = cachenode.Origin{Region: next}
		member = ranked[0]
		wait   time.Duration
		failed bool
	)
	// Have the neighbour fill the bytes first (over the rest of the route
	// when it relays), so that each piece below crosses as soon as it is
	// granted instead of waiting on that fill with its grant in hand.
	fopts := opts
	fopts.fillOnly, fopts.fillLen = true, n
	fillStart := time.Now()
	for i, m := range ranked {
		fctx, cancel := context.WithTimeout(ctx, s.cfg.FillTimeout)
		metas, err := s.readPiece(fctx, next, m.Addr, ref, off, nil, fopts)
		cancel()
		if err == nil {
			member = m
			addUpstream(&origin, metas, m.ID)
			break
		}
		err = cachenode.FromStatus(err)
		if errors.Is(err, cachenode.ErrLineDown) {
			return nil, fmt.Errorf("via %s: %w", next, err)
		}
		if !nodeFailed(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("line %s->%s: %w", next, s.cfg.Region, err)
		}
		failed = true
		if i == len(ranked)-1 {
			s.cfg.Peers.MarkDown(next, s.cfg.Region, 5*time.Second)
			return nil, fmt.Errorf("line %s->%s: %w: %w", next, s.cfg.Region, err, cachenode.ErrLineDown)
		}
	}

	s.queues.filled(next, time.Since(fillStart))
	if err := pulling.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer pulling.Release(1)
	buf := make([]byte, n)
	ps := s.pieceSize(next)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(piecesInFlight)
	for pos := int64(0); pos < n; pos += ps {
		piece := buf[pos:min(pos+ps, n)]
		at := off + pos
		g.Go(func() error {
			// Bound what is granted but not yet across, so a sender that
			// stalls cannot release a burst of granted pieces at once.
			window := s.window(next, class)
			if err := window.acquire(gctx, int64(len(piece))); err != nil {
				return err
			}
			defer window.release(int64(len(piece)))
			w, err := s.grant(gctx, next, class, int64(len(piece)))
			if err != nil {
				return err
			}
			defer func() {
				s.arrived(next, int64(len(piece)))
				qd.crossed(int64(len(piece)))
			}()
			mu.Lock()
			wait += w
			m := member
			mu.Unlock()
			var metas []*nodepb.PageFetch
			for i := 0; ; i++ {
				metas, err = s.readPiece(gctx, next, m.Addr, ref, at, piece, opts)
				if err == nil || !nodeFailed(err) || errors.Is(err, cachenode.ErrLineDown) || gctx.Err() != nil {
					break
				}
				// Next candidate of the neighbour region, if any.
				mu.Lock()
				failed = true
				if i+1 >= len(ranked) {
					mu.Unlock()
					break
				}
				if member == m {
					member = ranked[min(slices.IndexFunc(ranked, func(x region.Member) bool { return x.ID == m.ID })+1, len(ranked)-1)]
				}
				m = member
				mu.Unlock()
			}
			if err != nil {
				return err
			}
			mu.Lock()
			addUpstream(&origin, metas, m.ID)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		err = cachenode.FromStatus(err)
		if errors.Is(err, cachenode.ErrLineDown) {
			// A line beyond the neighbour is down: another route may do.
			return nil, fmt.Errorf("via %s: %w", next, err)
		}
		if nodeFailed(err) && ctx.Err() == nil {
			s.cfg.Peers.MarkDown(next, s.cfg.Region, 5*time.Second)
			return nil, fmt.Errorf("line %s->%s: %w: %w", next, s.cfg.Region, err, cachenode.ErrLineDown)
		}
		return nil, fmt.Errorf("line %s->%s: %w", next, s.cfg.Region, err)
	}
	if !failed {
		s.cfg.Peers.MarkUp(next, s.cfg.Region)
	}
	s.finish(&origin, next, class, n, wait)
	return &fetched{Reader: bytes.NewReader(buf), origin: origin}, nil
}

// pieceSize is how many bytes one grant covers on the line from region
// from into this one: at most 1/128 of a second of its budget (so that
// grants, and the bursts they allow, stay a small part of any second of
// the line's traffic), at least 16 KiB, at most MaxGrant.
func (s *Source) pieceSize(from string) int64 {
	l, _ := s.cfg.Topology.LineBetween(from, s.cfg.Region)
	return min(MaxGrant, max(16<<10, int64(l.Budget)/128/(4<<10)*(4<<10)))
}

// windowSlack is how much longer than the line's rtt a granted piece
// may take to arrive before this node stops asking for more: the slack
// covers the piece's time on the wire and the sender's scheduling.
const windowSlack = 50 * time.Millisecond

// window is the bound on bytes granted on the line from region from into
// this one that have not arrived yet, for this node and class: the line's
// budget × (rtt + windowSlack), divided among the nodes of this region
// that pull over it (as the governor last counted them, or every member
// when it has not said), at least two pieces. The windows of all pulling
// nodes add up to about one rtt of budget plus the slack, enough to keep
// the line busy, and a node that pulls alone has the whole of it. What a
// stalled sender can then release at once is bounded by the governor,
// which counts granted bytes until they are reported arrived (ledger).
//
// Each class has its own window (and page slots, below): a class waiting
// for grants behind a higher one must not hold the room the higher one
// needs. The bound on granted bytes not yet arrived is per class in use.
func (s *Source) window(from string, class Class) *lineWindow {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := slotKey{from, class}
	if w, ok := s.windows[key]; ok {
		return w
	}
	l, _ := s.cfg.Topology.LineBetween(from, s.cfg.Region)
	dir := Direction{From: from, To: s.cfg.Region}
	line := int64(float64(l.Budget) * (l.RTT + windowSlack).Seconds())
	least := 2 * s.pieceSize(from)
	w := &lineWindow{wake: make(chan struct{}), limit: func() int64 {
		return max(least, line/int64(s.pullers(dir)))
	}}
	s.windows[key] = w
	return w
}

// lineWindow counts one node's bytes of one class granted on a line and
// not arrived yet, against a limit that follows the number of nodes
// pulling. A request bigger than the limit still goes alone.
type lineWindow struct {
	limit func() int64

	mu   sync.Mutex
	used int64
	wake chan struct{} // closed (and replaced) when bytes are released
}

func (w *lineWindow) acquire(ctx context.Context, n int64) error {
	for {
		w.mu.Lock()
		if w.used == 0 || w.used+n <= w.limit() {
			w.used += n
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *lineWindow) release(n int64) {
	w.mu.Lock()
	w.used -= n
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// pages bounds the fetches this node has in flight from region from
// (ahead: twice pulling) and those whose pieces cross at once (pulling:
// about two seconds of the line's budget in pages, at least 4, at most 64).
func (s *Source) pages(from string, class Class) (ahead, pulling *semaphore.Weighted) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := slotKey{from, class}
	if p, ok := s.pageSlots[key]; ok {
		return p[0], p[1]
	}
	l, _ := s.cfg.Topology.LineBetween(from, s.cfg.Region)
	n := min(64, max(4, 2*int64(l.Budget)/s.cfg.PageSize))
	p := [2]*semaphore.Weighted{semaphore.NewWeighted(2 * n), semaphore.NewWeighted(n)}
	s.pageSlots[key] = p
	return p[0], p[1]
}

// finish adds the last hop, into this region, to origin and the account.
func (s *Source) finish(origin *cachenode.Origin, from string, class Class, n int64, wait time.Duration) {
	dir := Direction{From: from, To: s.cfg.Region}
	var cost float64
	if s.cfg.Account != nil {
		cost = s.cfg.Account.Add(dir, class, n, wait)
	} else if l, ok := s.cfg.Topology.LineBetween(from, s.cfg.Region); ok {
		cost = float64(n) / 1e9 * l.CostPerGB
	}
	origin.Lines = append(origin.Lines, dir.String())
	origin.Crossed += n
	origin.Wait += wait
	origin.Cost += cost
}

// addUpstream merges what the neighbour reported about the hops before
// it into origin.
func addUpstream(origin *cachenode.Origin, metas []*nodepb.PageFetch, node string) {
	if origin.Node == "" {
		origin.Node = node
	}
	for _, pf := range metas {
		if pf.GetRegion() != "" {
			origin.Region = pf.GetRegion()
			if pf.GetSourceNode() != "" {
				origin.Node = pf.GetSourceNode()
			}
		}
		for _, l := range pf.GetLines() {
			if !slices.Contains(origin.Lines, l) {
				origin.Lines = append(origin.Lines, l)
			}
		}
		origin.Crossed += pf.GetCrossed()
		origin.Wait += time.Duration(pf.GetWaitNanos())
		origin.Cost += pf.GetCost()
	}
}

// direct reads the lake from this node when the lake's home region has no
// node up; the bytes still cross the route's line and are granted and
// counted as if a node of the home region had sent them.
func (s *Source) direct(ctx context.Context, ref cachenode.FileRef, off, n int64, rt federation.Route, class Class) (*fetched, error) {
	next := rt.Next()
	s.log.Warn("lake's home region has no node up; reading the lake directly over the line",
		"file", ref, "region", rt.From(), "line", Direction{From: next, To: s.cfg.Region}.String())
	defer s.queue(next, class, n).done()
	buf := make([]byte, n)
	ps := s.pieceSize(next)
	var wait time.Duration
	for pos := int64(0); pos < n; pos += ps {
		piece := buf[pos:min(pos+ps, n)]
		w, err := s.grant(ctx, next, class, int64(len(piece)))
		if err != nil {
			return nil, err
		}
		wait += w
		rc, err := s.cfg.Lake.Fetch(ctx, ref, off+pos, int64(len(piece)))
		if err != nil {
			s.arrived(next, int64(len(piece)))
			return nil, err
		}
		_, err = io.ReadFull(rc, piece)
		rc.Close()
		s.arrived(next, int64(len(piece)))
		if err != nil {
			return nil, fmt.Errorf("read %s from lake of region %s: %w", ref, rt.From(), err)
		}
	}
	origin := cachenode.Origin{Region: rt.From(), Node: "lake"}
	for i := 0; i+2 < len(rt.Regions); i++ { // the hops before the last
		origin.Lines = append(origin.Lines, Direction{From: rt.Regions[i], To: rt.Regions[i+1]}.String())
	}
	s.finish(&origin, next, class, n, wait)
	return &fetched{Reader: bytes.NewReader(buf), origin: origin}, nil
}

// has asks the node at addr of region r whether its cache holds the bytes.
func (s *Source) has(ctx context.Context, r, addr string, ref cachenode.FileRef, off, n int64, rt federation.Route) bool {
	cc, err := s.cfg.Peers.Conn(r, addr)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*rt.RTT()+2*time.Second)
	defer cancel()
	reply, err := nodepb.NewNodeClient(cc).Has(ctx, &nodepb.HasRequest{
		File:   &nodepb.FileRef{Path: namespacePath(ref), Version: ref.Version, Size: ref.Size},
		Offset: off, Length: n,
	})
	return err == nil && reply.GetHeld()
}

type readOpts struct {
	forRegion  string
	route      []string
	class      Class
	sequential bool
	cachedOnly bool
	fillOnly   bool
	fillLen    int64
}

// readPiece reads len(dst) bytes at off of ref from the node at addr of
// region r into dst, and returns what the node reported about where they
// came from. It fails if the line does not deliver within LineTimeout.
func (s *Source) readPiece(ctx context.Context, r, addr string, ref cachenode.FileRef, off int64, dst []byte, o readOpts) ([]*nodepb.PageFetch, error) {
	cc, err := s.cfg.Peers.Conn(r, addr)
	if err != nil {
		return nil, err
	}
	if !o.fillOnly {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.LineTimeout)
		defer cancel()
	}
	stream, err := cc.NewStream(ctx, readStreamDesc, nodepb.Node_Read_FullMethodName, grpc.CallContentSubtype(cachenode.RawCodecName))
	if err != nil {
		return nil, err
	}
	req := &nodepb.ReadRequest{
		File:       &nodepb.FileRef{Path: namespacePath(ref), Version: ref.Version, Size: ref.Size},
		Offset:     off,
		Length:     int64(len(dst)),
		FillOnly:   o.fillOnly,
		Sequential: o.sequential,
		Raw:        true,
		ForRegion:  o.forRegion,
		Route:      o.route,
		CachedOnly: o.cachedOnly,
	}
	if o.class != Interactive {
		req.Class = o.class.String()
	}
	if err := stream.SendMsg(req); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	if o.fillOnly {
		req.Length = o.fillLen // the reply is one chunk of metadata, no bytes
	}
	sink := &cachenode.RawSink{Dst: dst}
	for {
		err := stream.RecvMsg(sink)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, cachenode.FromStatus(err)
		}
	}
	if sink.N < len(dst) {
		return nil, fmt.Errorf("read %s at %d from %s in %s: short read, %d of %d bytes", ref, off, addr, r, sink.N, len(dst))
	}
	if sink.Meta == nil {
		return nil, nil
	}
	return sink.Meta.GetFetches(), nil
}

// nodeFailed reports whether err says the node or the line to it is
// unusable (as opposed to an answer about the data).
func nodeFailed(err error) bool {
	if errors.Is(err, cachenode.ErrLineDown) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return errors.Is(err, context.DeadlineExceeded)
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}
