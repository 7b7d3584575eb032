package transfer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A Claim is this node's right to move one page into the region. A
// refresher keeps its lease alive until Land or Release; the caller must
// call one of them.
type Claim struct {
	c     *Claims
	key   string // the caller's page key
	kvKey string
	token string

	mu    sync.Mutex // serialises refreshes, Land and Release
	rev   uint64     // the claim's revision in the bucket
	state claimState

	stopOnce sync.Once
	stop     chan struct{} // closed to stop the refresher
	done     chan struct{} // closed when the refresher returns
}

type claimState int

const (
	claimStateHeld claimState = iota
	claimStateLanded
	claimStateReleased // released, or abandoned after Release failed
	claimStateLost     // taken over by another claimer
)

// Key returns the page key the claim is for.
func (cl *Claim) Key() string { return cl.key }

func (c *Claims) claimValue(key, token string) claimRecord {
	return claimRecord{
		State:   claimRecClaimed,
		Key:     key,
		Node:    c.cfg.NodeID,
		Addr:    c.cfg.Addr,
		Token:   token,
		LeaseMS: c.lease.Milliseconds(),
	}
}

// create claims free key k with a TTL of one lease; it fails with a
// conflict if the key holds a value.
func (c *Claims) create(ctx context.Context, key, k string) (*Claim, error) {
	token := rand.Text()
	rev, err := c.kv.Create(ctx, k, c.claimValue(key, token).encode(), jetstream.KeyTTL(c.lease))
	if err != nil {
		return nil, err
	}
	return c.hold(key, k, token, rev)
}

// takeOver replaces the claim at revision rev, which outlived its lease
// without being expired, by this node's claim.
func (c *Claims) takeOver(ctx context.Context, key, k string, rev uint64) (*Claim, error) {
	token := rand.Text()
	newRev, err := c.putClaim(ctx, k, c.claimValue(key, token), rev)
	if err != nil {
		return nil, err
	}
	return c.hold(key, k, token, newRev)
}

// hold starts the refresher of a claim just written at rev.
func (c *Claims) hold(key, k, token string, rev uint64) (*Claim, error) {
	cl := &Claim{
		c: c, key: key, kvKey: k, token: token, rev: rev,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		close(cl.done)
		ctx, cancel := context.WithTimeout(context.Background(), claimCloseTimeout)
		defer cancel()
		_ = cl.Release(ctx)
		return nil, ErrClaimsClosed
	}
	c.held[cl] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	c.won.Add(1)
	c.log.Debug("page claimed", "page", key, "revision", rev)
	go cl.refresh()
	return cl, nil
}

// refresh rewrites the claim every lease/3, each time a compare-and-swap on
// the last revision with a fresh TTL, until the claim is settled or lost.
func (cl *Claim) refresh() {
	defer cl.c.wg.Done()
	defer close(cl.done)
	every := cl.c.lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
		if !cl.refreshOnce(every) {
			return
		}
	}
}

// refreshOnce reports whether the refresher should go on.
func (cl *Claim) refreshOnce(timeout time.Duration) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.state != claimStateHeld {
		return false
	}
	c := cl.c
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	val := c.claimValue(cl.key, cl.token)
	rev, err := c.putClaim(ctx, cl.kvKey, val, cl.rev)
	if isClaimConflict(err) {
		// An earlier refresh may have been written with its reply lost.
		var own uint64
		own, err = cl.ownRevision(ctx)
		switch {
		case err != nil: // unknown yet: retry at the next tick
		case own == 0:
			cl.loseLocked("refresh")
			return false
		default:
			rev, err = c.putClaim(ctx, cl.kvKey, val, own)
		}
	}
	switch {
	case err == nil:
		cl.rev = rev
		return true
	case isClaimConflict(err):
		cl.loseLocked("refresh")
		return false
	case errors.Is(err, nats.ErrConnectionClosed):
		c.log.Warn("page claim refresh stopped: connection closed", "page", cl.key)
		return false
	default:
		c.log.Warn("page claim refresh failed, retrying", "page", cl.key, "err", err)
		return true
	}
}

// ownRevision returns the revision of this claim's own record (same
// token), or 0 if the key holds anything else.
func (cl *Claim) ownRevision(ctx context.Context) (uint64, error) {
	e, err := cl.c.kv.Get(ctx, cl.kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if rec := cl.c.decode(e); rec.State == claimRecClaimed && rec.Token == cl.token {
		return e.Revision(), nil
	}
	return 0, nil
}

func (cl *Claim) loseLocked(during string) {
	cl.state = claimStateLost
	cl.c.lost.Add(1)
	cl.c.log.Warn("page claim lost to another claimer", "page", cl.key, "during", during, "revision", cl.rev)
}

// Land records this node as the holder of the page, which is now in its
// store: a record without lease that stays until Forget or Stale, and
// wakes the waiters. It fails with ErrClaimLost, writing nothing, if
// another node claimed the page after this claim's lease ran out. Landing
// twice is a no-op. Land stops the refresher whatever the outcome, so a
// caller that drops an error leaves no goroutine behind; after another
// error the claim expires within a lease unless Land is retried (it then
// succeeds if no one claimed meanwhile) or Release is called.
func (cl *Claim) Land(ctx context.Context) error {
	cl.mu.Lock()
	err := cl.landLocked(ctx)
	cl.mu.Unlock()
	cl.finish()
	if err != nil {
		return fmt.Errorf("land page %s in region %s: %w", cl.key, cl.c.cfg.Region, err)
	}
	return nil
}

func (cl *Claim) landLocked(ctx context.Context) error {
	switch cl.state {
	case claimStateLanded:
		return nil
	case claimStateLost:
		return ErrClaimLost
	case claimStateReleased:
		return errors.New("claim already released")
	}
	c := cl.c
	rec := claimRecord{State: claimRecLanded, Key: cl.key, Node: c.cfg.NodeID, Addr: c.cfg.Addr}
	rev, err := c.kv.Update(ctx, cl.kvKey, rec.encode(), cl.rev)
	if isClaimConflict(err) {
		rev, err = cl.landAfterConflict(ctx, rec)
	}
	if err != nil {
		if errors.Is(err, ErrClaimLost) {
			cl.loseLocked("land")
		}
		return err
	}
	cl.rev, cl.state = rev, claimStateLanded
	c.landed.Add(1)
	c.log.Debug("page landed", "page", cl.key, "revision", rev)
	return nil
}

// landAfterConflict settles a Land whose compare-and-swap failed: the key
// is this claim at a newer revision (a refresh whose reply was lost), this
// node's landed record (a Land whose reply was lost), free (the lease
// lapsed and no one claimed: create-if-absent), or someone else's.
func (cl *Claim) landAfterConflict(ctx context.Context, rec claimRecord) (uint64, error) {
	c := cl.c
	e, err := c.kv.Get(ctx, cl.kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := c.kv.Create(ctx, cl.kvKey, rec.encode())
		if isClaimConflict(err) {
			return 0, ErrClaimLost
		}
		return rev, err
	}
	if err != nil {
		return 0, err
	}
	cur := c.decode(e)
	switch {
	case cur.State == claimRecLanded && cur.Node == c.cfg.NodeID:
		return e.Revision(), nil
	case cur.State == claimRecClaimed && cur.Token == cl.token:
		rev, err := c.kv.Update(ctx, cl.kvKey, rec.encode(), e.Revision())
		if isClaimConflict(err) {
			return 0, ErrClaimLost
		}
		return rev, err
	}
	return 0, ErrClaimLost
}

// Release gives the claim up after a failed transfer: it removes the claim
// if it is still this node's, so that a waiter takes over at once. It
// stops the refresher even if it fails, so the claim then expires after
// its lease. Releasing a landed, lost or released claim is a no-op.
func (cl *Claim) Release(ctx context.Context) error {
	cl.mu.Lock()
	err := cl.releaseLocked(ctx)
	cl.mu.Unlock()
	cl.finish()
	if err != nil {
		return fmt.Errorf("release page %s in region %s: %w", cl.key, cl.c.cfg.Region, err)
	}
	return nil
}

func (cl *Claim) releaseLocked(ctx context.Context) error {
	if cl.state != claimStateHeld {
		return nil
	}
	c := cl.c
	cl.state = claimStateReleased
	c.released.Add(1)
	err := c.kv.Purge(ctx, cl.kvKey, jetstream.LastRevision(cl.rev), jetstream.PurgeTTL(claimMarkerTTL))
	if isClaimConflict(err) {
		var rev uint64
		if rev, err = cl.ownRevision(ctx); err == nil && rev != 0 {
			err = c.kv.Purge(ctx, cl.kvKey, jetstream.LastRevision(rev), jetstream.PurgeTTL(claimMarkerTTL))
		}
		if isClaimConflict(err) {
			err = nil // not ours any more: nothing to give up
		}
	}
	if err == nil {
		c.log.Debug("page claim released", "page", cl.key)
	}
	return err
}

// finish stops the refresher and forgets the claim; it must not be called
// with cl.mu held.
func (cl *Claim) finish() {
	cl.stopRefresh()
	cl.c.mu.Lock()
	delete(cl.c.held, cl)
	cl.c.mu.Unlock()
}

func (cl *Claim) stopRefresh() {
	cl.stopOnce.Do(func() { close(cl.stop) })
	<-cl.done
}
