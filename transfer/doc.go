// Package transfer will own cross-region byte movement: NATS-coordinated
// claims so each page version crosses into a region once, per-line budget
// enforcement (byte grants by priority class from one governor per line),
// and preload and rollout jobs with progress.
//
// It holds no code yet: in the foundation every node reads its lakes
// directly, inside one region. The federation issue builds it on the
// pieces the foundation already has for it: page identity that includes
// the file version (cachenode.FileRef.ID), the Source interface a cache
// fills from (cachenode.Source; a remote region becomes another Source),
// the owner node's per-block singleflight (the local half of "exactly
// once"), and the line model with budgets in federation.Topology.
package transfer
