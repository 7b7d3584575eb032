package region

import "context"

// Member is one cache node of a region as membership sees it.
type Member struct {
	ID     string // unique node id, stable across restarts of the node
	Region string // region name from topology.yaml
	Addr   string // gRPC address, host:port
	// Capacity is the node's cache size in bytes; placement may weigh by it.
	Capacity int64
	// Host identifies the machine the node runs on (LocalHost), and Socket
	// is the path of a Unix socket serving the same gRPC as Addr. A client
	// whose LocalHost equals Host may dial Socket instead of Addr and skip
	// the loopback TCP stack. Both are empty for members that do not
	// advertise a socket (older nodes); those are reached at Addr only.
	Host   string
	Socket string
}

// Membership is the live set of healthy members of one region.
//
// Members returns a snapshot sorted by ID; the slice must not be modified.
// Changed returns a channel that is closed the next time the set changes,
// so a caller can wait with select and re-read Members (the pattern of
// Consul's blocking queries). Close stops any background watch and, for a
// membership that registered the local node, deregisters it.
type Membership interface {
	Members() []Member
	Changed() <-chan struct{}
	Close() error
}

// Registrar is implemented by memberships that can register the local node.
type Registrar interface {
	Register(ctx context.Context, self Member) error
}
