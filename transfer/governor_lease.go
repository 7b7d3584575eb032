package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// governorElection is one Budget's candidacy for its direction's governor. Its
// goroutine alone touches it. While it holds the lease it runs a governor
// and refreshes the lease every Lease/3; otherwise it tries to create the
// lease every Lease/4, and at once when the governor resigns.
type governorElection struct {
	b      *Budget
	kv     jetstream.KeyValue // nil until the bucket is open
	rev    uint64             // revision of our lease
	until  time.Time          // when we stop governing unless the lease is refreshed
	gov    *governor          // non-nil while we lead
	unsure bool               // a create failed without an answer: it may have landed
	noKV   bool               // the bucket could not be opened (said once)
}

func (e *governorElection) run() {
	defer e.b.wg.Done()
	lease := e.b.cfg.Lease
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-e.b.ctx.Done():
			e.resign()
			return
		case <-timer.C:
		case <-e.b.electNow:
		}
		next := lease / 4
		if e.gov == nil {
			e.claim()
		} else {
			e.refresh()
		}
		if e.gov != nil {
			next = min(lease/3, time.Until(e.until))
		}
		timer.Reset(max(next, 10*time.Millisecond))
	}
}

// claim tries to become the governor: create the lease if absent.
func (e *governorElection) claim() {
	b := e.b
	if b.cfg.Conn.Status() != nats.CONNECTED {
		return // a create buffered while reconnecting could land long after we gave up on it
	}
	ctx, cancel := context.WithTimeout(b.ctx, governorKVTimeout)
	defer cancel()
	if e.kv == nil {
		kv, err := openGovernorBucket(ctx, b.js, b.bucket)
		if err != nil {
			if !e.noKV {
				b.log.Warn("line governor bucket unavailable; no governor from this node until it is", "bucket", b.bucket, "error", err)
			}
			e.noKV = true
			return
		}
		if e.noKV {
			b.log.Info("line governor bucket available", "bucket", b.bucket)
		}
		e.kv, e.noKV = kv, false
	}
	sent := time.Now()
	rev, err := e.kv.Create(ctx, b.key, b.identity, jetstream.KeyTTL(b.cfg.Lease))
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrKeyExists) && e.unsure:
		// Our earlier create may have landed unheard; if so, take it up.
		e.unsure = false
		entry, gerr := e.kv.Get(ctx, b.key)
		if gerr != nil || !bytes.Equal(entry.Value(), b.identity) {
			return
		}
		sent = time.Now()
		if rev, err = e.publishLease(ctx, entry.Revision()); err != nil {
			return
		}
	case errors.Is(err, jetstream.ErrKeyExists):
		return // someone governs
	default:
		e.unsure = true
		e.kv = nil // the bucket may be gone (a restarted server keeps no memory streams)
		b.log.Debug("line governor lease not created", "error", err)
		return
	}
	e.rev, e.until = rev, sent.Add(b.cfg.Lease-governorLeaseMargin)
	// Tickets are only valid in the term that handed them out; a revision
	// would not do, as a restarted server numbers them from 1 again.
	term := mrand.Uint64() | 1
	gov, err := startGovernor(b, term, e.until)
	if err != nil {
		b.log.Warn("line governor elected but cannot serve; letting the lease lapse", "error", err)
		return
	}
	e.gov = gov
	b.leader.Store(true)
	b.log.Info("line governor elected", "lease_revision", rev, "rate_bytes_per_s", b.cfg.Rate, "lease", b.cfg.Lease)
	e.announce(governorNews{Node: b.cfg.NodeID, Term: term})
}

// refresh renews the lease by revision, or steps down when it was lost
// or could not be renewed in time.
func (e *governorElection) refresh() {
	ctx, cancel := context.WithDeadline(e.b.ctx, e.until)
	defer cancel()
	sent := time.Now()
	rev, err := e.publishLease(ctx, e.rev)
	if err == nil {
		e.rev, e.until = rev, sent.Add(e.b.cfg.Lease-governorLeaseMargin)
		e.gov.extend(e.until)
		return
	}
	if e.b.ctx.Err() != nil {
		return // closing: resign decides
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		e.stepDown("lease lost", err) // another node holds it, or the bucket is gone
	case !time.Now().Before(e.until):
		e.stepDown("lease not refreshed in time", err)
	}
}

// publishLease writes our lease again, expecting it at revision rev, with
// a fresh TTL. KV Update cannot set a TTL (and would clear it), so this
// publishes to the key's subject the way Update does.
func (e *governorElection) publishLease(ctx context.Context, rev uint64) (uint64, error) {
	m := &nats.Msg{Subject: "$KV." + e.b.bucket + "." + e.b.key, Data: e.b.identity}
	ack, err := e.b.js.PublishMsg(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(e.b.cfg.Lease))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func (e *governorElection) stepDown(why string, err error) {
	e.gov.close()
	e.gov = nil
	e.b.leader.Store(false)
	e.b.log.Info("line governor stepped down", "reason", why, "error", err)
}

// resign, on Close, stops governing and hands the lease over at once.
func (e *governorElection) resign() {
	if e.gov == nil {
		return
	}
	term := e.gov.term
	e.gov.close()
	e.gov = nil
	e.b.leader.Store(false)
	if e.b.cfg.Conn.Status() != nats.CONNECTED {
		return // the lease lapses by itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), governorKVTimeout)
	defer cancel()
	if err := e.kv.Delete(ctx, e.b.key, jetstream.LastRevision(e.rev)); err != nil {
		e.b.log.Debug("line governor lease not deleted; it lapses by itself", "error", err)
	}
	e.announce(governorNews{Node: e.b.cfg.NodeID, Term: term, Resigned: true})
	e.b.cfg.Conn.FlushTimeout(governorKVTimeout)
	e.b.log.Info("line governor resigned", "lease_revision", e.rev)
}

func (e *governorElection) announce(n governorNews) {
	if e.b.cfg.Conn.Status() != nats.CONNECTED {
		return // buffered news would arrive stale after a reconnect
	}
	data, _ := json.Marshal(n)
	e.b.cfg.Conn.Publish(e.b.news, data)
}

// openGovernorBucket opens the governors' bucket, creating it if needed. It
// keeps one value per key (the current lease) in memory: a lease means
// nothing after a server restart.
func openGovernorBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "lakemesh line governor leases",
		History:        1,
		Storage:        jetstream.MemoryStorage,
		LimitMarkerTTL: governorMarkerTTL, // enables per-key TTLs
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		if kv, err = js.KeyValue(ctx, bucket); err != nil {
			return nil, err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.LimitMarkerTTL() <= 0 {
			return nil, errors.New("bucket " + bucket + " exists without per-key TTLs; delete it")
		}
	}
	return kv, err
}
