package transfer

// Line budgets (to merge into doc.go).
//
// Every direction of a line has one budget in bytes per second, shared by
// all nodes of the receiving region that move bytes over it. The nodes
// that hold a Budget for a Direction elect one governor among themselves:
// a lease in the JetStream KV bucket lakemesh_<mesh>_governors (memory
// storage, one value per key), key <from>.<to>, created if absent with a
// per-key TTL and refreshed every Lease/3 by compare-and-set on its
// revision (a publish to the key's subject that expects the last revision
// and sets the TTL again, since KV Update cannot carry a TTL). A governor
// that cannot refresh stops granting 200ms before its lease can have
// expired on the server, so two governors never grant at once. A node that
// dies without Close is replaced about a lease later; a node that closes
// hands over at once (it deletes the lease and says so on the news subject
// lakemesh.<mesh>.budget.<from>.<to>.governor, which candidates listen to).
//
// The governor runs a token bucket at the budget's rate, starting empty and
// holding at most 20ms of budget beyond the next grant, so the bytes
// granted in any window of T seconds are at most Rate*(T+0.02) + MaxGrant. It queues requests
// strictly by class, FIFO (by ticket) within a class; a class gets whatever
// the classes above it leave. A request is one NATS request/reply on
// lakemesh.<mesh>.budget.<from>.<to>.grant: the governor replies when the
// bytes are granted, or after at most governorMaxHold (0.5s) with
// "requeue" and the request's ticket, which keeps its place when the
// client asks again; a full class queue replies "busy" and the client asks
// again 10ms later. Because a live governor always replies within
// governorMaxHold, no responders or no reply within grantRequestTimeout
// (1.5s) means the governor is unreachable, never "still waiting".
//
// A node that cannot reach a governor takes its bytes from a local bucket
// of the same kind (priority too) at its static share
// (BudgetConfig.StaticShare, never "no limit"), starting empty. It goes
// back to the governor when a new governor announces itself on the news
// subject, or when one of its probes (an Acquire that asks the governor
// first, at most one per 0.5s) is answered; the local waiters then ask the
// governor. The static shares of a region should add up to at most the
// budget, so that the budget holds while there is no governor too.
//
// Goroutines: per Budget, the election (which starts and stops the
// governor's loop while this node leads) and the static fallback loop; all
// stop in Close, which waits for them. Queues are bounded per class (256).
// Locks: Budget.modeMu only serialises entering the fallback and is never
// held with another lock; the queues have none (one goroutine owns each).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxGrant is the most bytes one Acquire may ask for; callers split bigger
// transfers, so that no class waits behind a huge grant.
const MaxGrant = 256 << 10

// ErrBudgetClosed is returned by Acquire after Close.
var ErrBudgetClosed = errors.New("line budget closed")

const (
	budgetDefaultLease  = 3 * time.Second
	governorMaxHold     = 500 * time.Millisecond        // a governor answers every request within this
	grantRequestTimeout = governorMaxHold + time.Second // no answer for this long: the governor is unreachable
	// budgetProbeInterval is how often a node on its static share asks the
	// governor. A node that fell back just as a new governor announced
	// itself hears of it only by asking, and meanwhile spends its static
	// share on top of the governor's grants: at 500 ms, a failover's
	// busiest second measured 1.18x the budget.
	budgetProbeInterval = 100 * time.Millisecond
	budgetBusyBackoff   = 10 * time.Millisecond  // pause before asking again after "busy"
	grantQueueLimit     = 256                    // waiters per class, in the governor and in the fallback
	governorKVTimeout   = 2 * time.Second        // one election call to JetStream
	governorMarkerTTL   = time.Minute            // how long the bucket keeps the marker of an expired lease
	governorLeaseMargin = 200 * time.Millisecond // a governor stops this much before its lease can expire
)

// Direction is one direction of one line: bytes flow From -> To.
type Direction struct{ From, To string }

// String returns "from->to".
func (d Direction) String() string { return d.From + "->" + d.To }

// BudgetConfig is what a node's Budget for one line direction needs.
type BudgetConfig struct {
	Mesh string
	Dir  Direction
	Rate int64 // the direction's budget, bytes per second (> 0)
	// RTT is the line's round trip: a newly elected governor counts
	// Rate × (RTT + windowSlack), the most the region's nodes may have
	// been granted by its predecessor (or their static shares) without
	// it having arrived, as still on its way (ledger).
	RTT time.Duration
	// Conn is the NATS of the region the governor lives in: the receiving
	// region, Dir.To.
	Conn   *nats.Conn
	NodeID string // this node, for leadership
	// StaticShare returns the rate this node may use on its own when no
	// governor can be reached (e.g. Rate / the number of nodes in the
	// region); it is asked each time the node falls back. nil, or a result
	// <= 0: Rate/4. A result above Rate counts as Rate.
	StaticShare func() int64
	// Lease is how long a governor's leadership lasts unless refreshed,
	// rounded up to whole seconds (the server's TTL resolution); default 3s.
	// Every node of a direction should use the same lease.
	Lease  time.Duration
	Logger *slog.Logger // nil discards
}

// Budget is one node's handle on the budget of one line direction: it
// takes grants from the direction's governor (which it may be), or from
// its static share while no governor can be reached.
type Budget struct {
	cfg      BudgetConfig
	log      *slog.Logger
	js       jetstream.JetStream
	identity []byte // our lease's value: node and instance
	bucket   string
	key      string
	grants   string // subject of grant requests
	news     string // subject of governor elections and resignations
	newsSub  *nats.Subscription

	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	modeMu       sync.Mutex // serialises entering the fallback
	fallback     atomic.Bool
	fallbackGen  atomic.Uint64 // counts entries into the fallback
	share        atomic.Int64  // static share of the current fallback
	lastProbe    atomic.Int64  // unix nanoseconds
	governorBack atomic.Bool   // a governor announced itself
	staticIn     chan grantWaiter
	staticWake   chan struct{}
	electNow     chan struct{}

	leader  atomic.Bool
	pullers atomic.Int64 // the nodes pulling on the direction, as the governor last said; 0: not known
	arrived atomic.Int64 // granted bytes that arrived, all told (reported to the governor)
	onWay   atomic.Int64 // bytes the governor granted that have not arrived

	staticMu  sync.Mutex
	staticLog []ledgerPoint // static-share grants of the last second (v: bytes)
	lastAsk   atomic.Int64  // unix nanoseconds of the last message to the governor
	stats     budgetCounters
}

// BudgetStats are one node's figures for one line direction.
type BudgetStats struct {
	Classes        [classCount]ClassStats // indexed by Class
	GovernorGrants int64                  // grants answered by the governor
	GovernorBytes  int64
	StaticGrants   int64 // grants from the static share
	StaticBytes    int64
	Leader         bool // this node is the direction's governor
	Fallback       bool // this node is on its static share
}

// ClassStats are one class's granted Acquire calls.
type ClassStats struct {
	Grants int64
	Bytes  int64
	Waited time.Duration // total time they waited
}

type budgetCounters struct {
	grants, bytes, waited         [classCount]atomic.Int64
	governorGrants, governorBytes atomic.Int64
	staticGrants, staticBytes     atomic.Int64
}

// NewBudget joins the budget of cfg.Dir: it becomes a candidate for the
// direction's governor and may Acquire at once. ctx bounds the setup only;
// the Budget lives until Close. An unreachable NATS is not an error: the
// node starts on its static share.
func NewBudget(ctx context.Context, cfg BudgetConfig) (*Budget, error) {
	switch {
	case cfg.Mesh == "":
		return nil, errors.New("line budget: no mesh name")
	case cfg.Dir.From == "" || cfg.Dir.To == "" || cfg.Dir.From == cfg.Dir.To:
		return nil, fmt.Errorf("line budget %q: a direction needs two different regions", cfg.Dir)
	case cfg.Rate <= 0:
		return nil, fmt.Errorf("line budget %s: rate %d bytes/s; it must be positive", cfg.Dir, cfg.Rate)
	case cfg.Conn == nil:
		return nil, fmt.Errorf("line budget %s: no NATS connection", cfg.Dir)
	case cfg.NodeID == "":
		return nil, fmt.Errorf("line budget %s: no node ID", cfg.Dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("line budget %s: %w", cfg.Dir, err)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = budgetDefaultLease
	}
	cfg.Lease = ((cfg.Lease + time.Second - 1) / time.Second) * time.Second
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("line budget %s: %w", cfg.Dir, err)
	}
	line := bucketSafe(cfg.Dir.From) + "." + bucketSafe(cfg.Dir.To)
	b := &Budget{
		cfg:        cfg,
		log:        cfg.Logger.With("line", cfg.Dir.String(), "node", cfg.NodeID),
		js:         js,
		identity:   []byte(cfg.NodeID + " " + rand.Text()),
		bucket:     governorBucket(cfg.Mesh, cfg.Dir.To),
		key:        line,
		grants:     "lakemesh." + bucketSafe(cfg.Mesh) + ".budget." + line + ".grant",
		news:       "lakemesh." + bucketSafe(cfg.Mesh) + ".budget." + line + ".governor",
		staticIn:   make(chan grantWaiter),
		staticWake: make(chan struct{}, 1),
		electNow:   make(chan struct{}, 1),
	}
	b.share.Store(b.staticShare())
	b.newsSub, err = cfg.Conn.Subscribe(b.news, b.hearNews)
	if err != nil {
		return nil, fmt.Errorf("line budget %s: subscribe to %s: %w", cfg.Dir, b.news, err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(2)
	go b.runStatic()
	go (&governorElection{b: b}).run()
	return b, nil
}

// Acquire blocks until n bytes (1 to MaxGrant) of class may cross the
// line, and returns how long it waited. A request the governor cannot
// answer is served from the static share instead; only ctx, Close
// (ErrBudgetClosed) or a bad argument make it fail.
func (b *Budget) Acquire(ctx context.Context, class Class, n int64) (waited time.Duration, err error) {
	start := time.Now()
	if b.ctx.Err() != nil {
		return 0, ErrBudgetClosed
	}
	if !class.valid() {
		return 0, fmt.Errorf("acquire on line %s: unknown class %d", b.cfg.Dir, int(class))
	}
	if n <= 0 || n > MaxGrant {
		return 0, fmt.Errorf("acquire %d bytes on line %s: a grant is 1 to %d bytes (MaxGrant); split the transfer", n, b.cfg.Dir, MaxGrant)
	}
	var place grantPlace
	for {
		if b.ctx.Err() != nil {
			return time.Since(start), ErrBudgetClosed
		}
		if err := ctx.Err(); err != nil {
			return time.Since(start), err
		}
		if !b.fallback.Load() || b.probeDue() {
			granted, err := b.askGovernor(ctx, class, n, &place)
			switch {
			case granted:
				return b.count(class, n, start, true), nil
			case err == nil: // requeued or busy: ask again
				continue
			case errors.Is(err, errGovernorUnreachable):
				b.enterFallback(err)
			default:
				return time.Since(start), err
			}
		}
		granted, err := b.acquireStatic(ctx, class, n)
		if err != nil {
			return time.Since(start), err
		}
		if granted {
			return b.count(class, n, start, false), nil
		}
	}
}

// Pullers is how many nodes of the region were pulling bytes over the
// direction lately, as the governor counted them with its last grant to
// this node; 0 when no governor has said (yet, or while on the static
// share). Nodes divide the line's window of granted bytes among them by
// it (see Source.window).
func (b *Budget) Pullers() int {
	if b.fallback.Load() {
		return 0
	}
	return int(b.pullers.Load())
}

// reportQuiet is how long a node's report of arrived bytes may wait for a
// grant request to ride on before it goes alone.
const reportQuiet = 10 * time.Millisecond

// Arrived says n granted bytes have arrived (or never will: the piece
// failed). The governor counts the bytes it granted as on their way until
// it hears so, and keeps what can arrive in any one second under the
// budget (see ledger); the running total rides on the next request, or
// goes alone when this node has nothing else on its way or has not asked
// for reportQuiet.
func (b *Budget) Arrived(n int64) {
	total := b.arrived.Add(n)
	left := b.onWay.Add(-n)
	if left < 0 {
		b.onWay.CompareAndSwap(left, 0) // bytes from the static share are not the governor's
	}
	quiet := time.Since(time.Unix(0, b.lastAsk.Load())) >= reportQuiet
	if (left > 0 && !quiet) || b.fallback.Load() || b.cfg.Conn.Status() != nats.CONNECTED {
		return
	}
	b.lastAsk.Store(time.Now().UnixNano())
	data, err := json.Marshal(grantRequest{Node: b.cfg.NodeID, Arrived: total})
	if err == nil {
		b.cfg.Conn.Publish(b.grants, data) // lost: the next request carries the total
	}
}

// Stats returns this node's figures.
func (b *Budget) Stats() BudgetStats {
	s := BudgetStats{
		GovernorGrants: b.stats.governorGrants.Load(),
		GovernorBytes:  b.stats.governorBytes.Load(),
		StaticGrants:   b.stats.staticGrants.Load(),
		StaticBytes:    b.stats.staticBytes.Load(),
		Leader:         b.leader.Load(),
		Fallback:       b.fallback.Load(),
	}
	for c := range s.Classes {
		s.Classes[c] = ClassStats{
			Grants: b.stats.grants[c].Load(),
			Bytes:  b.stats.bytes[c].Load(),
			Waited: time.Duration(b.stats.waited[c].Load()),
		}
	}
	return s
}

// Close stops the election, the governor if this node leads (handing the
// lease over at once) and the fallback, and waits for them. Acquire calls
// still waiting return ErrBudgetClosed.
func (b *Budget) Close() error {
	b.closeOnce.Do(func() {
		b.cancel()
		b.wg.Wait()
		b.newsSub.Unsubscribe() // fails only on a closed connection, where it is gone anyway
	})
	return nil
}

// governorBucket is the KV bucket that holds the leases of the governors
// of the lines into region (each governor lives in the region its bytes
// go to). The region is in the name so that regions' buckets, in their
// own JetStream domains joined by leaf connections, never share a name or
// the subjects under it.
func governorBucket(mesh, region string) string {
	return "lakemesh_" + bucketSafe(mesh) + "_" + bucketSafe(region) + "_governors"
}

func (b *Budget) count(class Class, n int64, start time.Time, governor bool) time.Duration {
	waited := time.Since(start)
	b.stats.grants[class].Add(1)
	b.stats.bytes[class].Add(n)
	b.stats.waited[class].Add(int64(waited))
	if governor {
		b.stats.governorGrants.Add(1)
		b.stats.governorBytes.Add(n)
	} else {
		b.stats.staticGrants.Add(1)
		b.stats.staticBytes.Add(n)
	}
	return waited
}

// errGovernorUnreachable marks a request no governor answered.
var errGovernorUnreachable = errors.New("line governor unreachable")

// grantPlace is a request's place in the governor's line, kept across
// "requeue" answers of the same governor.
type grantPlace struct{ term, ticket uint64 }

type grantRequest struct {
	Class  Class  `json:"class"`
	Bytes  int64  `json:"bytes"`
	Term   uint64 `json:"term,omitempty"`
	Ticket uint64 `json:"ticket,omitempty"`
	Node   string `json:"node,omitempty"` // who asks: the governor counts the nodes pulling
	// Arrived is the node's running total of granted bytes that arrived
	// (Budget.Arrived). A message with no reply subject and no bytes is
	// only that report.
	Arrived int64 `json:"arrived,omitempty"`
	// Static is what the node's static share granted in the last second,
	// said once after it comes back from it.
	Static int64 `json:"static,omitempty"`
}

type grantReply struct {
	Verdict string `json:"verdict"` // verdictGranted, verdictRequeue, verdictBusy or verdictInvalid
	Term    uint64 `json:"term,omitempty"`
	Ticket  uint64 `json:"ticket,omitempty"`
	Error   string `json:"error,omitempty"`
	// Pullers is how many nodes asked for grants on the direction in the
	// last pullerWindow (with a grant only).
	Pullers int `json:"pullers,omitempty"`
}

const (
	verdictGranted = "granted"
	verdictRequeue = "requeue" // held governorMaxHold; ask again with the ticket
	verdictBusy    = "busy"    // the class's queue is full
	verdictInvalid = "invalid"
)

// askGovernor makes one grant request. It returns granted, or nil for
// "ask again", or an error: the caller's, ErrBudgetClosed, or one that
// wraps errGovernorUnreachable.
func (b *Budget) askGovernor(ctx context.Context, class Class, n int64, place *grantPlace) (bool, error) {
	if s := b.cfg.Conn.Status(); s != nats.CONNECTED {
		return false, fmt.Errorf("%w: NATS is %s", errGovernorUnreachable, s)
	}
	data, err := json.Marshal(grantRequest{Class: class, Bytes: n, Term: place.term, Ticket: place.ticket, Node: b.cfg.NodeID, Arrived: b.arrived.Load(), Static: b.staticRecent()})
	if err != nil {
		return false, err
	}
	rctx, cancel := context.WithTimeout(ctx, grantRequestTimeout)
	defer cancel()
	b.lastAsk.Store(time.Now().UnixNano())
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	msg, err := b.cfg.Conn.RequestWithContext(rctx, b.grants, data)
	switch {
	case b.ctx.Err() != nil:
		return false, ErrBudgetClosed
	case ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		return false, fmt.Errorf("%w: %w", errGovernorUnreachable, err)
	}
	var r grantReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return false, fmt.Errorf("%w: unreadable answer: %w", errGovernorUnreachable, err)
	}
	b.leaveFallback("the governor answered")
	switch r.Verdict {
	case verdictGranted:
		b.onWay.Add(n)
		if r.Pullers > 0 {
			b.pullers.Store(int64(r.Pullers))
		}
		return true, nil
	case verdictRequeue:
		place.term, place.ticket = r.Term, r.Ticket
		return false, nil
	case verdictBusy:
		return false, b.pause(ctx, budgetBusyBackoff)
	default:
		return false, fmt.Errorf("acquire %d bytes of %s on line %s: governor says %s: %s", n, class, b.cfg.Dir, r.Verdict, r.Error)
	}
}

func (b *Budget) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrBudgetClosed
	}
}

// hearNews runs on the news subscription's goroutine (owned by the
// connection): it only flags and wakes the loops that act on it.
func (b *Budget) hearNews(m *nats.Msg) {
	var n governorNews
	if json.Unmarshal(m.Data, &n) != nil {
		return
	}
	if n.Resigned {
		wakeLoop(b.electNow)
		return
	}
	b.governorBack.Store(true)
	wakeLoop(b.staticWake)
}

// governorNews is published on a direction's news subject when a node
// becomes its governor or resigns, and when the governor calls the nodes
// on their static shares back (governor.callBack).
type governorNews struct {
	Node     string `json:"node"`
	Term     uint64 `json:"term"`
	Resigned bool   `json:"resigned,omitempty"`
}

func wakeLoop(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
