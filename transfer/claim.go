package transfer

// Exactly-once page claims.
//
// A page must cross into a region at most once while it stays cached there,
// however many nodes of the region miss it at the same moment. Inside one
// node the owner's singleflight already merges readers; across the nodes of
// a region the merge point is a claim in the region's JetStream key-value
// bucket (lakemesh_<mesh>_<region>_claims). KV gives the claim the three
// things it needs: create-if-absent and compare-and-swap by revision (so
// exactly one node wins any race), per-key TTL (so a claim dies with its
// holder without anyone deciding it did), and watches (so the losers wait
// for an event, not a poll). The bucket lives in the destination region,
// beside the nodes that race; no cross-region round trip is on the claim
// path.
//
// One KV key per page (the SHA-256 of the caller's opaque page key, so any
// key is KV-safe). The states of a key:
//
//	free     no value (never claimed, or a removal marker): the next Acquire
//	         creates a claim; among racers exactly one Create succeeds.
//	claimed  {state: claimed, node, addr, token, lease}: written with a
//	         per-message TTL of one lease, and rewritten (CAS on the last
//	         revision, new TTL) every lease/3 by the Claim's refresher until
//	         Land or Release. Other Acquires wait on a watch of the key.
//	landed   {state: landed, node, addr}: written by Land as a CAS on the
//	         claim's revision, with no TTL: it stays while the page is cached
//	         on that node. Acquire returns it as a Holder to read from.
//
// Transitions and failures:
//
//   - The claimer's transfer fails: Release purges the claim (CAS on its
//     revision); waiters see the removal and race to Create, one wins.
//   - The claimer dies (kill -9, partition): refreshes stop, the server
//     expires the claim after its lease and leaves a removal marker
//     (bucket LimitMarkerTTL), which wakes the waiters; one takes over.
//     Should the marker never come, each waiter holds a deadline of two
//     leases (plus the server's one-second expiry tick) from the claim's
//     last refresh and then takes the unchanged revision over by CAS.
//   - The claimer stalls past its lease and someone took over: its refresh
//     or Land finds another revision, the claim is lost, Land returns
//     ErrClaimLost and writes nothing. If the lease lapsed and no one took
//     over, Land records the page with create-if-absent instead.
//   - The holder no longer has the page (evicted, node gone): a reader that
//     finds out calls Stale with the revision it was given, which purges
//     that record only if it is unchanged; the owner itself calls Forget on
//     eviction. The next Acquire claims again.
//   - A Land whose reply was lost is retried: it finds its own landed
//     record (or its own claim at a newer revision, by token) and succeeds.
//
// Removals are purges whose markers expire after claimMarkerTTL, so the
// bucket holds one small message per page that is claimed or landed and
// nothing for pages long gone.
//
// Goroutines: one refresher per held Claim, stopped by the first Land or
// Release (whatever its outcome) or by Close; Acquire waits in the
// caller's goroutine. Close cancels waiting Acquires, releases held claims
// and waits for both. Locks: Claim.mu (serialises a claim's refresh, Land
// and Release; held across their KV round trips) is never held while
// taking Claims.mu, and the refresher is stopped only after Claim.mu is
// released.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrClaimLost is returned by Land when the claim's lease ran out and
	// another node claimed the page meanwhile: the page was not recorded as
	// held here, and the other node's claim stands.
	ErrClaimLost = errors.New("page claim lost to another claimer")
	// ErrClaimsClosed is returned by Acquire once Close has been called.
	ErrClaimsClosed = errors.New("page claims closed")
)

const (
	// DefaultClaimLease is the claim lease when ClaimsConfig.Lease is zero.
	DefaultClaimLease = 10 * time.Second
	// claimMarkerTTL is how long removal markers (purges and the server's
	// expiry markers) stay in the bucket. Watchers see a marker when it is
	// written, so it only has to outlive a Create racing with it.
	claimMarkerTTL = time.Minute
	// claimExpiryTick is the resolution of the server's TTL wheel: a claim
	// expires up to this long after its TTL.
	claimExpiryTick = time.Second
	// claimCloseTimeout bounds how long Close spends releasing claims.
	claimCloseTimeout = 5 * time.Second
	// claimForgetTries bounds Forget's read-and-purge loop under contention.
	claimForgetTries = 3
)

// ClaimsConfig configures one node's view of its region's page claims.
type ClaimsConfig struct {
	Conn   *nats.Conn // NATS of the destination region
	Mesh   string
	Region string
	NodeID string // this node
	Addr   string // this node's gRPC address, where other nodes read a landed page
	// Lease is how long a claim outlives its holder's last refresh
	// (default DefaultClaimLease). NATS message TTLs are whole seconds, so
	// it is rounded up to a second, and it must be at least one.
	Lease time.Duration
	// Replicas of the bucket when this node creates it (default 1; 3 in a
	// production region cluster).
	Replicas int
	Logger   *slog.Logger // default: discard
}

// Holder names the node that holds a landed page, and the revision of that
// record (for Stale).
type Holder struct {
	NodeID   string
	Addr     string
	Revision uint64
}

// ClaimStats counts what this node's Claims did since NewClaims.
type ClaimStats struct {
	Won       uint64 // Acquire calls that returned a Claim
	Waits     uint64 // Acquire calls that waited on another node's claim
	Takeovers uint64 // claims won because the previous claimer's lease ran out
	Landed    uint64 // Land calls that recorded this node as holder
	Released  uint64 // claims given up by Release or Close
	Lost      uint64 // claims found taken over by another claimer
}

// Claims is one node's handle on its region's claims bucket. It is safe for
// concurrent use.
type Claims struct {
	cfg        ClaimsConfig
	lease      time.Duration
	log        *slog.Logger
	js         jetstream.JetStream
	kv         jetstream.KeyValue
	subjPrefix string // "$KV.<bucket>.": refreshes publish directly to carry a TTL

	closing context.Context // cancelled by Close
	stopAll context.CancelFunc

	mu     sync.Mutex
	closed bool
	held   map[*Claim]struct{}
	wg     sync.WaitGroup // Acquire calls and claim refreshers

	won, waits, takeovers, landed, released, lost atomic.Uint64
}

// NewClaims creates or opens the region's claims bucket.
func NewClaims(ctx context.Context, cfg ClaimsConfig) (*Claims, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("page claims: no NATS connection")
	case cfg.Mesh == "" || cfg.Region == "":
		return nil, fmt.Errorf("page claims: mesh %q and region %q must both be set", cfg.Mesh, cfg.Region)
	case cfg.NodeID == "" || cfg.Addr == "":
		return nil, fmt.Errorf("page claims in region %s: node id %q and address %q must both be set", cfg.Region, cfg.NodeID, cfg.Addr)
	}
	lease := cfg.Lease
	if lease == 0 {
		lease = DefaultClaimLease
	}
	if lease < time.Second {
		return nil, fmt.Errorf("page claims in region %s: lease %v is under the 1s minimum of NATS message TTLs", cfg.Region, cfg.Lease)
	}
	lease = (lease + time.Second - 1).Truncate(time.Second)
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("page claims in region %s: %w", cfg.Region, err)
	}
	bucket := ClaimsBucket(cfg.Mesh, cfg.Region)
	kv, err := openClaimsBucket(ctx, js, bucket, cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("page claims in region %s: bucket %s: %w", cfg.Region, bucket, err)
	}
	closing, stopAll := context.WithCancel(context.Background())
	return &Claims{
		cfg:        cfg,
		lease:      lease,
		log:        log.With("region", cfg.Region, "node", cfg.NodeID),
		js:         js,
		kv:         kv,
		subjPrefix: "$KV." + bucket + ".",
		closing:    closing,
		stopAll:    stopAll,
		held:       make(map[*Claim]struct{}),
	}, nil
}

func openClaimsBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "lakemesh page claims: which node moves or holds each page in this region",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       replicas,
		LimitMarkerTTL: claimMarkerTTL,
	})
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, err
	}
	// Created by a node with another configuration (replicas, an older
	// version): use it if it can expire claims.
	if kv, err = js.KeyValue(ctx, bucket); err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.LimitMarkerTTL() == 0 {
		return nil, errors.New("exists without limit markers (LimitMarkerTTL), so claims could not expire")
	}
	return kv, nil
}

// Acquire decides who moves page key into the region. It returns either a
// Claim, which the caller must Land or Release, or the Holder of the landed
// page, which may be this node itself (the caller then checks its store and
// calls Stale if the page is not there). While another node's claim is live
// it waits, until that claim lands, is released or expires; ctx bounds the
// wait.
func (c *Claims) Acquire(ctx context.Context, key string) (*Claim, Holder, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, Holder{}, ErrClaimsClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.closing, cancel)()

	cl, h, err := c.acquire(wctx, key)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case c.closing.Err() != nil:
			err = ErrClaimsClosed
		default:
			err = fmt.Errorf("claim page %s in region %s: %w", key, c.cfg.Region, err)
		}
	}
	return cl, h, err
}

func (c *Claims) acquire(ctx context.Context, key string) (*Claim, Holder, error) {
	k := claimKVKey(key)
	// The common case once a page has landed is a reader on another node:
	// one Get answers it.
	e, err := c.kv.Get(ctx, k)
	switch {
	case err == nil:
		if rec := c.decode(e); rec.State == claimRecLanded {
			return nil, rec.holder(e.Revision()), nil
		}
	case errors.Is(err, jetstream.ErrKeyNotFound):
		cl, err := c.create(ctx, key, k)
		if cl != nil || !isClaimConflict(err) {
			return cl, Holder{}, err
		}
	default:
		return nil, Holder{}, err
	}
	return c.wait(ctx, key, k)
}

// wait watches key k until it lands (Holder), or becomes free and this node
// wins the Create (Claim). The watch delivers the key's current value
// first, so nothing that happened since the caller looked is missed.
func (c *Claims) wait(ctx context.Context, key, k string) (*Claim, Holder, error) {
	c.waits.Add(1)
	w, err := c.kv.Watch(ctx, k)
	if err != nil {
		return nil, Holder{}, fmt.Errorf("watch: %w", err)
	}
	defer func() { _ = w.Stop() }()

	// deadline fires if the claim last seen stays unchanged past its lease
	// without the server's expiry marker (see the design comment).
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()

	var (
		seen      bool                    // the watch delivered a value or marker
		claim     jetstream.KeyValueEntry // the live claim last seen, if any
		claimTerm time.Duration           // that claim's lease
	)
	for {
		select {
		case <-ctx.Done():
			return nil, Holder{}, ctx.Err()

		case <-deadline.C:
			cl, err := c.takeOver(ctx, key, k, claim.Revision())
			if cl != nil {
				c.takeovers.Add(1)
				c.log.Warn("page claim taken over past its lease without an expiry marker",
					"page", key, "claimer", c.decode(claim).Node, "revision", claim.Revision())
				return cl, Holder{}, nil
			}
			if !isClaimConflict(err) {
				return nil, Holder{}, err
			}
			// It changed after all; the watch will say how.
			deadline.Reset(claimDeadline(claimTerm))

		case e, ok := <-w.Updates():
			if !ok {
				return nil, Holder{}, errors.New("watch closed")
			}
			if e == nil { // end of the initial values
				if seen {
					continue
				}
				// The key was free before the watch began.
			} else {
				seen = true
				if e.Operation() == jetstream.KeyValuePut {
					rec := c.decode(e)
					if rec.State == claimRecLanded {
						return nil, rec.holder(e.Revision()), nil
					}
					claim, claimTerm = e, rec.lease(c.lease)
					deadline.Reset(claimDeadline(claimTerm))
					continue
				}
			}
			// Free: released, expired, stale or never there. Race for it.
			deadline.Stop()
			expired := claim != nil && e != nil && e.Created().Sub(claim.Created()) >= claimTerm
			claim = nil
			cl, err := c.create(ctx, key, k)
			if cl != nil {
				if expired {
					c.takeovers.Add(1)
				}
				return cl, Holder{}, nil
			}
			if !isClaimConflict(err) {
				return nil, Holder{}, err
			}
			// Another waiter won; its claim is the watch's next value.
		}
	}
}

// claimDeadline is how long a waiter lets a claim with the given lease stay
// unchanged before taking it over itself: the server expires it within a
// lease and one tick, and a second lease covers a late marker.
func claimDeadline(lease time.Duration) time.Duration {
	return 2*lease + claimExpiryTick
}

// Stale removes the record at revision rev for page key (a holder that did
// not have the page after all), so that the next Acquire claims the page
// again. It does nothing if the record changed since rev.
func (c *Claims) Stale(ctx context.Context, key string, rev uint64) error {
	if rev == 0 {
		return fmt.Errorf("stale page %s: no revision", key)
	}
	err := c.kv.Purge(ctx, claimKVKey(key), jetstream.LastRevision(rev), jetstream.PurgeTTL(claimMarkerTTL))
	if err != nil && !isClaimConflict(err) {
		return fmt.Errorf("stale page %s revision %d in region %s: %w", key, rev, c.cfg.Region, err)
	}
	if err == nil {
		c.log.Info("stale page holder removed", "page", key, "revision", rev)
	}
	return nil
}

// Forget removes this node's landed record for page key (on eviction). A
// record naming another node, or a live claim, is left alone.
func (c *Claims) Forget(ctx context.Context, key string) error {
	k := claimKVKey(key)
	for range claimForgetTries {
		e, err := c.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("forget page %s in region %s: %w", key, c.cfg.Region, err)
		}
		if rec := c.decode(e); rec.State != claimRecLanded || rec.Node != c.cfg.NodeID {
			return nil
		}
		err = c.kv.Purge(ctx, k, jetstream.LastRevision(e.Revision()), jetstream.PurgeTTL(claimMarkerTTL))
		if !isClaimConflict(err) {
			if err != nil {
				return fmt.Errorf("forget page %s in region %s: %w", key, c.cfg.Region, err)
			}
			return nil
		}
	}
	return fmt.Errorf("forget page %s in region %s: record kept changing", key, c.cfg.Region)
}

// Close wakes waiting Acquires (they return ErrClaimsClosed), releases the
// claims still held, and waits for Acquires and refreshers to end. It does
// not close the NATS connection.
func (c *Claims) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	held := make([]*Claim, 0, len(c.held))
	for cl := range c.held {
		held = append(held, cl)
	}
	c.mu.Unlock()

	c.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), claimCloseTimeout)
	defer cancel()
	var errs []error
	for _, cl := range held {
		if err := cl.Release(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	c.wg.Wait()
	return errors.Join(errs...)
}

// Stats returns this node's counters.
func (c *Claims) Stats() ClaimStats {
	return ClaimStats{
		Won:       c.won.Load(),
		Waits:     c.waits.Load(),
		Takeovers: c.takeovers.Load(),
		Landed:    c.landed.Load(),
		Released:  c.released.Load(),
		Lost:      c.lost.Load(),
	}
}
