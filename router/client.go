package router

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/policy"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// Config is what a Client needs. Dial fills it from a node address or a
// Consul agent; front ends embedded in a node fill it directly.
type Config struct {
	Topology *federation.Topology
	Region   string
	Members  region.Membership
	// PageSize must equal the region's nodes' page size (placement of a
	// byte depends on it); Dial asks a node for it.
	PageSize int64
	// Readahead is how many bytes past a sequential read are prefetched;
	// 0 means the policy default, negative disables it.
	Readahead int64
	// Class is the transfer class this client's reads cross lines under:
	// "" or "interactive" (first on every line), "rollout", "preload" or
	// "write-back". Bulk copies use a lower class so interactive readers
	// keep their share of a line's budget. Readahead prefetches are
	// filled as interactive: a bulk client disables readahead and reads
	// in large pieces instead.
	Class string
	// DirectFallback lets the client read a lake itself when no node of
	// the region can serve (credentials come from the client's own
	// environment). Off, a read fails with ErrNoNode instead.
	DirectFallback bool
	// DownFor is how long a node that failed a call is skipped by this
	// client before it is tried again (default 5s).
	DownFor time.Duration
	// PageBuffers bounds how many open Files may each keep a whole page
	// buffered for small sequential reads (default 32: 128 MiB of 4 MiB
	// pages). Files past the bound read exactly what is asked, so a
	// front end with thousands of open files stays within memory.
	PageBuffers int
	// Host is this process's host identity, compared with Member.Host:
	// a member on the same host is dialled at its Unix socket, falling
	// back to its TCP address when the socket cannot be dialled. ""
	// means region.LocalHost(); tests set another to force TCP.
	Host string
	// DisableShortCircuit makes the client read pages of members on its
	// host over gRPC only, never through page file descriptors the node
	// hands out (see shortcircuit.go).
	DisableShortCircuit bool
	// DialOptions are added to every gRPC connection.
	DialOptions    []grpc.DialOption
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// ErrNoNode means no node of the region could serve and direct lake reads
// are not allowed.
var ErrNoNode = errors.New("no cache node of the region could serve")

// ErrWriteInterrupted is a Put whose node failed after it had taken part
// of the input: nothing was acknowledged, and a caller that can read its
// input again retries (the failed node is skipped for a while).
var ErrWriteInterrupted = errors.New("the node failed mid-write; nothing was acknowledged, retry the write")

// Client reads and writes the namespace through a region's cache nodes.
// It is safe for concurrent use; Close releases its connections.
type Client struct {
	cfg      Config
	policies *policy.Set
	tracer   trace.Tracer
	log      *slog.Logger

	mu    sync.Mutex // guards conns, down, lakes
	conns map[string]*grpc.ClientConn
	down  map[string]time.Time // node addr -> skip until
	lakes map[string]ufs.FS    // mount path -> lake, opened on first direct read

	pageBufs  chan struct{} // one token per page buffer held by an open File
	freePages sync.Pool     // *[]byte: page buffers that Files released
	// frameBufs is the connections' gRPC buffer pool: page bytes arrive
	// in DATA frames read into its buffers and are copied out by the raw
	// codec, so it need not zero them (see cachenode.RawBufferPool).
	frameBufs *cachenode.RawBufferPool

	// sc reads pages of members on this host through descriptors of
	// their page files; nil when disabled.
	sc *shortCircuit

	// origin names this client's changes to the region's watchers, so
	// its own watch skips them (watch.go).
	origin string

	bg     sync.WaitGroup // readahead calls in flight
	bgSem  chan struct{}  // bounds them
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Topology == nil || cfg.Members == nil {
		return nil, errors.New("router: Config needs a Topology and Members")
	}
	if cfg.PageSize <= 0 {
		return nil, errors.New("router: Config.PageSize must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.DownFor <= 0 {
		cfg.DownFor = 5 * time.Second
	}
	if cfg.PageBuffers <= 0 {
		cfg.PageBuffers = 32
	}
	if cfg.Host == "" {
		cfg.Host = region.LocalHost()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var sc *shortCircuit
	if !cfg.DisableShortCircuit && cachenode.ShortCircuitSupported {
		sc = newShortCircuit(cfg.Host, cfg.DownFor, cfg.Logger)
	}
	return &Client{
		sc:        sc,
		cfg:       cfg,
		policies:  policy.NewSet(cfg.Topology.Policies),
		tracer:    cfg.TracerProvider.Tracer("github.com/lakemesh/lakemesh/router"),
		log:       cfg.Logger,
		conns:     map[string]*grpc.ClientConn{},
		down:      map[string]time.Time{},
		lakes:     map[string]ufs.FS{},
		bgSem:     make(chan struct{}, 16),
		pageBufs:  make(chan struct{}, cfg.PageBuffers),
		frameBufs: cachenode.NewRawBufferPool(),
		origin:    rand.Text(),
		ctx:       ctx,
		cancel:    cancel,
	}, nil
}

// Topology is the mesh the client works in.
func (c *Client) Topology() *federation.Topology { return c.cfg.Topology }

// Region is the region whose nodes the client uses.
func (c *Client) Region() string { return c.cfg.Region }

// Members is the region's current membership.
func (c *Client) Members() []region.Member { return c.cfg.Members.Members() }

// Close stops readahead and closes connections and lakes.
func (c *Client) Close() error {
	c.cancel()
	c.bg.Wait()
	if c.sc != nil {
		c.sc.close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	for _, l := range c.lakes {
		errs = append(errs, l.Close())
	}
	c.conns, c.lakes = map[string]*grpc.ClientConn{}, map[string]ufs.FS{}
	return errors.Join(errs...)
}

// node returns a client stub for a member, connecting on first use.
func (c *Client) node(addr string) (nodepb.NodeClient, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	return nodepb.NewNodeClient(cc), nil
}

// conn returns the connection to a member, connecting on first use. The
// connection is named by the member's TCP address either way; for a member
// on this host it is carried by the member's Unix socket.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 << 20)),
		// A stream's window holds a whole 4 MiB page, so a node sends a
		// page without waiting for a window update; the connection's
		// holds the pages of several readers at once (an S3 GET reads
		// a few pages ahead, and pages of one node share a connection).
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(32 << 20),
		grpc.WithWriteBufferSize(1 << 20),
		grpc.WithReadBufferSize(1 << 20),
		experimental.WithBufferPool(c.frameBufs),
	}, c.cfg.DialOptions...)
	if socket := c.localSocket(addr); socket != "" {
		// Ahead of DialOptions: a dialer given there (a test's proxy)
		// comes later and wins.
		opts = slices.Insert(opts, len(opts)-len(c.cfg.DialOptions), grpc.WithContextDialer(c.socketDialer(addr, socket)))
	}
	if _, off := c.cfg.TracerProvider.(noop.TracerProvider); !off {
		// Trace context crosses to the node only when someone records
		// spans; the handler costs microseconds on every call otherwise.
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(c.cfg.TracerProvider))))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to node %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// localSocket returns the Unix socket of the member at addr when it is on
// this client's host, else "".
func (c *Client) localSocket(addr string) string {
	for _, m := range c.cfg.Members.Members() {
		if m.Addr == addr && m.Socket != "" && m.Host == c.cfg.Host {
			return m.Socket
		}
	}
	return ""
}

// socketDialer dials a member's Unix socket, and its TCP address when the
// socket cannot be dialled (removed, not ours to open, the node restarted
// without one): the socket is a shortcut, never a reason to fail. It runs
// for every (re)connection, so a socket that comes back is used again.
func (c *Client) socketDialer(addr, socket string) func(context.Context, string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, target string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil {
			return conn, nil
		}
		c.log.Warn("node's unix socket cannot be dialled; using TCP", "node", addr, "socket", socket, "err", err)
		return d.DialContext(ctx, "tcp", target)
	}
}

// candidates returns the region's members in placement order for key:
// the owner first, then the failover order, with members this client saw
// fail recently moved to the end (still tried, last).
func (c *Client) candidates(key string) []region.Member {
	ranked := region.Rank(key, c.cfg.Members.Members())
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	up := make([]region.Member, 0, len(ranked))
	var down []region.Member
	for _, m := range ranked {
		if until, ok := c.down[m.Addr]; ok && now.Before(until) {
			down = append(down, m)
			continue
		}
		up = append(up, m)
	}
	return append(up, down...)
}

// markDown makes the client skip a node for a while after it failed.
func (c *Client) markDown(addr string, err error) {
	c.mu.Lock()
	c.down[addr] = time.Now().Add(c.cfg.DownFor)
	c.mu.Unlock()
	c.log.Warn("node failed, trying the next candidate", "node", addr, "err", err)
}

// nodeFailed says whether err means the node (not the request) failed, so
// the next candidate should be tried.
func nodeFailed(err error) bool {
	// Unavailable is what gRPC reports for a refused or reset connection
	// and a server going away mid-stream (kill -9). Errors the node sent
	// on purpose (not found, a lake failure) are answers, not node failures.
	return status.Code(err) == codes.Unavailable
}

// onCandidates runs call against the members ranked for key until one
// answers without a node failure. It returns ErrNoNode (wrapping the last
// failure) when none could.
func (c *Client) onCandidates(ctx context.Context, key string, call func(nodepb.NodeClient, region.Member) error) error {
	return c.onMembers(ctx, c.candidates(key), call)
}

// preferring moves the member with id to the front of members.
func preferring(members []region.Member, id string) []region.Member {
	i := slices.IndexFunc(members, func(m region.Member) bool { return m.ID == id })
	if i <= 0 {
		return members
	}
	out := append([]region.Member{members[i]}, members[:i]...)
	return append(out, members[i+1:]...)
}

// onMembers runs call against members in order until one answers without
// a node failure.
func (c *Client) onMembers(ctx context.Context, members []region.Member, call func(nodepb.NodeClient, region.Member) error) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: region %s has no healthy members", ErrNoNode, c.cfg.Region)
	}
	var last error
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return err
		}
		nc, err := c.node(m.Addr)
		if err == nil {
			err = call(nc, m)
		}
		if err == nil || !nodeFailed(err) {
			return cachenode.FromStatus(err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		c.markDown(m.Addr, err)
	}
	return fmt.Errorf("%w: all %d members failed, last: %v", ErrNoNode, len(members), last)
}

// takePageBuffer reserves one of the client's PageBuffers for an open File
// and returns it with n bytes (n <= PageSize), or false if every one is
// held.
func (c *Client) takePageBuffer(n int64) ([]byte, bool) {
	select {
	case c.pageBufs <- struct{}{}:
		return c.pageBuffer(n), true
	default:
		return nil, false
	}
}

// pageBuffer returns a buffer of n bytes for a File that holds a page
// buffer token: one that a File released if it is large enough, else a
// new one of exactly n bytes, so a 100 KiB file never costs a zeroed
// 4 MiB page.
func (c *Client) pageBuffer(n int64) []byte {
	if bp, ok := c.freePages.Get().(*[]byte); ok && int64(cap(*bp)) >= n {
		return (*bp)[:n]
	}
	return make([]byte, n)
}

// releasePageBuffer gives back a File's page buffer for reuse (a
// sync.Pool: the garbage collector frees buffers no File wants) and its
// token.
func (c *Client) releasePageBuffer(buf []byte) {
	buf = buf[:cap(buf)]
	c.freePages.Put(&buf)
	<-c.pageBufs
}
