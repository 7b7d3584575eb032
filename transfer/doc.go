// Package transfer moves bytes between regions: each page version crosses
// into a region once, from the closest copy, within every line's budget,
// and is counted.
//
// # The pieces
//
//   - Source (source.go, pull.go) is a node's cachenode.Source in a
//     federated mesh. A miss of a lake homed in the node's region reads the
//     lake. Any other miss crosses into the region: under a claim
//     (claim.go), from a region whose cache holds the bytes over a route
//     cheaper than the home region's (asked with one Has call to that
//     region's owner of the page), else from the home region, else, when
//     the home region has no node up, from the lake directly over the line.
//     The node asks the owner of the page in the region one hop toward the
//     source to fill the bytes first (a relay fills over the rest of the
//     route and keeps a copy: store and forward, page by page), then pulls
//     them in pieces, each granted by the line's budget before it is
//     requested, so no byte crosses ahead of its grant.
//   - Claims (claim.go, claim_lease.go, claim_record.go): a claim per
//     crossing in the destination region's JetStream KV, created if absent
//     with a per-key TTL lease that the claimer refreshes; other nodes wait
//     on a KV watch and then read the landed bytes from the claimer
//     (inside the region), or take over when the lease expires. See the
//     comment at the top of claim.go for the states of a key.
//   - Budget (budget.go, governor*.go): one governor per line direction,
//     elected by lease in the receiving region's JetStream KV, grants bytes
//     by NATS request/reply from a token bucket at the budget, strictly by
//     class (interactive, rollout, preload, write-back), work-conserving.
//     A node that cannot reach it uses a static share of the budget, never
//     no limit. See the comment at the top of budget.go.
//   - Account (account.go): bytes, budget wait and cost per line
//     direction and class, counted by the receiving node, exported to
//     Prometheus and reported in the node's Info for `lakemesh status`.
//   - Peers (peers.go): gRPC connections to other regions' nodes, through
//     the line's HTTP CONNECT proxy when one is configured.
//
// # Exactly once, and its limits
//
// Inside a node the cache's per-block singleflight makes concurrent
// readers share one fetch; across the region's nodes the claim does. A
// claim is keyed by the crossing (file version, byte range), so a page
// filled whole is one key; random reads that fill different block runs of
// one page on different nodes (only when nodes disagree about the page's
// owner) may each cross. A crashed claimer's bytes in flight cross again
// when another node takes over.
//
// # Keeping to a budget
//
// Grants are small (at most MaxGrant, and about 1/128 of a second of the
// budget), so grants, and the token bucket's burst, are a small part of
// any second. Granted bytes do not cross at the moment of their grant: a
// sender that stalls and then sends what it owes makes a burst. So the
// governor keeps a ledger of the bytes it granted that have not been
// reported arrived (nodes report a running total with every request, or
// alone when they have nothing else on their way), and grants only while
// what was on its way a second ago plus everything granted since stays
// under the budget × (1 + arrivalSlack): the bytes that can arrive in any
// one second, whatever the senders do (governor_ledger.go). Each node
// bounds its own granted bytes not arrived to its part of the line's
// window (Source.window: budget × (rtt + slack) divided among the nodes
// pulling, which the governor counts and says with every grant), and the
// pages it pulls at once, so that pages are filled at the sender before
// their pieces are granted.
//
// # Boundaries and locks
//
// transfer imports cachenode, federation, region and policy; cachenode
// never imports it (a node's daemon wires a Source into its cache).
// Source.mu guards its lazily made limiters and semaphores and is never
// held across a call. Claims and Budget document their own goroutines;
// every goroutine is stopped by Close.
package transfer
