package transfer

import (
	"slices"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
)

// The federation test's mesh: a holds the lake; a-b is the cheap line
// into b (weight 20+10+20 = 50), a-c-b the next route (50 + 4+10+1 = 65),
// so a fetch into b spills to it once its wait on a-b passes 65/50 s.
const loadTopology = `mesh: t
regions:
  - name: a
  - name: b
  - name: c
lines:
  - between: [a, b]
    capacity: 10Gbps
    budget: 8MB/s
    rtt: 20ms
    cost_per_gb: 0.02
  - between: [a, c]
    capacity: 10Gbps
    budget: 400MB/s
    rtt: 20ms
    cost_per_gb: 0.02
  - between: [b, c]
    capacity: 10Gbps
    budget: 400MB/s
    rtt: 4ms
    cost_per_gb: 0.001
mounts:
  - path: /lake
    ufs: file:///tmp/lake
    region: a
`

func loadSource(t *testing.T, members int) *Source {
	t.Helper()
	topo, err := federation.Parse("topology.yaml", []byte(loadTopology))
	if err != nil {
		t.Fatal(err)
	}
	peers, err := NewPeers(nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := make([]region.Member, members)
	for i := range ms {
		ms[i] = region.Member{ID: string(rune('p' + i)), Region: "b"}
	}
	return NewSource(SourceConfig{Topology: topo, Region: "b", NodeID: "p", Peers: peers,
		Members: func(r string) []region.Member { return ms }})
}

func firstRoute(s *Source, class Class) string {
	rs := s.routes(nil, "a", class)
	if len(rs) == 0 {
		return "none"
	}
	return rs[0].String()
}

func TestRoutesSpillOnlyPastTheWait(t *testing.T) {
	// Two members, no governor: this node's share of a-b is 4 MB/s, so a
	// queue of 4 MB is a wait of 1 s.
	s := loadSource(t, 2)
	const second = 4_000_000
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("idle: first route %s, want a -> b", got)
	}

	// 1.25 s of queue: the line weighs 1.25 x 50 = 62.5 < 65, it stays.
	q1 := s.queue("a", Interactive, second*5/4)
	if w := s.lineWait("a", Interactive); w < 1240*time.Millisecond || w > 1260*time.Millisecond {
		t.Fatalf("wait behind %d queued bytes at 4 MB/s: %s, want 1.25s", int64(second*5/4), w)
	}
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("1.25 s queued: first route %s, want a -> b (below the 1.3 s spill point)", got)
	}

	// 1.5 s: 75 > 65, the fetch spills to a -> c -> b.
	q2 := s.queue("a", Interactive, second/4)
	if got := firstRoute(s, Interactive); got != "a -> c -> b" {
		t.Fatalf("1.5 s queued: first route %s, want a -> c -> b", got)
	}

	// The queue drains: back to the cheap line.
	q1.crossed(second / 2)
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("half a second crossed: first route %s, want a -> b", got)
	}
	q1.done()
	q2.done()
	q2.done()
	if w := s.lineWait("a", Interactive); w != 0 {
		t.Fatalf("every fetch done: wait %s, want 0", w)
	}
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("drained: first route %s, want a -> b", got)
	}
}

func TestRoutesWeighTheClassesAhead(t *testing.T) {
	// A preload queue does not delay an interactive fetch (the budget
	// serves interactive first), but an interactive queue delays a
	// preload fetch.
	s := loadSource(t, 2)
	const second = 4_000_000
	pre := s.queue("a", Preload, 3*second)
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("3 s of preload queued: interactive route %s, want a -> b", got)
	}
	if got := firstRoute(s, Preload); got != "a -> c -> b" {
		t.Fatalf("3 s of preload queued: preload route %s, want a -> c -> b", got)
	}
	pre.done()
	s.queue("a", Interactive, 3*second)
	if got := firstRoute(s, Preload); got != "a -> c -> b" {
		t.Fatalf("3 s of interactive queued: preload route %s, want a -> c -> b", got)
	}
}

func TestRoutesWaitFollowsThePullers(t *testing.T) {
	// One member: the node has the whole 8 MB/s, so 8 MB queued is 1 s and
	// does not spill; with four members the same queue is 4 s and does.
	if got := func() string {
		s := loadSource(t, 1)
		s.queue("a", Interactive, 8_000_000)
		return firstRoute(s, Interactive)
	}(); got != "a -> b" {
		t.Fatalf("one member, 1 s queued: route %s, want a -> b", got)
	}
	s := loadSource(t, 4)
	s.queue("a", Interactive, 8_000_000)
	if got := firstRoute(s, Interactive); got != "a -> c -> b" {
		t.Fatalf("four members, 4 s queued: route %s, want a -> c -> b", got)
	}
}

func TestRouteQueuedCountsTheFetchAsItChooses(t *testing.T) {
	// Fetches that choose their routes one after the other (a reader's
	// readahead) each see the ones before: 0.6 s per fetch at 4 MB/s, so
	// the first three take a-b (waits 0, 0.6 and 1.2 s, below the 1.3 s
	// spill point) and the fourth spills.
	s := loadSource(t, 2)
	var got []string
	var qds []*queued
	for i := 0; i < 4; i++ {
		rs, qd := s.routeQueued(nil, "a", Interactive, 2_400_000)
		got = append(got, rs[0].String())
		qds = append(qds, qd)
	}
	want := []string{"a -> b", "a -> b", "a -> b", "a -> c -> b"}
	if !slices.Equal(got, want) {
		t.Fatalf("routes of four fetches chosen in a row: %q, want %q", got, want)
	}
	if w := s.lineWait("a", Interactive); w < 1790*time.Millisecond || w > 1810*time.Millisecond {
		t.Fatalf("three fetches of 0.6 s queued on a-b: wait %s, want 1.8s", w)
	}
	for _, qd := range qds {
		qd.done()
	}
	if w := s.lineWait("a", Interactive); w != 0 {
		t.Fatalf("every fetch done: wait %s, want 0", w)
	}
}

func TestRoutesAllowTheNeighboursFillTime(t *testing.T) {
	// The neighbour takes 1 s to fill a fetch: a queue of 2 s at this
	// node's share is then 1 s of wait, below the 1.3 s spill point, and
	// 2.5 s of queue (1.5 s of wait) spills.
	s := loadSource(t, 2)
	const second = 4_000_000
	s.queues.filled("a", time.Second)
	s.queue("a", Interactive, 2*second)
	if w := s.lineWait("a", Interactive); w < 990*time.Millisecond || w > 1010*time.Millisecond {
		t.Fatalf("2 s queued, 1 s fill: wait %s, want 1s", w)
	}
	if got := firstRoute(s, Interactive); got != "a -> b" {
		t.Fatalf("2 s queued, 1 s fill: route %s, want a -> b", got)
	}
	s.queue("a", Interactive, second/2)
	if got := firstRoute(s, Interactive); got != "a -> c -> b" {
		t.Fatalf("2.5 s queued, 1 s fill: route %s, want a -> c -> b", got)
	}
	// Fills get faster (smoothed): the same queue waits longer.
	for i := 0; i < 20; i++ {
		s.queues.filled("a", 0)
	}
	if w := s.lineWait("a", Interactive); w < 2400*time.Millisecond {
		t.Fatalf("2.5 s queued, fills now instant: wait %s, want about 2.5s", w)
	}
}
