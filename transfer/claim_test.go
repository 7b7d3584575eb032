package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	claimTestMesh   = "test-mesh"
	claimTestRegion = "gpu-wlcb"
	// claimTestTimeout bounds every wait of a test; no assertion relies on
	// it being reached.
	claimTestTimeout = 30 * time.Second
)

// startClaimNATS starts a real NATS server with JetStream (file storage in
// a temporary directory) on a random loopback port, stopped when t ends.
func startClaimNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("nats server not ready in 10s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns.ClientURL()
}

// claimNode is one cache node's view of the claims: its own connection, as
// a separate process would have.
type claimNode struct {
	id     string
	conn   *nats.Conn
	claims *Claims
}

func newClaimNode(t *testing.T, url, id string, lease time.Duration) *claimNode {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(id))
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()
	c, err := NewClaims(ctx, ClaimsConfig{
		Conn: nc, Mesh: claimTestMesh, Region: claimTestRegion,
		NodeID: id, Addr: id + ":7070", Lease: lease,
	})
	if err != nil {
		nc.Close()
		t.Fatalf("claims for %s: %v", id, err)
	}
	t.Cleanup(func() {
		// A node whose connection the test closed cannot release: that
		// is the point of such a test, not a failure.
		if err := c.Close(); err != nil && !nc.IsClosed() {
			t.Errorf("close claims of %s: %v", id, err)
		}
		nc.Close()
	})
	return &claimNode{id: id, conn: nc, claims: c}
}

type claimResult struct {
	node   string
	claim  *Claim
	holder Holder
	err    error
	at     time.Time
}

// acquireClaimAsync runs Acquire in a goroutine and delivers its result.
func acquireClaimAsync(ctx context.Context, n *claimNode, key string) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		cl, h, err := n.claims.Acquire(ctx, key)
		ch <- claimResult{node: n.id, claim: cl, holder: h, err: err, at: time.Now()}
	}()
	return ch
}

func acquireClaim(t *testing.T, n *claimNode, key string) (*Claim, Holder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()
	cl, h, err := n.claims.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("%s: acquire %s: %v", n.id, key, err)
	}
	return cl, h
}

func receiveClaim(t *testing.T, ch <-chan claimResult, within time.Duration) claimResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("no Acquire result within %v", within)
		return claimResult{}
	}
}

// claimEventually retries cond until it holds or the deadline passes.
func claimEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !claimRetry(cond) {
		t.Fatalf("%s: not within %v", what, claimTestTimeout)
	}
}

func claimRetry(cond func() bool) bool {
	deadline := time.Now().Add(claimTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func claimWaits(nodes ...*claimNode) uint64 {
	var n uint64
	for _, node := range nodes {
		n += node.claims.Stats().Waits
	}
	return n
}

// claimRawMsg reads the bucket's stored message for page key, headers and
// all, to check what the server will do with it.
func claimRawMsg(t *testing.T, n *claimNode, key string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()
	bucket := ClaimsBucket(claimTestMesh, claimTestRegion)
	s, err := n.claims.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatalf("stream of %s: %v", bucket, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "$KV."+bucket+"."+claimKVKey(key))
	if err != nil {
		t.Fatalf("raw record of %s: %v", key, err)
	}
	return m
}

// Twenty readers on four nodes miss the same page at once: one transfer,
// and every other reader is told to read from the node that made it.
func TestClaimOneTransferAmongManyNodes(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	var nodes []*claimNode
	for i := range 4 {
		nodes = append(nodes, newClaimNode(t, url, fmt.Sprintf("node-%d", i), 2*time.Second))
	}
	const perNode = 5
	const key = "page/file-v1/0"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	var transfers atomic.Int32
	start := make(chan struct{})
	results := make(chan claimResult, len(nodes)*perNode)
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				cl, h, err := n.claims.Acquire(ctx, key)
				if err == nil && cl != nil {
					transfers.Add(1)
					// Hold the claim until every other reader waits on
					// it, so the test proves waiting, not a late Get.
					if claimRetry(func() bool {
						return claimWaits(nodes...) == uint64(len(nodes)*perNode-1)
					}) {
						err = cl.Land(ctx)
					} else {
						err = fmt.Errorf("waits %d, want %d", claimWaits(nodes...), len(nodes)*perNode-1)
					}
				}
				results <- claimResult{node: n.id, claim: cl, holder: h, err: err}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)

	var winner string
	var holders []claimResult
	for r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.node, r.err)
		}
		if r.claim != nil {
			winner = r.node
			continue
		}
		holders = append(holders, r)
	}
	if got := transfers.Load(); got != 1 {
		t.Fatalf("transfers = %d, want 1", got)
	}
	for _, r := range holders {
		if r.holder.NodeID != winner || r.holder.Addr != winner+":7070" || r.holder.Revision == 0 {
			t.Errorf("%s: holder %+v, want node %s", r.node, r.holder, winner)
		}
	}
	var won, landed uint64
	for _, n := range nodes {
		st := n.claims.Stats()
		won += st.Won
		landed += st.Landed
	}
	if won != 1 || landed != 1 {
		t.Errorf("won %d, landed %d over all nodes, want 1 and 1", won, landed)
	}
}

// A claimer that keeps refreshing keeps its claim for many leases; when it
// dies without releasing, exactly one waiter takes over after the lease
// and the others then read from the new holder.
func TestClaimCrashedClaimerTakenOverOnce(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	url := startClaimNATS(t)
	dying := newClaimNode(t, url, "dying", lease)
	var waiters []*claimNode
	for i := range 3 {
		waiters = append(waiters, newClaimNode(t, url, fmt.Sprintf("waiter-%d", i), lease))
	}
	const key = "page/model-v7/12"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	if cl, _ := acquireClaim(t, dying, key); cl == nil {
		t.Fatal("first Acquire did not claim")
	}
	results := make(chan claimResult, 6)
	for _, n := range waiters {
		for range 2 {
			go func() { results <- <-acquireClaimAsync(ctx, n, key) }()
		}
	}
	claimEventually(t, "6 waiters", func() bool { return claimWaits(waiters...) == 6 })

	// Three leases of refreshes: nobody may take over a live claim.
	select {
	case r := <-results:
		t.Fatalf("%s returned while the claim was refreshed: %+v", r.node, r)
	case <-time.After(3 * lease):
	}

	// kill -9: the connection drops, the refresher can no longer write,
	// and nothing is released.
	crashed := time.Now()
	dying.conn.Close()

	first := receiveClaim(t, results, claimTestTimeout)
	if first.err != nil || first.claim == nil {
		t.Fatalf("first result after the crash: %+v, want a claim", first)
	}
	// The server expires the claim one lease after its last refresh (at
	// most lease/3 before the crash), on a one-second tick.
	t.Logf("%s took over %v after the crash", first.node, first.at.Sub(crashed))
	if took := first.at.Sub(crashed); took < lease/3 || took > claimDeadline(lease)+time.Second {
		t.Errorf("takeover %v after the crash, want about the lease (%v)", took, lease)
	}
	if err := first.claim.Land(ctx); err != nil {
		t.Fatalf("%s: land: %v", first.node, err)
	}
	for range 5 {
		r := receiveClaim(t, results, claimTestTimeout)
		if r.err != nil || r.claim != nil || r.holder.NodeID != first.node {
			t.Errorf("%s: %+v, want holder %s", r.node, r, first.node)
		}
	}
	var takeovers uint64
	for _, n := range waiters {
		takeovers += n.claims.Stats().Takeovers
	}
	if takeovers != 1 {
		t.Errorf("takeovers = %d, want 1", takeovers)
	}
}

// Release hands the page to a waiter at once, long before the lease.
func TestClaimReleaseWakesWaiter(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", 0) // default lease: 10s
	b := newClaimNode(t, url, "b", 0)
	const key = "page/x/1"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	cl, _ := acquireClaim(t, a, key)
	waiting := acquireClaimAsync(ctx, b, key)
	claimEventually(t, "b waiting", func() bool { return claimWaits(b) == 1 })
	released := time.Now()
	if err := cl.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	r := receiveClaim(t, waiting, claimTestTimeout)
	if r.err != nil || r.claim == nil {
		t.Fatalf("b after release: %+v, want a claim", r)
	}
	if took := r.at.Sub(released); took > DefaultClaimLease/2 {
		t.Errorf("b claimed %v after the release, want well under the %v lease", took, DefaultClaimLease)
	}
	if st := b.claims.Stats(); st.Takeovers != 0 || st.Won != 1 {
		t.Errorf("b stats %+v, want one claim won and no takeover", st)
	}
	if st := a.claims.Stats(); st.Released != 1 {
		t.Errorf("a stats %+v, want one release", st)
	}
	// Releasing again, or after someone else claimed, removes nothing.
	if err := cl.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := r.claim.Land(ctx); err != nil {
		t.Fatalf("b land: %v", err)
	}
	if _, h := acquireClaim(t, a, key); h.NodeID != "b" {
		t.Errorf("a after b landed: holder %+v, want b", h)
	}
}

// Close wakes this node's waiters with ErrClaimsClosed and releases its
// claims, which other nodes then take at once.
func TestClaimCloseReleasesAndWakes(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", 0)
	b := newClaimNode(t, url, "b", 0)
	c := newClaimNode(t, url, "c", 0)
	const key = "page/x/2"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	if cl, _ := acquireClaim(t, a, key); cl == nil {
		t.Fatal("a did not claim")
	}
	bWaiting := acquireClaimAsync(ctx, b, key)
	cWaiting := acquireClaimAsync(ctx, c, key)
	claimEventually(t, "b and c waiting", func() bool { return claimWaits(b, c) == 2 })

	if err := c.claims.Close(); err != nil {
		t.Fatalf("close c: %v", err)
	}
	if r := receiveClaim(t, cWaiting, 5*time.Second); !errors.Is(r.err, ErrClaimsClosed) {
		t.Errorf("c's wait after Close: %+v, want ErrClaimsClosed", r)
	}
	if err := a.claims.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	if r := receiveClaim(t, bWaiting, DefaultClaimLease/2); r.err != nil || r.claim == nil {
		t.Errorf("b after a closed: %+v, want a claim", r)
	}
	if _, _, err := a.claims.Acquire(ctx, key); !errors.Is(err, ErrClaimsClosed) {
		t.Errorf("Acquire after Close: %v, want ErrClaimsClosed", err)
	}
}

// Stale removes exactly the holder record it names; a stale report about an
// older record does nothing.
func TestClaimStale(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", 0)
	b := newClaimNode(t, url, "b", 0)
	c := newClaimNode(t, url, "c", 0)
	const key = "page/x/3"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	cl, _ := acquireClaim(t, a, key)
	if err := cl.Land(ctx); err != nil {
		t.Fatal(err)
	}
	_, ha := acquireClaim(t, b, key)
	if ha.NodeID != "a" {
		t.Fatalf("b: holder %+v, want a", ha)
	}
	// b asks a, a no longer has the page.
	if err := b.claims.Stale(ctx, key, ha.Revision); err != nil {
		t.Fatalf("stale: %v", err)
	}
	clb, _ := acquireClaim(t, b, key)
	if clb == nil {
		t.Fatal("b did not claim after Stale")
	}
	if err := clb.Land(ctx); err != nil {
		t.Fatal(err)
	}
	// c still carries a's old revision: its report must not remove b.
	if err := c.claims.Stale(ctx, key, ha.Revision); err != nil {
		t.Fatalf("stale with an old revision: %v", err)
	}
	if _, hb := acquireClaim(t, c, key); hb.NodeID != "b" || hb.Revision == ha.Revision {
		t.Errorf("c after an old Stale: holder %+v, want b at a new revision", hb)
	}
}

// A claimer that stalled past its lease while another node took over must
// not overwrite the new claim: Land fails with ErrClaimLost.
func TestClaimLandAfterTakeoverIsLost(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", lease)
	b := newClaimNode(t, url, "b", lease)
	c := newClaimNode(t, url, "c", lease)
	const key = "page/x/4"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	stalled, _ := acquireClaim(t, a, key)
	stalled.stopRefresh() // a long GC pause or partition: no refreshes
	r := receiveClaim(t, acquireClaimAsync(ctx, b, key), claimTestTimeout)
	if r.err != nil || r.claim == nil {
		t.Fatalf("b: %+v, want a claim after a's lease", r)
	}
	if err := stalled.Land(ctx); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("a's Land after takeover: %v, want ErrClaimLost", err)
	}
	if err := stalled.Release(ctx); err != nil {
		t.Fatalf("a's Release after takeover: %v", err)
	}
	if err := r.claim.Land(ctx); err != nil {
		t.Fatalf("b land: %v", err)
	}
	if _, h := acquireClaim(t, c, key); h.NodeID != "b" {
		t.Errorf("c: holder %+v, want b", h)
	}
	if st := a.claims.Stats(); st.Lost != 1 || st.Landed != 0 {
		t.Errorf("a stats %+v, want one lost claim and nothing landed", st)
	}
	if st := b.claims.Stats(); st.Takeovers != 1 {
		t.Errorf("b stats %+v, want one takeover", st)
	}
}

// A claimer whose lease lapsed while no one else wanted the page still
// records it: the page is in its store and the key is free.
func TestClaimLandAfterLapseWithoutTaker(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", lease)
	b := newClaimNode(t, url, "b", lease)
	const key = "page/x/5"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	cl, _ := acquireClaim(t, a, key)
	cl.stopRefresh()
	claimEventually(t, "claim expired", func() bool {
		_, err := a.claims.kv.Get(ctx, claimKVKey(key))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if err := cl.Land(ctx); err != nil {
		t.Fatalf("land after a lapse: %v", err)
	}
	if _, h := acquireClaim(t, b, key); h.NodeID != "a" {
		t.Errorf("b: holder %+v, want a", h)
	}
}

// A claim carries a TTL, a landed record none; Land twice is one landing;
// Forget removes only this node's record.
func TestClaimLandTwiceAndForget(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", 2*time.Second)
	b := newClaimNode(t, url, "b", 2*time.Second)
	const key = "page/x/6"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	cl, _ := acquireClaim(t, a, key)
	if ttl := claimRawMsg(t, a, key).Header.Get(jetstream.MsgTTLHeader); ttl != "2s" {
		t.Errorf("claim TTL header %q, want 2s", ttl)
	}
	// A Land that fails on its way (here: a context already cancelled)
	// leaves the claim to a retry.
	dead, kill := context.WithCancel(ctx)
	kill()
	if err := cl.Land(dead); err == nil || errors.Is(err, ErrClaimLost) {
		t.Fatalf("land with a cancelled context: %v, want a transient error", err)
	}
	if err := cl.Land(ctx); err != nil {
		t.Fatalf("land retried: %v", err)
	}
	landed := claimRawMsg(t, a, key)
	if ttl := landed.Header.Get(jetstream.MsgTTLHeader); ttl != "" {
		t.Errorf("landed record has TTL %q: it would expire with the lease", ttl)
	}
	if err := cl.Land(ctx); err != nil {
		t.Fatalf("second land: %v", err)
	}
	if again := claimRawMsg(t, a, key); again.Sequence != landed.Sequence {
		t.Errorf("second Land wrote revision %d over %d", again.Sequence, landed.Sequence)
	}
	if st := a.claims.Stats(); st.Landed != 1 {
		t.Errorf("landed = %d, want 1", st.Landed)
	}

	if err := b.claims.Forget(ctx, key); err != nil {
		t.Fatalf("b forget: %v", err)
	}
	if _, h := acquireClaim(t, b, key); h.NodeID != "a" {
		t.Fatalf("after b's Forget: holder %+v, want a kept", h)
	}
	if err := a.claims.Forget(ctx, key); err != nil {
		t.Fatalf("a forget: %v", err)
	}
	clb, _ := acquireClaim(t, b, key)
	if clb == nil {
		t.Fatal("after a's Forget b did not claim")
	}
	// Forget leaves a live claim alone, even its own node's.
	if err := b.claims.Forget(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := clb.Land(ctx); err != nil {
		t.Fatalf("b land after its own Forget of a claim: %v", err)
	}
}

// A cancelled context ends a wait at once.
func TestClaimWaitCancelled(t *testing.T) {
	t.Parallel()
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", 0)
	b := newClaimNode(t, url, "b", 0)
	const key = "page/x/7"
	cl, _ := acquireClaim(t, a, key)
	defer func() { _ = cl.Release(context.Background()) }()

	ctx, cancel := context.WithCancel(context.Background())
	waiting := acquireClaimAsync(ctx, b, key)
	claimEventually(t, "b waiting", func() bool { return claimWaits(b) == 1 })
	cancelled := time.Now()
	cancel()
	r := receiveClaim(t, waiting, claimTestTimeout)
	if !errors.Is(r.err, context.Canceled) || r.claim != nil {
		t.Fatalf("b after cancel: %+v, want context.Canceled", r)
	}
	if took := r.at.Sub(cancelled); took > time.Second {
		t.Errorf("wait ended %v after cancel", took)
	}
}

// A claim the server never expires (written without TTL, by an older
// version or a lost expiry) is taken over at the waiter's deadline.
func TestClaimStuckClaimTakenOverAtDeadline(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	url := startClaimNATS(t)
	a := newClaimNode(t, url, "a", lease)
	b := newClaimNode(t, url, "b", lease)
	const key = "page/x/8"
	ctx, cancel := context.WithTimeout(context.Background(), claimTestTimeout)
	defer cancel()

	stuck := claimRecord{State: claimRecClaimed, Key: key, Node: "gone", Addr: "gone:7070", Token: "t", LeaseMS: lease.Milliseconds()}
	if _, err := a.claims.kv.Put(ctx, claimKVKey(key), stuck.encode()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := receiveClaim(t, acquireClaimAsync(ctx, b, key), claimTestTimeout)
	if r.err != nil || r.claim == nil {
		t.Fatalf("b: %+v, want a claim", r)
	}
	if took := r.at.Sub(start); took < claimDeadline(lease)-lease/2 {
		t.Errorf("took over after %v, before the deadline %v", took, claimDeadline(lease))
	}
	if st := b.claims.Stats(); st.Takeovers != 1 {
		t.Errorf("b stats %+v, want one takeover", st)
	}
	// The new claim is a normal one: it expires and is refreshed.
	if ttl := claimRawMsg(t, b, key).Header.Get(jetstream.MsgTTLHeader); ttl != "1s" {
		t.Errorf("taken-over claim TTL %q, want 1s", ttl)
	}
	if err := r.claim.Land(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClaimNames(t *testing.T) {
	if got := ClaimsBucket("demo mesh", "gpu.wlcb"); got != "lakemesh_demo_mesh_gpu_wlcb_claims" {
		t.Errorf("bucket %q", got)
	}
	for _, key := range []string{"page/s3://b/k y/3", "ü*>.", strings.Repeat("x", 5000)} {
		k := claimKVKey(key)
		if len(k) != 66 || strings.ContainsAny(k, " */>") {
			t.Errorf("kv key %q for %q", k, key)
		}
	}
	url := startClaimNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := ClaimsConfig{Conn: nc, Mesh: "m", Region: "r", NodeID: "n", Addr: "n:1", Lease: 500 * time.Millisecond}
	if _, err := NewClaims(context.Background(), cfg); err == nil {
		t.Error("a lease under a second was accepted")
	}
	cfg.Lease = 1500 * time.Millisecond
	c, err := NewClaims(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.lease != 2*time.Second {
		t.Errorf("lease 1.5s became %v, want 2s", c.lease)
	}
}
