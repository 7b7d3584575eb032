package transfer

import "time"

// arrivalSlack is how far above the budget the bytes arriving over a line
// in any one second may go: the governor's cap on them is the budget ×
// (1 + arrivalSlack).
const arrivalSlack = 0.04

// ledgerForget is how long the governor counts a granted byte as on its
// way without a report that it arrived, and how long a node may stay
// silent before the governor forgets it: the node died, its report was
// lost, or it does not report (a piece takes far less).
const ledgerForget = 3 * time.Second

// ledger is a governor's account of the bytes it granted that have not
// arrived yet, and the gate that keeps the bytes arriving in any one
// second under a cap, however the senders stall and catch up.
//
// The bytes that arrive in a second [t, t+1s] are at most those on their
// way at t plus those granted during it. Write O(t) for the bytes granted
// and not reported arrived at t (never less than the bytes truly on their
// way: a report only comes after the bytes are here) and G(t) for all the
// bytes granted up to t. A grant of n at u keeps, for every t in
// [u-1s, u], O(t) + G(u) + n - G(t) <= cap. A grant adds to O and G
// alike and a report only lowers O, so v = O - G never rises and the
// tightest t is u-1s: the gate is v(u-1s) + G(u) + n <= cap, in words:
// what was on its way a second ago plus everything granted since.
//
// Nodes report the bytes that arrived as a running total (so a lost
// report costs nothing once the next one comes). A node back from its
// static share says what that share granted in the last second, which
// the governor books as just granted. What a previous governor granted
// is not reported: a new governor counts the most that can be on its way
// (every node's window full, inherit) for as long as it takes to arrive.
// The other nodes, still on their static shares when the first comes
// back, are called back by the governor at once (governor.callBack).
//
// Owned by the governor's loop; no lock.
type ledger struct {
	cap int64

	granted int64 // G: every byte granted by this governor
	out     int64 // O: the sum of the nodes' bytes on their way
	nodes   map[string]*ledgerNode
	past    []ledgerPoint // v after each change of it, oldest first
}

type ledgerNode struct {
	granted int64         // bytes this governor granted it
	recent  []ledgerPoint // granted before each grant of the last ledgerForget (v: granted)
	base    int64         // its arrived total when this governor first heard it
	arrived int64         // its latest arrived total
	out     int64         // its part of ledger.out
	heard   time.Time     // its latest request or report
	expires time.Time     // if set, nothing of it is on its way from then on
}

type ledgerPoint struct {
	at time.Time
	v  int64 // out - granted from at on
}

func newLedger(rate int64) *ledger {
	return &ledger{cap: int64(float64(rate) * (1 + arrivalSlack)), nodes: map[string]*ledgerNode{}}
}

// inheritedNode names the bytes granted before this governor.
const inheritedNode = "(granted before this governor)"

// inherit counts n bytes granted before this governor as on their way
// until now+d: the time they take to arrive when nothing stalls.
func (l *ledger) inherit(n int64, now time.Time, d time.Duration) {
	if n > 0 {
		l.heard(inheritedNode, 0, now)
		l.grant(inheritedNode, n, now)
		l.nodes[inheritedNode].expires = now.Add(d)
	}
}

// heard takes a node's running total of arrived bytes.
func (l *ledger) heard(node string, arrived int64, now time.Time) {
	if node == "" {
		return
	}
	n, ok := l.nodes[node]
	if !ok {
		n = &ledgerNode{base: arrived, arrived: arrived}
		l.nodes[node] = n
	}
	n.heard = now
	n.arrived = max(n.arrived, arrived)
	l.settle(n, now)
}

// grant books n bytes granted to node at now.
func (l *ledger) grant(node string, n int64, now time.Time) {
	nd, ok := l.nodes[node]
	if !ok {
		return // an unnamed caller (heard always comes first): not counted
	}
	l.granted += n
	nd.recent = append(nd.recent, ledgerPoint{at: now, v: nd.granted})
	nd.granted += n
	nd.heard = now
	l.settle(nd, now)
}

// settle brings a node's part of out up to date and records v when it
// fell.
func (l *ledger) settle(n *ledgerNode, now time.Time) {
	old := now.Add(-ledgerForget)
	k := 0
	for k < len(n.recent) && n.recent[k].at.Before(old) {
		k++
	}
	n.recent = n.recent[k:]
	var since int64 // granted within ledgerForget
	if len(n.recent) > 0 {
		since = n.granted - n.recent[0].v
	}
	out := max(0, min(since, n.granted-(n.arrived-n.base)))
	if !n.expires.IsZero() && !now.Before(n.expires) {
		out = 0
	}
	if out == n.out {
		return
	}
	before := l.out - l.granted
	l.out += out - n.out
	n.out = out
	if v := l.out - l.granted; v < before {
		l.past = append(l.past, ledgerPoint{at: now, v: v})
	}
}

// forget stops counting the bytes granted longer than ledgerForget ago,
// and the nodes silent that long.
func (l *ledger) forget(now time.Time) {
	for id, n := range l.nodes {
		l.settle(n, now)
		if now.Sub(n.heard) >= ledgerForget {
			delete(l.nodes, id)
		}
	}
}

// allow says whether n bytes may be granted at now, or how long until
// they may be without more reports.
func (l *ledger) allow(n int64, now time.Time) (bool, time.Duration) {
	edge := now.Add(-time.Second)
	// Drop the points no longer needed: the last one at or before edge
	// is v at edge.
	k := 0
	for k+1 < len(l.past) && !l.past[k+1].at.After(edge) {
		k++
	}
	l.past = l.past[k:]
	var v int64 // before the first point, nothing was on its way
	next := time.Duration(0)
	switch {
	case len(l.past) > 0 && !l.past[0].at.After(edge):
		v = l.past[0].v
		if len(l.past) > 1 {
			next = l.past[1].at.Sub(edge)
		}
	case len(l.past) > 0:
		next = l.past[0].at.Sub(edge)
	}
	if v+l.granted+n <= l.cap {
		return true, 0
	}
	if next <= 0 {
		next = 20 * time.Millisecond // only a report can help: look again soon
	}
	return false, next
}
