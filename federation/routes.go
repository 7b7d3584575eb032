package federation

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Route is a path over lines from a source region (the lake's home
// region, or a region whose cache holds the bytes) to a destination
// region. Bytes cross it store-and-forward: every region in between
// receives them whole, keeps a copy and passes them on.
//
// A Route always joins two different regions: len(Regions) >= 2 and
// len(Lines) == len(Regions)-1. A read within one region is not a Route.
// The zero Route is no route; its methods return zero values.
type Route struct {
	Regions []string // Regions[0] is the source, the last the destination
	Lines   []Line   // Lines[i] joins Regions[i] and Regions[i+1]
}

// From is the source region, where the bytes are.
func (r Route) From() string {
	if len(r.Regions) == 0 {
		return ""
	}
	return r.Regions[0]
}

// To is the destination region, where the bytes are wanted.
func (r Route) To() string {
	if len(r.Regions) == 0 {
		return ""
	}
	return r.Regions[len(r.Regions)-1]
}

// Hops is the number of lines the bytes cross.
func (r Route) Hops() int { return len(r.Lines) }

// RTT is the sum of the lines' round-trip times; a line without one
// counts 0.
func (r Route) RTT() time.Duration {
	var d time.Duration
	for _, l := range r.Lines {
		d += l.RTT
	}
	return d
}

// CostPerGB is the sum of the lines' cost_per_gb: what 10^9 bytes cost
// to move from the source to the destination, each line paid once.
func (r Route) CostPerGB() float64 {
	var c float64
	for _, l := range r.Lines {
		c += l.CostPerGB
	}
	return c
}

// Cost is what moving bytes along the route costs, in the currency units
// of cost_per_gb: bytes/1e9 × CostPerGB.
func (r Route) Cost(bytes int64) float64 {
	return float64(bytes) / 1e9 * r.CostPerGB()
}

// Bottleneck is the smallest budget along the route: the most the mesh
// may push through it in steady state. 0 for the zero Route.
func (r Route) Bottleneck() Bandwidth {
	var b Bandwidth
	for i, l := range r.Lines {
		if i == 0 || l.Budget < b {
			b = l.Budget
		}
	}
	return b
}

// String shows the route from source to destination, the way traces and
// status print it: "aws-use1 -> gpu-wlcb -> idc-bj".
func (r Route) String() string { return strings.Join(r.Regions, " -> ") }

// The relay walks a route backwards, one hop at a time: the destination
// asks its neighbour Next for the bytes over LastLine and hands it
// Upstream; Next serves them from its cache, or, when it is not the
// source, reads them over Upstream the same way, keeps a copy and passes
// them on. Only the source reads the lake.

// Next is the region the destination asks for the bytes: its neighbour on
// the route, one hop toward the source (Regions[len-2]). "" for the zero
// Route.
func (r Route) Next() string {
	if len(r.Regions) < 2 {
		return ""
	}
	return r.Regions[len(r.Regions)-2]
}

// LastLine is the line the bytes cross into the destination, from Next.
func (r Route) LastLine() Line {
	if len(r.Lines) == 0 {
		return Line{}
	}
	return r.Lines[len(r.Lines)-1]
}

// Upstream is the route Next reads the bytes over when it does not hold
// them: this route without its last hop. ok is false when Next is the
// source itself, which reads its own cache or the lake.
func (r Route) Upstream() (up Route, ok bool) {
	if len(r.Lines) < 2 {
		return Route{}, false
	}
	n := len(r.Regions) - 1
	return Route{Regions: r.Regions[:n:n], Lines: r.Lines[: n-1 : n-1]}, true
}

// Route rebuilds the route through the named regions, source first, with
// the lines of this topology: what a relay does with the region names it
// was handed over the wire. It is an error when fewer than two regions
// are named, a region repeats, or two neighbours have no line between
// them. It does not check Down, Load or residency: the caller that chose
// the route did.
func (t *Topology) Route(regions ...string) (Route, error) {
	if len(regions) < 2 {
		return Route{}, fmt.Errorf("route %s: a route joins at least two regions", strings.Join(regions, " -> "))
	}
	r := Route{Regions: slices.Clone(regions), Lines: make([]Line, 0, len(regions)-1)}
	for i, name := range regions {
		if _, ok := t.Region(name); !ok {
			return Route{}, fmt.Errorf("route %s: unknown region %q", r, name)
		}
		if slices.Contains(regions[:i], name) {
			return Route{}, fmt.Errorf("route %s: region %q appears twice", r, name)
		}
		if i == 0 {
			continue
		}
		l, ok := t.LineBetween(regions[i-1], name)
		if !ok {
			return Route{}, fmt.Errorf("route %s: no line between %s and %s", r, regions[i-1], name)
		}
		r.Lines = append(r.Lines, l)
	}
	return r, nil
}

// RouteOptions say which routes Routes may return and how it weighs them.
// The zero value allows every line and region and knows no load.
type RouteOptions struct {
	// Down reports a line that is currently unusable (cut, its far region
	// unreachable); such lines are not used. nil: none is down.
	Down func(Line) bool
	// Load reports a line's current use as a fraction of its budget in
	// the direction bytes flow (from, to); 0 when unknown. Values are
	// clamped to [0, 1]. nil: no load anywhere.
	Load func(l Line, from, to string) float64
	// Allowed reports whether bytes of the path being read may enter a
	// region (residency); routes through or to a region that is not
	// allowed are not returned. The source is not asked: the bytes are
	// already there. nil: all allowed. For a namespace path p,
	// t.PolicySet().For(p).MayEnter is the usual value.
	Allowed func(region string) bool
	// MaxHops is the most lines a route may cross; 0 (or less) means the
	// number of regions - 1, which is every simple path.
	MaxHops int
}

// Constants of the route weight; see Route.Weight.
const (
	// hopPenaltyMillis is what relaying through one more line costs
	// beyond its rtt: the store-and-forward write, the extra node and
	// grant. It is also all that a line with no rtt and no cost weighs.
	hopPenaltyMillis = 10.0
	// millisPerCostPerGB converts cost_per_gb into milliseconds: a line
	// costing 0.01 per GB weighs as much as 10ms more rtt.
	millisPerCostPerGB = 1000.0
	// maxLoadFactor caps 1/(1-load), reached at load 0.95, so a saturated
	// line is still used when no other route exists and its weight stays
	// finite.
	maxLoadFactor = 20.0
)

// Weight is what Routes orders by, lower first, in milliseconds of
// round-trip time equivalent:
//
//	Weight = Σ over lines i of (rtt_i + H + K × cost_per_gb_i) × F(load_i)
//	F(load) = min(1/(1 - load), 20), load clamped to [0, 1]
//
// with rtt in milliseconds (0 when the line gives none), H = 10ms the
// per-hop relay penalty, K = 1000ms per currency unit per GB (a line
// costing 0.01/GB weighs as much as 10ms of rtt), and load_i what
// o.Load reports for line i in the direction the bytes flow
// (Regions[i] -> Regions[i+1]); F is 2 at half load and 20 from 0.95 up.
// So a cheaper line of similar rtt wins, a much longer rtt loses, a line
// near its budget costs up to twenty times its idle weight, and every
// relay adds at least H. The result is rounded to 1e-6ms so that equal
// sums compare equal whatever the order they were added in. Down and
// Allowed do not enter the weight: Routes leaves such routes out.
func (r Route) Weight(o RouteOptions) float64 {
	var w float64
	for i, l := range r.Lines {
		base := float64(l.RTT)/float64(time.Millisecond) + hopPenaltyMillis + millisPerCostPerGB*l.CostPerGB
		load := 0.0
		if o.Load != nil && i+1 < len(r.Regions) {
			load = o.Load(l, r.Regions[i], r.Regions[i+1])
		}
		w += base * loadFactor(load)
	}
	return math.Round(w*1e6) / 1e6
}

func loadFactor(load float64) float64 {
	if !(load > 0) { // also NaN
		return 1
	}
	if load >= 1-1/maxLoadFactor {
		return maxLoadFactor
	}
	return 1 / (1 - load)
}

// Routes returns the simple paths from region from to region to over
// lines that are not down, through regions that are allowed, of at most
// MaxHops lines, ordered by Weight, lowest first; equal weights are
// ordered by their region names, element by element, so the order never
// depends on the order of the file. It returns nil when there is none,
// when from or to is not a region of the topology, or when from == to
// (a read within one region crosses no line).
//
// Every simple path is enumerated, so the work grows with their number;
// meshes are a handful of regions joined by scarce lines, and MaxHops
// bounds it where they are not.
func (t *Topology) Routes(from, to string, o RouteOptions) []Route {
	if from == to {
		return nil
	}
	if _, ok := t.Region(from); !ok {
		return nil
	}
	if _, ok := t.Region(to); !ok {
		return nil
	}
	maxHops := o.MaxHops
	if maxHops <= 0 {
		maxHops = len(t.Regions) - 1
	}
	allowed := func(region string) bool { return o.Allowed == nil || o.Allowed(region) }
	if !allowed(to) {
		return nil
	}

	// Usable lines by region, the far end and the line.
	type edge struct {
		to   string
		line Line
	}
	adj := make(map[string][]edge)
	for _, l := range t.Lines {
		if o.Down != nil && o.Down(l) {
			continue
		}
		adj[l.Between[0]] = append(adj[l.Between[0]], edge{l.Between[1], l})
		adj[l.Between[1]] = append(adj[l.Between[1]], edge{l.Between[0], l})
	}

	var found []Route
	regions := []string{from}
	var lines []Line
	var walk func(at string)
	walk = func(at string) {
		for _, e := range adj[at] {
			if slices.Contains(regions, e.to) || !allowed(e.to) {
				continue
			}
			regions, lines = append(regions, e.to), append(lines, e.line)
			if e.to == to {
				found = append(found, Route{Regions: slices.Clone(regions), Lines: slices.Clone(lines)})
			} else if len(lines) < maxHops {
				walk(e.to)
			}
			regions, lines = regions[:len(regions)-1], lines[:len(lines)-1]
		}
	}
	walk(from)
	if len(found) == 0 {
		return nil
	}

	weights := make([]float64, len(found))
	order := make([]int, len(found))
	for i, r := range found {
		weights[i], order[i] = r.Weight(o), i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(weights[a], weights[b]), slices.Compare(found[a].Regions, found[b].Regions))
	})
	routes := make([]Route, len(found))
	for i, j := range order {
		routes[i] = found[j]
	}
	return routes
}

// LeafParent returns the region that region r's NATS server joins as a
// leaf node, on a spanning tree of the lines rooted at root (breadth
// first, cheaper lines first): "" for root itself, or for a region no
// line reaches. Leaf node connections must not form a cycle, so the
// regions' servers are joined along a tree, not along every line.
func LeafParent(t *Topology, root, r string) string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		lines := t.LinesOf(cur)
		slices.SortStableFunc(lines, func(a, b Line) int {
			ra := Route{Regions: []string{a.Between[0], a.Between[1]}, Lines: []Line{a}}
			rb := Route{Regions: []string{b.Between[0], b.Between[1]}, Lines: []Line{b}}
			return cmp.Compare(ra.Weight(RouteOptions{}), rb.Weight(RouteOptions{}))
		})
		for _, l := range lines {
			o := l.Between[0]
			if o == cur {
				o = l.Between[1]
			}
			if _, seen := parent[o]; !seen {
				parent[o] = cur
				queue = append(queue, o)
			}
		}
	}
	return parent[r]
}
