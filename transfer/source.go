package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/policy"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// SourceConfig is what a node's federated Source needs.
type SourceConfig struct {
	Topology *federation.Topology
	Region   string // this node's region
	NodeID   string
	PageSize int64
	// Lake reads the lakes directly from this node (cachenode.Lakes).
	Lake cachenode.Source
	// Members returns the healthy members of any region of the topology.
	Members func(region string) []region.Member
	Peers   *Peers
	// Claims fences the nodes of this region so a page crosses into it
	// once; nil: only this node's singleflight (a one-node region).
	Claims *Claims
	// Budget returns the budget of the line direction into this region;
	// nil, or a nil result: a local limiter at StaticShare.
	Budget func(Direction) *Budget
	// StaticShare is the rate this node may use alone on a direction when
	// there is no governor (default: the budget / number of this region's
	// members).
	StaticShare func(Direction) int64
	Account     *Account
	// LineTimeout bounds one piece of a transfer over a line; a line that
	// does not deliver in time counts as down (default 20s).
	LineTimeout time.Duration
	// FillTimeout bounds how long a neighbour region may take to fill the
	// bytes it then sends (its own fill may wait on its lines' budgets)
	// (default 2 minutes).
	FillTimeout time.Duration
	// ClaimWait bounds how long a fill waits on another node's claim
	// before it crosses anyway (default 2 minutes).
	ClaimWait time.Duration
	Logger    *slog.Logger
}

// Source is a node's cachenode.Source in a federated mesh. A miss of a
// lake homed in this region reads the lake; any other miss crosses into
// this region once (claims), from the cheapest region that holds the
// bytes or else the lake's home region, over the cheapest usable route,
// in pieces each granted by the line's budget, counted in the Account.
type Source struct {
	cfg      SourceConfig
	log      *slog.Logger
	policies *policy.Set

	mu        sync.Mutex
	static    map[Direction]*rate.Limiter        // fallback limiters; one per direction into this region
	windows   map[slotKey]*lineWindow            // granted bytes not yet arrived, by source region and class
	queues    lineQueues                         // bytes routed over each line into this region, not across yet
	routeMu   sync.Mutex                         // held while a fetch chooses its route and queues on it
	pageSlots map[slotKey][2]*semaphore.Weighted // fetches ahead and pulling at once, by source region and class
}

// slotKey names the bounds of one class of transfers from one region.
type slotKey struct {
	from  string
	class Class
}

var _ cachenode.Source = (*Source)(nil)

// NewSource returns the federated source of a node.
func NewSource(cfg SourceConfig) *Source {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LineTimeout <= 0 {
		cfg.LineTimeout = 20 * time.Second
	}
	if cfg.FillTimeout <= 0 {
		cfg.FillTimeout = 2 * time.Minute
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = 2 * time.Minute
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 4 << 20
	}
	return &Source{cfg: cfg, log: cfg.Logger, policies: cfg.Topology.PolicySet(), static: map[Direction]*rate.Limiter{}, windows: map[slotKey]*lineWindow{}, pageSlots: map[slotKey][2]*semaphore.Weighted{}}
}

// Spans implements cachenode.SpanSource: a fill this node reads from its
// own region's lake may span pages; one that crosses a line is asked page
// by page, as claims and line grants are.
func (s *Source) Spans(ctx context.Context, ref cachenode.FileRef) bool {
	m, ok := s.cfg.Topology.Mount(ref.Mount)
	if !ok {
		return false
	}
	fill, _ := cachenode.FillFrom(ctx)
	if s.givenRoute(fill) != nil || m.Region != s.cfg.Region {
		return false
	}
	lake, ok := s.cfg.Lake.(cachenode.SpanSource)
	return ok && lake.Spans(ctx, ref)
}

// givenRoute is the route a requesting region chose for this fill, ending
// at this region; nil when the fill names none.
func (s *Source) givenRoute(fill cachenode.Fill) []string {
	if len(fill.Route) >= 2 && fill.Route[len(fill.Route)-1] == s.cfg.Region {
		return fill.Route
	}
	return nil
}

// Fetch implements cachenode.Source.
func (s *Source) Fetch(ctx context.Context, ref cachenode.FileRef, off, n int64) (io.ReadCloser, error) {
	m, ok := s.cfg.Topology.Mount(ref.Mount)
	if !ok {
		return nil, fmt.Errorf("fetch %s: %w", ref, cachenode.ErrNoMount)
	}
	p := namespacePath(ref)
	if !s.policies.For(p).MayEnter(s.cfg.Region) {
		return nil, fmt.Errorf("%s may not be in region %s (residency %v): %w",
			p, s.cfg.Region, s.policies.For(p).Residency, cachenode.ErrResidency)
	}
	fill, _ := cachenode.FillFrom(ctx)
	class := Interactive
	if fill.Class != "" {
		c, err := ParseClass(fill.Class)
		if err != nil {
			return nil, err
		}
		class = c
	}
	given := s.givenRoute(fill)
	if given == nil && m.Region == s.cfg.Region {
		return s.cfg.Lake.Fetch(ctx, ref, off, n)
	}
	return s.claimed(ctx, ref, off, n, func() (*fetched, error) {
		if given != nil {
			rt, err := s.cfg.Topology.Route(given...)
			if err != nil {
				return nil, err
			}
			return s.pull(ctx, ref, off, n, rt, class, nil)
		}
		return s.cross(ctx, ref, off, n, m.Region, class)
	})
}

// claimed runs do, the crossing of [off, off+n) of ref into this region,
// under a claim in the region's KV, so that of all the region's nodes
// only one crosses; the others read the bytes from the node that landed
// them.
func (s *Source) claimed(ctx context.Context, ref cachenode.FileRef, off, n int64, do func() (*fetched, error)) (io.ReadCloser, error) {
	if s.cfg.Claims == nil {
		return do()
	}
	key := ClaimKey(ref, off, n)
	for attempt := 0; attempt < 4; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.ClaimWait)
		cl, holder, err := s.cfg.Claims.Acquire(wctx, key)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			// The region's NATS is unreachable or slow: the local
			// singleflight still holds; cross unfenced rather than fail.
			s.log.Warn("transfer claim unavailable, crossing without it", "file", ref, "offset", off, "err", err)
			return do()
		case cl != nil:
			f, err := do()
			if err != nil {
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				cl.Release(rctx)
				rcancel()
				return nil, err
			}
			f.claim = cl
			return f, nil
		}
		if holder.NodeID != s.cfg.NodeID && holder.Addr != "" {
			f, err := s.fromHolder(ctx, ref, off, n, holder)
			if err == nil {
				return f, nil
			}
			s.log.Debug("landed page not readable from its holder", "file", ref, "holder", holder.NodeID, "err", err)
		}
		s.cfg.Claims.Stale(ctx, key, holder.Revision)
	}
	return do()
}

// fromHolder reads bytes another node of this region landed.
func (s *Source) fromHolder(ctx context.Context, ref cachenode.FileRef, off, n int64, h Holder) (*fetched, error) {
	buf := make([]byte, n)
	_, err := s.readPiece(ctx, s.cfg.Region, h.Addr, ref, off, buf, readOpts{cachedOnly: true})
	if err != nil {
		return nil, err
	}
	return &fetched{Reader: bytes.NewReader(buf), origin: cachenode.Origin{Region: s.cfg.Region, Node: h.NodeID}}, nil
}

// cross brings [off, off+n) of ref into this region from the cheapest
// place that has it: a region whose cache holds it over a route cheaper
// than the lake's home region's, else the home region, else, when the
// home region has no node up, the lake itself.
func (s *Source) cross(ctx context.Context, ref cachenode.FileRef, off, n int64, home string, class Class) (*fetched, error) {
	p := namespacePath(ref)
	allowed := s.policies.For(p).MayEnter
	routes, qd := s.routeQueued(allowed, home, class, n)
	defer qd.done()
	if len(routes) == 0 {
		return nil, s.noRoute(p, home)
	}
	// A region that holds the bytes closer than home serves them.
	for _, rt := range s.holders(ctx, ref, off, n, allowed, home, routes[0], class) {
		qd.done()
		f, err := s.pull(ctx, ref, off, n, rt, class, nil)
		if err == nil {
			return f, nil
		}
		if !retryable(err) {
			return nil, err
		}
		s.log.Debug("holder region failed, trying the next source", "route", rt.String(), "err", err)
	}
	var errs []error
	for i, rt := range routes {
		if i > 0 {
			qd.done()
			qd = nil // pull queues on the line it takes
		}
		if len(s.members(rt.Regions[len(rt.Regions)-2])) == 0 && len(rt.Regions) == 2 {
			// The home region has no node up: read its lake from here,
			// still over (and counted against) the line.
			qd.done() // direct queues on its own
			f, err := s.direct(ctx, ref, off, n, rt, class)
			if err == nil || !retryable(err) {
				return f, err
			}
			errs = append(errs, err)
			continue
		}
		f, err := s.pull(ctx, ref, off, n, rt, class, qd)
		if err == nil || !retryable(err) {
			return f, err
		}
		errs = append(errs, err)
		s.log.Warn("route failed, trying the next", "file", ref, "route", rt.String(), "err", err)
	}
	err := errors.Join(errs...)
	if !errors.Is(err, cachenode.ErrLineDown) {
		err = fmt.Errorf("%w: %w", err, cachenode.ErrLineDown)
	}
	return nil, fmt.Errorf("fetch %s from region %s: every route failed: %w", p, home, err)
}

// routes are the usable routes from region from to this one through
// regions the bytes may enter (allowed), cheapest first for a fetch of
// class: by rtt, cost and hops, and, for the lines into this region, by
// how long the fetch would wait behind this node's queue on them (see
// spillWait), so demand above a line's budget spills to the next route.
func (s *Source) routes(allowed func(string) bool, from string, class Class) []federation.Route {
	return s.cfg.Topology.Routes(from, s.cfg.Region, s.routeOptions(allowed, class))
}

func (s *Source) routeOptions(allowed func(string) bool, class Class) federation.RouteOptions {
	return federation.RouteOptions{
		Down:    func(l federation.Line) bool { return s.cfg.Peers.Down(l.Between[0], l.Between[1]) },
		Load:    s.lineLoad(class),
		Allowed: allowed,
	}
}

func (s *Source) noRoute(p, home string) error {
	var down []string
	for _, l := range s.cfg.Topology.Lines {
		if s.cfg.Peers.Down(l.Between[0], l.Between[1]) {
			down = append(down, l.Between[0]+"<->"+l.Between[1])
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("no usable route from region %s to %s for %s (lines down: %s): %w",
			home, s.cfg.Region, p, strings.Join(down, ", "), cachenode.ErrLineDown)
	}
	return fmt.Errorf("no route from region %s to %s for %s (no lines join them, or residency forbids every relay): %w",
		home, s.cfg.Region, p, cachenode.ErrLineDown)
}

// holders asks the regions that are closer than home (by route weight)
// whether their cache holds the bytes, and returns the routes from those
// that do, cheapest first. It asks at most two regions, the cheapest.
func (s *Source) holders(ctx context.Context, ref cachenode.FileRef, off, n int64, allowed func(string) bool, home string, homeRoute federation.Route, class Class) []federation.Route {
	opts := s.routeOptions(allowed, class)
	limit := homeRoute.Weight(opts)
	var cands []federation.Route
	for _, r := range s.cfg.Topology.Regions {
		if r.Name == home || r.Name == s.cfg.Region {
			continue
		}
		rs := s.routes(allowed, r.Name, class)
		if len(rs) > 0 && rs[0].Weight(opts) < limit && len(s.members(r.Name)) > 0 {
			cands = append(cands, rs[0])
		}
	}
	slices.SortStableFunc(cands, func(a, b federation.Route) int {
		wa, wb := a.Weight(opts), b.Weight(opts)
		switch {
		case wa < wb:
			return -1
		case wa > wb:
			return 1
		}
		return 0
	})
	if len(cands) > 2 {
		cands = cands[:2]
	}
	var out []federation.Route
	key := cachenode.PageID{File: ref.ID(), Index: off / s.cfg.PageSize}.Key()
	for _, rt := range cands {
		src := rt.Regions[0]
		owner, ok := region.Owner(key, s.members(src))
		if !ok {
			continue
		}
		if s.has(ctx, src, owner.Addr, ref, off, n, rt) {
			out = append(out, rt)
		}
	}
	return out
}

func (s *Source) members(r string) []region.Member {
	if s.cfg.Members == nil {
		return nil
	}
	return s.cfg.Members(r)
}

// grant waits until n bytes of class may cross into this region from
// region from, and returns how long it waited.
func (s *Source) grant(ctx context.Context, from string, class Class, n int64) (time.Duration, error) {
	dir := Direction{From: from, To: s.cfg.Region}
	if s.cfg.Budget != nil {
		if b := s.cfg.Budget(dir); b != nil {
			return b.Acquire(ctx, class, n)
		}
	}
	lim := s.staticLimiter(dir)
	start := time.Now()
	if err := lim.WaitN(ctx, int(n)); err != nil {
		return time.Since(start), fmt.Errorf("budget of line %s: %w", dir, err)
	}
	return time.Since(start), nil
}

// arrived tells the budget of the line from region from that n granted
// bytes arrived (or, the piece having failed, never will).
func (s *Source) arrived(from string, n int64) {
	if s.cfg.Budget == nil {
		return
	}
	if b := s.cfg.Budget(Direction{From: from, To: s.cfg.Region}); b != nil {
		b.Arrived(n)
	}
}

func (s *Source) staticLimiter(dir Direction) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim, ok := s.static[dir]; ok {
		return lim
	}
	var r int64
	if s.cfg.StaticShare != nil {
		r = s.cfg.StaticShare(dir)
	}
	if r <= 0 {
		l, _ := s.cfg.Topology.LineBetween(dir.From, dir.To)
		r = int64(l.Budget) / int64(max(1, len(s.members(s.cfg.Region))))
	}
	lim := rate.NewLimiter(rate.Limit(r), int(max(MaxGrant, r/20)))
	s.static[dir] = lim
	return lim
}

// retryable reports whether another route or source may succeed where
// err failed: not for a changed version, a residency refusal, or the
// caller giving up.
func retryable(err error) bool {
	return !errors.Is(err, ufs.ErrVersionChanged) && !errors.Is(err, cachenode.ErrResidency) &&
		!errors.Is(err, ufs.ErrNotFound) && !errors.Is(err, context.Canceled)
}

// namespacePath is the path of ref in the namespace.
func namespacePath(ref cachenode.FileRef) string {
	if ref.Path == "" {
		return ref.Mount
	}
	return ref.Mount + "/" + ref.Path
}

// ClaimKey names the crossing of bytes [off, off+n) of one file version:
// a page or a run of its blocks.
func ClaimKey(ref cachenode.FileRef, off, n int64) string {
	return fmt.Sprintf("%s/%d-%d", ref.ID(), off, off+n)
}

// fetched is the reader Source.Fetch returns: the bytes, where they came
// from, and the claim to land once the page store keeps them.
type fetched struct {
	*bytes.Reader
	origin cachenode.Origin
	claim  *Claim
}

func (f *fetched) Origin() cachenode.Origin { return f.origin }

func (f *fetched) Commit(stored bool) {
	if f.claim == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if stored {
		f.claim.Land(ctx)
	} else {
		f.claim.Release(ctx)
	}
	f.claim = nil
}

func (f *fetched) Close() error {
	f.Commit(false) // a fetch the cache did not commit is not landed
	return nil
}
