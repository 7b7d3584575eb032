// Package region is one region's cache cluster as the rest of lakemesh
// sees it: who the members are (membership) and which member holds a key
// (placement). It knows nothing of pages, lines or other regions.
//
// # Membership
//
// A Member is one cache node: a stable ID (survives restarts, so a
// restarted node gets its own keys back), its region, the gRPC address
// peers dial, and its cache capacity in bytes. A Membership is the live set
// of healthy members, sorted by ID, with a Changed channel that is closed
// on the next change, so callers wait with select and re-read instead of
// polling.
//
// In every multi-process deployment the members are whatever Consul says
// is healthy. Each node registers itself with its local agent (Register):
// a service instance named "lakemesh" whose ID is the member ID, tagged
// "region=<name>", with meta region, grpc_addr and capacity, and a gRPC
// health check against the node's standard grpc.health.v1 service every
// second. A node that also serves on a Unix socket adds meta socket (its
// absolute path) and host (LocalHost: the machine id, else hostname and
// boot id), always together; a client whose LocalHost matches may dial the
// socket instead of grpc_addr. Members without them (nodes from before)
// are dialled at grpc_addr, and a socket without a host is ignored. A node that stops answering goes critical and drops out of the
// set within a check interval or two; one that stays critical for a
// minute is removed from the catalog; Close deregisters at once. There is
// no membership protocol of our own to get wrong: the healthy instances
// are the members.
//
// Consul follows the set with one goroutine per membership, owned by it
// and stopped by Close. The goroutine runs Consul blocking queries on the
// health endpoint (passing instances only, filtered on Service.Meta.region)
// and waits on the index Consul returned, resetting to zero when the index
// goes backwards (a restored snapshot or a new leader); the only timed wait
// is a bounded exponential backoff while the agent is unreachable. Entries
// whose meta does not describe a member are skipped and logged, never
// guessed at. Changed fires only when the parsed set differs; a check's
// output changing wakes the watch but nobody else. Datacenter lets a
// membership read another region's catalog through Consul WAN federation
// (one datacenter per region in production); such a membership must not
// Register, and Register refuses when Datacenter is not the agent's own.
//
// Static is the membership the single-process demo and tests use: the set
// is whatever Set last said.
//
// # Placement
//
// Placement is rendezvous hashing (highest random weight), a pure function
// of (key, members): every member scores the key, the highest score owns
// it, and the remaining members by falling score are the failover order
// (Rank). Nothing else enters the decision, so every process that sees the
// same member set agrees on every key without talking, and placement needs
// no state of its own. The score is
//
//	mix64(mix64(fnv1a(key)) ^ mix64(fnv1a'(member ID)))
//
// with 64-bit FNV-1a (fnv1a' starts from a salted offset basis) and the
// murmur3 fmix64 finalizer as mix64: fixed constants and no seed, so it is the same in every process, platform and release; changing
// it moves every key of every deployed region, which is why a golden test
// pins it. Placement is unweighted: Member.Capacity is carried for
// operators and for a weighted score later, but every member currently
// gets an equal share of keys.
//
// What a membership change does to placement follows from the scores of
// the other members not depending on the change:
//
//   - A member leaves: exactly its keys move, each to the next member in
//     that key's rank, i.e. the failover order is the future ownership.
//     Every other key stays where it was.
//   - A member joins: it takes the keys it now outscores everybody on,
//     about 1/n of them, each from its previous owner; no key moves
//     between two old members.
//
// So while membership changes, readers that briefly disagree about the set
// disagree only about keys of the member that changed, and a reader that
// finds a key's owner unreachable tries the next in Rank, which is where
// the key will live once the set settles.
//
// Rank, RankInto and Owner compute member digests on every call; Placement
// precomputes them for callers that place many keys on one set (rebuild it
// when Changed fires). Owner and RankInto do not allocate for sets of up
// to 128 members; Rank allocates the returned slice.
//
// # Concurrency
//
// Every exported type is safe for concurrent use. Consul holds two locks
// that are never held together: regMu serialises Register with Close's
// deregistration, mu guards the member set and is never held across a call
// to Consul.
package region
