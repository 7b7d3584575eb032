package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// States of a claims-bucket value (see claim.go).
const (
	claimRecClaimed = "claimed"
	claimRecLanded  = "landed"
)

// claimRecord is the value of a page's key in the claims bucket.
type claimRecord struct {
	State string `json:"state"`
	Key   string `json:"key"` // the caller's page key, for operators reading the bucket
	Node  string `json:"node"`
	Addr  string `json:"addr,omitempty"`
	// Token tells a claimer its own claim apart from a later claim by the
	// same node, after a write whose reply was lost.
	Token   string `json:"token,omitempty"`
	LeaseMS int64  `json:"lease_ms,omitempty"`
}

func (r claimRecord) holder(rev uint64) Holder {
	return Holder{NodeID: r.Node, Addr: r.Addr, Revision: rev}
}

// lease is the claimer's lease (nodes may be configured differently), or
// def for records that do not say.
func (r claimRecord) lease(def time.Duration) time.Duration {
	if r.LeaseMS <= 0 {
		return def
	}
	return time.Duration(r.LeaseMS) * time.Millisecond
}

func (r claimRecord) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil { // strings and ints only: cannot happen
		panic(err)
	}
	return b
}

// decode reads a value; one it cannot read counts as a live claim of
// unknown lease, which waiters take over at their deadline rather than
// wait on forever.
func (c *Claims) decode(e jetstream.KeyValueEntry) claimRecord {
	var r claimRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil || (r.State != claimRecClaimed && r.State != claimRecLanded) {
		c.log.Warn("unreadable page claim record, treated as a claim", "kv_key", e.Key(), "revision", e.Revision(), "err", err)
		return claimRecord{State: claimRecClaimed}
	}
	return r
}

// claimKVKey maps an opaque page key to a KV-safe key of fixed length.
func claimKVKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "p." + hex.EncodeToString(sum[:])
}

// ClaimsBucket is the name of the claims bucket of region in mesh: names
// reduced to the characters a bucket name allows.
func ClaimsBucket(mesh, region string) string {
	return "lakemesh_" + bucketSafe(mesh) + "_" + bucketSafe(region) + "_claims"
}

func bucketSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// isClaimConflict reports whether err is a failed compare-and-swap: the key
// exists (Create) or is at another revision (Update, Purge, publish).
func isClaimConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// putClaim writes a claim for kv key k if its last revision is rev (0:
// absent), with a TTL of one lease. kv.Update cannot carry a TTL (the
// message it writes never expires), so a refresh publishes to the bucket's
// subject itself.
func (c *Claims) putClaim(ctx context.Context, k string, rec claimRecord, rev uint64) (uint64, error) {
	m := nats.NewMsg(c.subjPrefix + k)
	m.Data = rec.encode()
	ack, err := c.js.PublishMsg(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(rev),
		jetstream.WithMsgTTL(c.lease))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}
