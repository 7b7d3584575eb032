package transfer

import (
	"slices"
	"time"
)

// grantWaiter is one request for bytes waiting in a grantQueue. The
// governor answers it on NATS (reply); the static fallback on a channel
// (answer), unless the caller gave up (done).
type grantWaiter struct {
	class   Class
	bytes   int64
	ticket  uint64    // place in line within the class; lower is older
	node    string    // who asked (the governor's ledger)
	arrived time.Time // when this queue received it
	reply   string
	answer  chan grantAnswer
	done    <-chan struct{}
}

// grantQueue is a token bucket at rate that serves waiters strictly by
// class, and by ticket within a class. It is owned by one goroutine and
// has no lock.
//
// The bucket holds at most burst, plus the bytes of the waiter at the head
// while there is one (so a grant bigger than the burst can be saved up
// for): whatever the demand, the bytes granted in any window of T seconds
// are at most rate*T + burst + MaxGrant. The burst lets a late wake-up
// catch up instead of losing budget. The bucket starts empty, so a new
// governor or a node entering its static share cannot spend a burst it
// did not wait for.
type grantQueue struct {
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	at     time.Time // when tokens was last brought up to date
	queues [classCount][]grantWaiter
	limit  int    // waiters per class
	last   uint64 // last ticket handed out
}

// grantBurstTime is how much budget the bucket keeps beyond the next
// grant: enough to cover a request's round trip to the governor or a late
// timer, small enough to stay within a few percent of any one-second
// window.
const grantBurstTime = 10 * time.Millisecond

func newGrantQueue(rate int64, limit int, now time.Time) *grantQueue {
	q := &grantQueue{limit: limit}
	for c := range q.queues {
		q.queues[c] = make([]grantWaiter, 0, limit)
	}
	q.reset(rate, now)
	return q
}

// reset sets the rate and empties the bucket.
func (q *grantQueue) reset(rate int64, now time.Time) {
	q.rate = float64(max(rate, 1))
	q.burst = q.rate * grantBurstTime.Seconds()
	q.tokens, q.at = 0, now
}

// ticket returns a place in line behind every ticket given so far.
func (q *grantQueue) ticket() uint64 {
	q.last++
	return q.last
}

// add queues w in its class, in ticket order (a ticket of 0 gets a new
// one). It returns false when the class's queue is full.
func (q *grantQueue) add(w grantWaiter, now time.Time) bool {
	queue := q.queues[w.class]
	if len(queue) >= q.limit {
		return false
	}
	q.refill(now)
	if w.ticket == 0 || w.ticket > q.last {
		w.ticket = q.ticket()
	}
	i, _ := slices.BinarySearchFunc(queue, w.ticket, func(x grantWaiter, t uint64) int {
		switch {
		case x.ticket < t:
			return -1
		case x.ticket > t:
			return 1
		}
		return 0
	})
	q.queues[w.class] = slices.Insert(queue, i, w)
	return true
}

// head returns the class of the first waiter to serve, or false.
func (q *grantQueue) head() (Class, bool) {
	for c := range q.queues {
		if len(q.queues[c]) > 0 {
			return Class(c), true
		}
	}
	return 0, false
}

func (q *grantQueue) pop(c Class) grantWaiter {
	w := q.queues[c][0]
	q.queues[c] = slices.Delete(q.queues[c], 0, 1)
	return w
}

// refill adds the tokens earned since the last refill, up to what the
// bucket may hold now.
func (q *grantQueue) refill(now time.Time) {
	if now.After(q.at) {
		q.tokens += now.Sub(q.at).Seconds() * q.rate
		q.at = now
	}
	limit := q.burst
	if c, ok := q.head(); ok {
		limit += float64(q.queues[c][0].bytes)
	}
	q.tokens = min(q.tokens, limit)
}

// grant serves waiters while the tokens last and gate (when not nil)
// allows, calling serve for each, and returns how long until the next
// waiter can be served (0: none waits). Waiters whose callers gave up are
// dropped without spending tokens.
func (q *grantQueue) grant(now time.Time, gate func(n int64, now time.Time) (bool, time.Duration), serve func(grantWaiter)) time.Duration {
	for {
		c, ok := q.head()
		if !ok {
			q.refill(now)
			return 0
		}
		w := q.queues[c][0]
		if w.gone() {
			q.pop(c)
			continue
		}
		q.refill(now)
		need := float64(w.bytes)
		if q.tokens < need {
			wait := time.Duration((need - q.tokens) / q.rate * float64(time.Second))
			return max(wait, time.Microsecond)
		}
		if gate != nil {
			if ok, wait := gate(w.bytes, now); !ok {
				return max(wait, time.Microsecond)
			}
		}
		q.tokens -= need
		serve(q.pop(c))
	}
}

// evict removes every waiter for which out is true, calling each.
func (q *grantQueue) evict(out func(grantWaiter) bool, each func(grantWaiter)) {
	for c := range q.queues {
		q.queues[c] = slices.DeleteFunc(q.queues[c], func(w grantWaiter) bool {
			if out(w) {
				each(w)
				return true
			}
			return false
		})
	}
}

// drain removes every waiter, calling each.
func (q *grantQueue) drain(each func(grantWaiter)) {
	q.evict(func(grantWaiter) bool { return true }, each)
}

func (w grantWaiter) gone() bool {
	if w.done == nil {
		return false
	}
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}
