package transfer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lakemesh/lakemesh/federation"
)

// spillWait is how long this node's queue on a line may be, at the line's
// rate, before the line weighs more than when idle: a queue of k ×
// spillWait weighs it k times its idle weight. A fetch then takes the
// next route once the cheap line's queue is longer than spillWait × the
// ratio of the two routes' idle weights.
//
// Why the queue, and not the line's measured rate: a load term taken
// from the rate would send the next fetches around a line that reaches
// its budget, its rate would fall, they would come back, and the line
// would oscillate below its budget. The queue only grows when demand is
// above what the line's governor grants, so what spills is that excess:
// the line keeps running at its budget with about spillWait × the weight
// ratio queued, and the rest crosses the next route.
const spillWait = time.Second

// lineQueues counts, per line into this region and class, the bytes of
// this node's fetches that have been routed over the line and have not
// crossed it yet (waiting for a page slot, a window or a grant, or on
// their way).
type lineQueues struct {
	mu     sync.Mutex
	queued map[string]*[classCount]int64 // by source region
	fill   map[string]time.Duration      // how long the neighbour takes to fill a fetch, smoothed, by source region
}

// filled records how long the neighbour region from took to fill a
// fetch's bytes before they could cross.
func (q *lineQueues) filled(from string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fill == nil {
		q.fill = map[string]time.Duration{}
	}
	if old, ok := q.fill[from]; ok {
		d = old + (d-old)/5
	}
	q.fill[from] = d
}

// add adds n bytes (n < 0: removes) of class to the queue from region
// from.
func (q *lineQueues) add(from string, class Class, n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == nil {
		q.queued = map[string]*[classCount]int64{}
	}
	c := q.queued[from]
	if c == nil {
		c = new([classCount]int64)
		q.queued[from] = c
	}
	c[class] += n
}

// ahead is what a new fetch of class from region from waits behind: the
// queued bytes of its class and of every class the budget serves first,
// and how long the neighbour takes to fill a fetch (smoothed).
func (q *lineQueues) ahead(from string, class Class) (int64, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.queued[from]
	if c == nil {
		return 0, q.fill[from]
	}
	var n int64
	for k := Interactive; k <= class; k++ {
		n += c[k]
	}
	return n, q.fill[from]
}

// queued is one fetch's bytes in this node's queue on the line from
// region from, taken off as they cross (or are given up on).
type queued struct {
	q     *lineQueues
	from  string
	class Class
	left  atomic.Int64
}

// queue counts n bytes of class as routed over the line from region from
// into this one, until they cross.
func (s *Source) queue(from string, class Class, n int64) *queued {
	qd := &queued{q: &s.queues, from: from, class: class}
	qd.left.Store(n)
	s.queues.add(from, class, n)
	return qd
}

// crossed takes n bytes that crossed off the queue.
func (qd *queued) crossed(n int64) {
	qd.left.Add(-n)
	qd.q.add(qd.from, qd.class, -n)
}

// done takes what is left of the fetch off the queue; it may be called
// more than once.
func (qd *queued) done() {
	if qd == nil {
		return
	}
	if n := qd.left.Swap(0); n != 0 {
		qd.q.add(qd.from, qd.class, -n)
	}
}

// routeQueued returns the routes of a fetch of n bytes of class from
// region from (see routes) and counts the fetch in the queue of the first
// route's line into this region, both at once: fetches that choose their
// routes together (a reader's readahead) see each other's bytes, and do
// not all take the line that was idle when they looked. The caller
// passes the reservation to pull when it takes the first route, and calls
// done in any case.
func (s *Source) routeQueued(allowed func(string) bool, from string, class Class, n int64) ([]federation.Route, *queued) {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	routes := s.routes(allowed, from, class)
	if len(routes) == 0 {
		return nil, &queued{q: &s.queues}
	}
	return routes, s.queue(routes[0].Next(), class, n)
}

// lineWait is how long a fetch of class would wait behind this node's
// queue on the line from region from, beyond the time its bytes take to
// be filled at the neighbour anyway: the queued bytes at this node's
// share of the line's budget (the budget divided among the nodes pulling
// over it), less the neighbour's fill time. The queue includes fetches
// still being filled; while they fill, the bytes ahead of them cross, so
// about a fill time's worth of queue is the pipeline that keeps the line
// busy, not a wait.
func (s *Source) lineWait(from string, class Class) time.Duration {
	queued, fill := s.queues.ahead(from, class)
	if queued <= 0 {
		return 0
	}
	l, ok := s.cfg.Topology.LineBetween(from, s.cfg.Region)
	if !ok || l.Budget <= 0 {
		return 0
	}
	share := float64(l.Budget) / float64(s.pullers(Direction{From: from, To: s.cfg.Region}))
	return max(0, time.Duration(float64(queued)/share*float64(time.Second))-fill)
}

// pullers is the number of this region's nodes pulling over dir, as its
// governor last counted them, or every member when it has not said.
func (s *Source) pullers(dir Direction) int {
	n := 0
	if s.cfg.Budget != nil {
		if b := s.cfg.Budget(dir); b != nil {
			n = b.Pullers()
		}
	}
	if n <= 0 {
		n = len(s.members(s.cfg.Region))
	}
	return max(1, n)
}

// lineLoad is the route weight's load term for class: for a line into
// this region, 1 - spillWait/wait once this node's wait behind its queue
// on it passes spillWait (so the line weighs wait/spillWait times its idle
// weight), else 0. Lines further up a route are not weighed by load: their
// queues are other regions' to know.
func (s *Source) lineLoad(class Class) func(l federation.Line, from, to string) float64 {
	return func(l federation.Line, from, to string) float64 {
		if to != s.cfg.Region {
			return 0
		}
		w := s.lineWait(from, class)
		if w <= spillWait {
			return 0
		}
		return 1 - float64(spillWait)/float64(w)
	}
}
