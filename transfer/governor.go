package transfer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// governor grants the bytes of one line direction to every node of the
// receiving region while this node holds the direction's lease. Its loop
// owns the grant queue; the subscription's handler only decodes requests
// and hands them over.
type governor struct {
	b     *Budget
	term  uint64       // random per election: tickets are only valid in the term that gave them
	born  time.Time    // until counts from here, on the monotonic clock
	until atomic.Int64 // nanoseconds after born: no grant after this unless the lease is refreshed
	in    chan grantCall
	sub   *nats.Subscription
	// asked is when each node last asked for a grant; owned by the loop,
	// like ledger.
	asked  map[string]time.Time
	ledger *ledger
	called time.Time // when callBack last announced; owned by the loop
	stop   context.CancelFunc
	done   chan struct{}
}

// grantCall is one request as the governor received it.
type grantCall struct {
	req   grantRequest
	reply string
}

// startGovernor subscribes to the direction's grant requests and starts
// serving them; the subscription is live at the server when it returns.
func startGovernor(b *Budget, term uint64, until time.Time) (*governor, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	g := &governor{b: b, term: term, born: time.Now(), in: make(chan grantCall), stop: cancel, done: make(chan struct{}), asked: map[string]time.Time{}, ledger: newLedger(b.cfg.Rate)}
	onWay := b.cfg.RTT + windowSlack
	g.ledger.inherit(int64(float64(b.cfg.Rate)*onWay.Seconds()), g.born, onWay)
	g.extend(until)
	sub, err := b.cfg.Conn.Subscribe(b.grants, func(m *nats.Msg) { g.receive(ctx, m) })
	if err == nil {
		err = b.cfg.Conn.FlushTimeout(governorKVTimeout)
	}
	if err != nil {
		if sub != nil {
			sub.Unsubscribe()
		}
		cancel()
		return nil, fmt.Errorf("subscribe to %s: %w", b.grants, err)
	}
	g.sub = sub
	go g.run(ctx)
	return g, nil
}

// extend moves the end of the governor's term after a lease refresh.
func (g *governor) extend(until time.Time) { g.until.Store(int64(until.Sub(g.born))) }

// expired reports whether the governor's lease may have run out.
func (g *governor) expired() bool { return int64(time.Since(g.born)) >= g.until.Load() }

// close stops granting, tells every waiter to ask again (whoever governs
// next) and waits for the loop. Requests already delivered to the
// subscription are answered too, "requeue" like the queue's waiters:
// unsubscribing at once would drop them, and each of their nodes would
// wait grantRequestTimeout (1.5 s) before asking anyone else.
func (g *governor) close() {
	g.stop() // the loop answers its queue; receive answers what comes after
	<-g.done
	if g.b.cfg.Conn.Status() != nats.CONNECTED {
		g.sub.Unsubscribe() // no answer can go out anyway
		return
	}
	closed := g.sub.StatusChanged(nats.SubscriptionClosed)
	if err := g.sub.Drain(); err != nil {
		g.sub.Unsubscribe()
		return
	}
	t := time.NewTimer(governorKVTimeout)
	defer t.Stop()
	select {
	case <-closed: // the server sends no more, and every delivered request was answered
	case <-t.C: // NATS went away meanwhile; the requests left are lost with it
		g.sub.Unsubscribe()
	}
}

func (g *governor) receive(ctx context.Context, m *nats.Msg) {
	var req grantRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		if m.Reply != "" {
			g.answer(m.Reply, grantReply{Verdict: verdictInvalid, Error: err.Error()})
		}
		return
	}
	if m.Reply == "" && req.Bytes != 0 {
		return // only a report of arrived bytes needs no answer
	}
	select {
	case g.in <- grantCall{req: req, reply: m.Reply}:
	case <-ctx.Done():
		// Closing: no place in a line that is gone; ask again at once,
		// whoever governs next.
		if m.Reply != "" {
			g.answer(m.Reply, grantReply{Verdict: verdictRequeue, Term: g.term})
		}
	}
}

func (g *governor) run(ctx context.Context) {
	defer close(g.done)
	q := newGrantQueue(g.b.cfg.Rate, grantQueueLimit, time.Now()) // empty: a new governor has no burst to spend
	granted := func(w grantWaiter) {
		now := time.Now()
		g.ledger.grant(w.node, w.bytes, now)
		g.answer(w.reply, grantReply{Verdict: verdictGranted, Pullers: g.pullers(now)})
	}
	requeue := func(w grantWaiter) {
		g.answer(w.reply, grantReply{Verdict: verdictRequeue, Term: g.term, Ticket: w.ticket})
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(governorMaxHold / 4)
	defer sweep.Stop()
	for {
		if g.expired() {
			q.drain(requeue)
		} else if wait := q.grant(time.Now(), g.ledger.allow, granted); wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			q.drain(requeue)
			return
		case c := <-g.in:
			g.take(q, c)
		case <-timer.C:
		case t := <-sweep.C:
			g.ledger.forget(t)
			q.evict(func(w grantWaiter) bool { return t.Sub(w.arrived) >= governorMaxHold }, requeue)
		}
	}
}

// pullerWindow is how recently a node must have asked for a grant to
// count as pulling over the direction.
const pullerWindow = time.Second

// pullers counts the nodes that asked for grants within pullerWindow
// (at least 1: the one being answered), and forgets the others.
func (g *governor) pullers(now time.Time) int {
	n := 0
	for node, at := range g.asked {
		if now.Sub(at) > pullerWindow {
			delete(g.asked, node)
			continue
		}
		n++
	}
	return max(n, 1)
}

// take queues one request, or answers it at once.
func (g *governor) take(q *grantQueue, c grantCall) {
	r := c.req
	g.ledger.heard(r.Node, r.Arrived, time.Now())
	if r.Static > 0 {
		// Granted by its static share within the last second: as if
		// just granted here, on their way until reported.
		g.ledger.grant(r.Node, r.Static, time.Now())
		g.callBack(time.Now())
	}
	if c.reply == "" {
		return // a report: the node has nothing on its way
	}
	if r.Node != "" {
		g.asked[r.Node] = time.Now()
	}
	switch {
	case !r.Class.valid() || r.Bytes <= 0 || r.Bytes > MaxGrant:
		g.answer(c.reply, grantReply{Verdict: verdictInvalid, Error: fmt.Sprintf("class %d, %d bytes: want a class and 1 to %d bytes", int(r.Class), r.Bytes, MaxGrant)})
		return
	case g.expired():
		g.answer(c.reply, grantReply{Verdict: verdictBusy}) // the lease is in doubt; the election decides shortly
		return
	}
	ticket := r.Ticket
	if r.Term != g.term {
		ticket = 0 // a place in another governor's line
	}
	w := grantWaiter{class: r.Class, bytes: r.Bytes, ticket: ticket, arrived: time.Now(), reply: c.reply, node: r.Node}
	if !q.add(w, w.arrived) {
		g.answer(c.reply, grantReply{Verdict: verdictBusy})
	}
}

// callBack announces this governor again when a node came back to it
// from its static share: the region's other nodes left it at the same
// time (NATS, or the governor, was away) and would otherwise stay on
// their static shares until their next probe, granting what the
// governor cannot count, while it grants to the node that is back. On
// the news they come back at once and say what their shares granted.
// At most one announcement per callBackEvery.
func (g *governor) callBack(now time.Time) {
	if now.Sub(g.called) < callBackEvery {
		return
	}
	g.called = now
	if g.b.cfg.Conn.Status() != nats.CONNECTED {
		return
	}
	data, _ := json.Marshal(governorNews{Node: g.b.cfg.NodeID, Term: g.term})
	g.b.cfg.Conn.Publish(g.b.news, data)
}

// callBackEvery spaces the governor's calls back (callBack).
const callBackEvery = 100 * time.Millisecond

func (g *governor) answer(reply string, r grantReply) {
	data, err := json.Marshal(r)
	if err != nil {
		return // cannot happen: plain fields
	}
	// A lost answer costs the client one grantRequestTimeout, after which it
	// uses its static share; nothing to do here.
	g.b.cfg.Conn.Publish(reply, data)
}
