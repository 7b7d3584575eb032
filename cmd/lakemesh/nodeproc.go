package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/policy"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/transfer"
	"github.com/lakemesh/lakemesh/ufs"
)

// nodeOptions is everything one cache node is made of; `node` fills it
// from flags, `up` once per demo node.
type nodeOptions struct {
	topology     *federation.Topology
	topologyYAML []byte
	region       string
	id           string
	listen       string // gRPC listen address
	advertise    string // address other processes reach it at; default: the listen address
	// socket is a Unix socket path the node also serves gRPC on, advertised
	// with this host's identity so clients on the host skip loopback TCP;
	// "" serves TCP only.
	socket  string
	consul  string // Consul agent HTTP address; "" with members set
	members region.Membership
	// regions returns the membership of another region of the topology:
	// `up` gives static ones; `node` follows the region's Consul
	// datacenter (WAN federation) with ?dc=.
	regions func(ctx context.Context, name string) (region.Membership, error)
	// lineProxies maps a region to the HTTP CONNECT proxy that stands for
	// the line to it ("http://host:port"); regions not in it are dialled
	// directly.
	lineProxies   map[string]string
	metricsListen string // Prometheus /metrics address; "" none
	natsURL       string // NATS server of the region; "" runs without mesh events, claims or governors
	natsCreds     string // NATS credentials file (a secret: named by a flag, never in the topology)
	cacheDir      string
	// discardChecked: the caller warned about cacheDir's file system
	// already (StoreConfig.DiscardChecked).
	discardChecked bool
	diskBytes      int64
	memoryBytes    int64
	pretouch       bool // StoreConfig.PretouchMemory
	pageSize       int64
	blockSize      int64
	log            *slog.Logger
	tp             trace.TracerProvider
}

// runningNode is one started cache node.
type runningNode struct {
	opts       nodeOptions
	addr       string
	srv        *grpc.Server
	node       *cachenode.Node
	health     *health.Server
	store      *cachenode.Store
	cache      *cachenode.Cache
	lakes      []ufs.FS
	membership region.Membership
	ownsMember bool
	served     chan error
	nats       *nats.Conn
	events     *cachenode.MeshEvents
	remote     map[string]region.Membership // other regions, by name
	peers      *transfer.Peers
	claims     *transfer.Claims
	budgets    map[transfer.Direction]*transfer.Budget
	account    *transfer.Account
	metrics    *http.Server
	source     *transfer.Source
	journal    *cachenode.Journal
	stopUpload context.CancelFunc
	uploads    sync.WaitGroup

	registry *prometheus.Registry // the node's /metrics
	// shortCircuit serves page file descriptors to clients on this host
	// (shortcircuit.go); nil when not served.
	shortCircuit *cachenode.ShortCircuitServer
}

// startNode opens the node's lakes and cache, starts its gRPC server and
// registers it in its region. On error nothing is left running.
func startNode(ctx context.Context, o nodeOptions) (_ *runningNode, err error) {
	if _, ok := o.topology.Region(o.region); !ok {
		return nil, fmt.Errorf("region %q is not declared in %s", o.region, o.topology.Source)
	}
	n := &runningNode{opts: o, served: make(chan error, 2)}
	defer func() {
		if err != nil {
			n.close()
		}
	}()

	var lakes []cachenode.Lake
	for _, m := range o.topology.Mounts {
		fs, err := ufs.Open(ctx, m.UFS)
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Path, err)
		}
		n.lakes = append(n.lakes, fs)
		lakes = append(lakes, cachenode.Lake{Path: m.Path, FS: fs, MetadataTTL: m.MetadataTTL, ReadOnly: m.ReadOnly, Region: m.Region})
	}
	lakeSet := cachenode.NewLakes(lakes)

	policies := policy.NewSet(o.topology.Policies)
	if avail, ok := availableMemory(); o.pretouch && ok && o.memoryBytes > avail {
		// Faulting in more than the machine has free would push it
		// into swap or the OOM killer at start; grow as pages arrive.
		o.log.Warn("memory tier larger than the memory available: not pretouched, it grows as pages arrive",
			"memory_bytes", o.memoryBytes, "available_bytes", avail)
		o.pretouch = false
	}
	n.store, err = cachenode.OpenStore(cachenode.StoreConfig{
		Dir:            o.cacheDir,
		MemoryBytes:    o.memoryBytes,
		PretouchMemory: o.pretouch,
		DiskBytes:      o.diskBytes,
		PageSize:       o.pageSize,
		BlockSize:      o.blockSize,
		PackBelow:      cachenode.DefaultPackBelow,
		Classify: func(ref cachenode.FileRef) cachenode.Class {
			p := policies.For(ref.Mount + "/" + ref.Path)
			return cachenode.Class{Pin: p.Pin, TTL: p.TTL}
		},
		Logger:         o.log,
		DiscardChecked: o.discardChecked,
	})
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	n.journal, err = cachenode.OpenJournal(filepath.Join(o.cacheDir, "journal"), o.id, o.log)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	n.addr = o.advertise
	if n.addr == "" {
		n.addr = lis.Addr().String()
	}
	if o.id == "" {
		host, _ := os.Hostname()
		o.id = fmt.Sprintf("%s-%s-%s", o.region, host, portOf(n.addr))
		n.opts.id = o.id
	}

	if o.members != nil {
		n.membership = o.members
	} else {
		cm, err := region.NewConsul(ctx, region.ConsulConfig{Address: o.consul, Region: o.region, Logger: o.log})
		if err != nil {
			lis.Close()
			return nil, err
		}
		n.membership, n.ownsMember = cm, true
	}

	var node *cachenode.Node
	if o.natsURL != "" {
		opts := []nats.Option{nats.Name("lakemesh node " + o.id), nats.MaxReconnects(-1)}
		if o.natsCreds != "" {
			opts = append(opts, nats.UserCredentials(o.natsCreds))
		}
		n.nats, err = nats.Connect(o.natsURL, opts...)
		if err != nil {
			lis.Close()
			return nil, fmt.Errorf("connect to NATS at %s: %w", o.natsURL, err)
		}
		n.events, err = cachenode.JoinMesh(n.nats, o.topology.Mesh, o.log, func(path string) {
			if node != nil {
				node.InvalidateLocal(path)
			}
		})
		if err != nil {
			lis.Close()
			return nil, err
		}
	}

	if err := n.startFederation(ctx, lakeSet); err != nil {
		lis.Close()
		return nil, err
	}

	tracer := o.tp.Tracer("github.com/lakemesh/lakemesh/cachenode")
	node = cachenode.NewNode(cachenode.NodeConfig{
		ID:      o.id,
		Region:  o.region,
		Addr:    n.addr,
		Lakes:   lakeSet,
		Store:   n.store,
		Cache:   n.cache,
		Members: func() []*nodepb.Member { return memberProtos(n.membership.Members()) },
		PeerConn: func(addr string) (grpc.ClientConnInterface, error) {
			return n.peers.Conn(o.region, addr)
		},
		PageOwners: func(keys []string) []*nodepb.Member {
			placement := region.NewPlacement(n.membership.Members())
			owners := make([]*nodepb.Member, len(keys))
			for i, k := range keys {
				if m, ok := placement.Owner(k); ok {
					owners[i] = &nodepb.Member{Id: m.ID, Addr: m.Addr}
				}
			}
			return owners
		},
		Events: n.events,
		Residency: func(p, r string) error {
			if eff := policies.For(p); !eff.MayEnter(r) {
				return fmt.Errorf("%s may not leave for region %s (residency %v): %w", p, r, eff.Residency, cachenode.ErrResidency)
			}
			return nil
		},
		LineUse:      n.account.LineUse,
		OtherMembers: n.otherMembers,
		Journal:      n.journal,
		WriteBack:    func(p string) bool { return policies.For(p).WriteMode == policy.WriteBack },
		Upload:       n.uploadToHome,
		Pull: func(ctx context.Context, from, addr string, ref cachenode.FileRef, class string) io.ReadCloser {
			c, _ := transfer.ParseClass(class)
			return n.source.Pull(ctx, from, addr, ref, c)
		},
		Announce:       n.announce,
		Topology:       o.topologyYAML,
		TopologySource: o.topology.Source,
		Logger:         o.log,
		Tracer:         tracer,
	})
	n.node = node
	n.registerWatchMetrics()
	n.registerStoreMetrics()
	const streamWorkers = 64
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(16 << 20),
		grpc.InitialWindowSize(4 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.WriteBufferSize(1 << 20),
		grpc.ReadBufferSize(1 << 20),
		// Write streams' DATA frames are read into buffers that are not
		// zeroed first (see cachenode.RawBufferPool): gRPC's default
		// pool zeroed every byte a client wrote.
		experimental.BufferPool(cachenode.NewRawBufferPool()),
		// Long-lived goroutines serve the streams (more than these
		// get one each, as without the option): a new goroutine per
		// RPC grew its stack by copying on every Read a fill serves.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if _, off := o.tp.(noop.TracerProvider); !off {
		serverOpts = append(serverOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.tp))))
	}
	n.srv = grpc.NewServer(serverOpts...)
	nodepb.RegisterNodeServer(n.srv, node)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.srv, n.health)
	if o.socket != "" {
		ulis, err := listenSocket(o.socket)
		if err != nil {
			lis.Close()
			return nil, err
		}
		// GracefulStop closes it, and a closed UnixListener unlinks its
		// file; a killed node's file is removed by the next start.
		go func() { n.served <- n.srv.Serve(ulis) }()
		n.serveShortCircuit(lakeSet)
	}
	go func() { n.served <- n.srv.Serve(lis) }()
	uctx, stop := context.WithCancel(context.Background())
	n.stopUpload = stop
	n.uploads.Add(1)
	go func() { defer n.uploads.Done(); node.RunUploads(uctx) }()
	n.uploads.Add(1)
	go func() { defer n.uploads.Done(); n.announceToJoiners(uctx, node) }()

	if r, ok := n.membership.(region.Registrar); ok && n.ownsMember {
		self := region.Member{ID: o.id, Region: o.region, Addr: n.addr, Capacity: o.diskBytes}
		if o.socket != "" {
			self.Host, self.Socket = region.LocalHost(), o.socket
		}
		if err := r.Register(ctx, self); err != nil {
			return nil, fmt.Errorf("register node %s in Consul: %w", o.id, err)
		}
	}
	st := n.store.Stats()
	o.log.Info("cache node serving", "node", o.id, "region", o.region, "addr", n.addr, "socket", o.socket,
		"cache_dir", o.cacheDir, "disk_bytes", o.diskBytes, "memory_bytes", o.memoryBytes,
		"page_size", n.store.PageSize(), "pages_on_disk", st.Pages, "mounts", len(lakes))
	return n, nil
}

// close stops the node: it leaves membership first (so clients move on),
// drains in-flight calls for a few seconds, then closes the cache and lakes.
func (n *runningNode) close() error {
	var errs []error
	if n.health != nil {
		n.health.Shutdown()
	}
	if n.membership != nil && n.ownsMember {
		errs = append(errs, n.membership.Close())
	}
	if n.node != nil {
		n.node.StopWatches() // watch streams last until told, and would hold GracefulStop
	}
	if n.srv != nil {
		done := make(chan struct{})
		go func() { n.srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.srv.Stop()
			<-done
		}
	}
	if n.shortCircuit != nil {
		n.shortCircuit.Close()
	}
	if n.stopUpload != nil {
		n.stopUpload() // what is not uploaded stays in the journal for the next start
		n.uploads.Wait()
	}
	if n.metrics != nil {
		n.metrics.Close()
	}
	if n.cache != nil {
		errs = append(errs, n.cache.Close())
	}
	for _, b := range n.budgets {
		errs = append(errs, b.Close())
	}
	if n.claims != nil {
		errs = append(errs, n.claims.Close())
	}
	for _, m := range n.remote {
		errs = append(errs, m.Close())
	}
	if n.peers != nil {
		n.peers.Close()
	}
	if n.events != nil {
		errs = append(errs, n.events.Close())
	}
	if n.nats != nil {
		n.nats.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	for _, l := range n.lakes {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// listenSocket listens on the Unix socket at path, readable and writable by
// the node's user and group only. A socket file left by a node that was
// killed is removed first; one that a running process still answers on,
// or a file that is not a socket, is an error, never removed.
func listenSocket(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("--socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--socket %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--socket %s: remove stale socket: %w", path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	return lis, nil
}

func memberProtos(ms []region.Member) []*nodepb.Member {
	out := make([]*nodepb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, &nodepb.Member{Id: m.ID, Region: m.Region, Addr: m.Addr, Capacity: m.Capacity, Host: m.Host, Socket: m.Socket})
	}
	return out
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

// startFederation makes the node a member of the mesh: it follows the
// other regions' members, opens its claims and the budgets of the lines
// into its region (with NATS), counts line traffic, serves /metrics, and
// fills its cache through the federated source.
func (n *runningNode) startFederation(ctx context.Context, lakeSet *cachenode.Lakes) error {
	o := n.opts
	reg := prometheus.NewRegistry()
	n.registry = reg
	n.account = transfer.NewAccount(o.topology, reg)
	var err error
	if n.peers, err = transfer.NewPeers(o.lineProxies); err != nil {
		return err
	}
	n.remote = map[string]region.Membership{}
	for _, r := range o.topology.Regions {
		if r.Name == o.region || o.regions == nil {
			continue
		}
		m, err := o.regions(ctx, r.Name)
		if err != nil {
			return fmt.Errorf("follow region %s: %w", r.Name, err)
		}
		n.remote[r.Name] = m
	}
	members := func(name string) []region.Member {
		if name == o.region {
			return n.membership.Members()
		}
		if m := n.remote[name]; m != nil {
			return m.Members()
		}
		return nil
	}
	share := func(d transfer.Direction) int64 {
		l, _ := o.topology.LineBetween(d.From, d.To)
		return int64(l.Budget) / int64(max(1, len(n.membership.Members())))
	}
	n.budgets = map[transfer.Direction]*transfer.Budget{}
	if n.nats != nil {
		n.claims, err = transfer.NewClaims(ctx, transfer.ClaimsConfig{
			Conn: n.nats, Mesh: o.topology.Mesh, Region: o.region, NodeID: o.id, Addr: n.addr, Logger: o.log,
		})
		if err != nil {
			return fmt.Errorf("transfer claims in region %s: %w", o.region, err)
		}
		for _, l := range o.topology.LinesOf(o.region) {
			from := l.Between[0]
			if from == o.region {
				from = l.Between[1]
			}
			d := transfer.Direction{From: from, To: o.region}
			b, err := transfer.NewBudget(ctx, transfer.BudgetConfig{
				Mesh: o.topology.Mesh, Dir: d, Rate: int64(l.Budget), RTT: l.RTT, Conn: n.nats, NodeID: o.id,
				StaticShare: func() int64 { return share(d) }, Logger: o.log,
			})
			if err != nil {
				return fmt.Errorf("budget of line %s: %w", d, err)
			}
			n.budgets[d] = b
		}
	}
	n.source = transfer.NewSource(transfer.SourceConfig{
		Topology:    o.topology,
		Region:      o.region,
		NodeID:      o.id,
		PageSize:    n.store.PageSize(),
		Lake:        lakeSet,
		Members:     members,
		Peers:       n.peers,
		Claims:      n.claims,
		Budget:      func(d transfer.Direction) *transfer.Budget { return n.budgets[d] },
		StaticShare: share,
		Account:     n.account,
		Logger:      o.log,
	})
	n.cache = cachenode.NewCache(n.store, n.journal.Source(n.source), cachenode.CacheConfig{Logger: o.log})
	if o.metricsListen != "" {
		lis, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics %s: %w", o.metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		n.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go n.metrics.Serve(lis)
	}
	return nil
}

func (n *runningNode) otherMembers() []*nodepb.Member {
	var out []*nodepb.Member
	for _, r := range n.opts.topology.Regions {
		if m := n.remote[r.Name]; m != nil {
			out = append(out, memberProtos(m.Members())...)
		}
	}
	return out
}

// uploadToHome asks a node of the lake's home region to pull a journaled
// file from this node over the line (cachenode.NodeConfig.Upload).
func (n *runningNode) uploadToHome(ctx context.Context, e cachenode.JournalEntry, class string) (*nodepb.Entry, error) {
	m, _, ok := n.opts.topology.Resolve(e.Path)
	if !ok {
		return nil, fmt.Errorf("%s: %w", e.Path, cachenode.ErrNoMount)
	}
	var members []region.Member
	if r := n.remote[m.Region]; r != nil {
		members = r.Members()
	}
	owner, ok := region.Owner("meta:"+e.Path, members)
	if !ok {
		return nil, cachenode.ErrNoHomeNode
	}
	cc, err := n.peers.Conn(m.Region, owner.Addr)
	if err != nil {
		return nil, err
	}
	reply, err := nodepb.NewNodeClient(cc).Upload(ctx, &nodepb.UploadRequest{
		File:       &nodepb.FileRef{Path: e.Path, Version: e.Version(), Size: e.Size},
		FromRegion: n.opts.region,
		FromNode:   n.addr,
		Class:      class,
		Attrs:      e.Attrs,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s of region %s: %w", owner.ID, m.Region, cachenode.FromStatus(err))
	}
	return reply.GetEntry(), nil
}

// announce tells every other node of the region about write-back files
// (cachenode.NodeConfig.Announce): the node that lists their directory
// shows them, and a node that answers a stat of one (the path's next node
// while this one is down, or one that joined and owns the path now)
// answers the journal's version, not the lake's older one.
func (n *runningNode) announce(ctx context.Context, req *nodepb.PendingRequest) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, m := range n.membership.Members() {
		if m.ID == n.opts.id {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := n.peers.Conn(n.opts.region, m.Addr)
			if err == nil {
				_, err = nodepb.NewNodeClient(cc).Pending(ctx, req)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s: %w", m.ID, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// announceToJoiners tells nodes that join the region about the files in
// this node's journal, which they never heard of, until ctx ends.
func (n *runningNode) announceToJoiners(ctx context.Context, node *cachenode.Node) {
	changed := n.membership.Changed() // before the set it changes from
	known := map[string]bool{}
	for _, m := range n.membership.Members() {
		known[m.ID] = true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		changed = n.membership.Changed()
		joined := false
		now := map[string]bool{}
		for _, m := range n.membership.Members() {
			now[m.ID] = true
			joined = joined || !known[m.ID]
		}
		known = now
		if joined {
			node.AnnouncePending(ctx)
		}
	}
}

// availableMemory is the memory the kernel says new work can use without
// swapping (MemAvailable in /proc/meminfo); false where it is not known.
func availableMemory() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, false
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// registerWatchMetrics exports the node's watch streams (the mounts that
// follow the region's changes) on /metrics.
func (n *runningNode) registerWatchMetrics() {
	if n.registry == nil {
		return
	}
	node := n.node
	n.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lakemesh_watchers", Help: "Watch streams open: front ends (FUSE mounts) told at once of the changes made in the region."},
			func() float64 { return float64(node.WatchStats().Watchers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lakemesh_watch_changes_total", Help: "Changes passed on to the watch streams."},
			func() float64 { return float64(node.WatchStats().Changes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lakemesh_watch_dropped_total", Help: "Watch streams ended because they fell behind (their mounts then drop everything they cached)."},
			func() float64 { return float64(node.WatchStats().Dropped) }),
	)
}

// registerStoreMetrics exports the page store on /metrics: what each tier
// holds and may hold, hits, misses, evictions, corrupt blocks dropped,
// and how the memory tier's page buffers are reused (fresh memory costs a
// fill the kernel's clearing of every page of it).
func (n *runningNode) registerStoreMetrics() {
	if n.registry == nil || n.store == nil {
		return
	}
	n.registry.MustRegister(storeCollector{n.store})
}

// storeCollector reads the store's statistics once per scrape.
type storeCollector struct{ s *cachenode.Store }

var (
	storeBytesDesc     = prometheus.NewDesc("lakemesh_cache_bytes", "Bytes of page blocks each tier of the page store holds.", []string{"tier"}, nil)
	storeLimitDesc     = prometheus.NewDesc("lakemesh_cache_limit_bytes", "Each tier's size limit (--memory-size, --cache-size).", []string{"tier"}, nil)
	storePagesDesc     = prometheus.NewDesc("lakemesh_cache_pages", "Pages held in either tier.", nil, nil)
	storePinnedDesc    = prometheus.NewDesc("lakemesh_cache_pinned_pages", "Pages held that are pinned (never evicted).", nil, nil)
	storeHitsDesc      = prometheus.NewDesc("lakemesh_cache_hits_total", "Page reads served from memory only, or needing the disk tier.", []string{"tier"}, nil)
	storeMissesDesc    = prometheus.NewDesc("lakemesh_cache_misses_total", "Page reads that found blocks missing (and filled them).", nil, nil)
	storeEvictDesc     = prometheus.NewDesc("lakemesh_cache_evictions_total", "Pages evicted from each tier.", []string{"tier"}, nil)
	storeEvictedDesc   = prometheus.NewDesc("lakemesh_cache_evicted_bytes_total", "Bytes freed by eviction, both tiers.", nil, nil)
	storeCorruptDesc   = prometheus.NewDesc("lakemesh_cache_corrupt_blocks_total", "Blocks dropped because their checksum failed (refetched, never served).", nil, nil)
	storeFullDesc      = prometheus.NewDesc("lakemesh_cache_above_high_water", "1 while a tier is above its high watermark with nothing evictable (pinned or being written).", []string{"tier"}, nil)
	storeFreshDesc     = prometheus.NewDesc("lakemesh_memory_fresh_buffers_total", "Page buffers that fills took from new memory, not from evicted pages (pretouched ones not counted).", nil, nil)
	storeCollectedDesc = prometheus.NewDesc("lakemesh_memory_buffer_collections_total", "Garbage collections run to get evicted pages' buffers back for the next fills.", nil, nil)
	storeReusedDesc    = prometheus.NewDesc("lakemesh_pack_slots_reused_total", "Pack slots of dropped pages that new pages took again.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storeBytesDesc, storeLimitDesc, storePagesDesc, storePinnedDesc, storeHitsDesc, storeMissesDesc,
		storeEvictDesc, storeEvictedDesc, storeCorruptDesc, storeFullDesc, storeFreshDesc, storeCollectedDesc, storeReusedDesc} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, t := range []struct {
		name         string
		used, limit  int64
		hits, evicts int64
		above        bool
	}{
		{"memory", st.MemoryBytes, st.MemoryLimit, st.MemoryHits, st.MemoryEvictions, st.MemoryAboveWater},
		{"disk", st.DiskBytes, st.DiskLimit, st.DiskHits, st.DiskEvictions, st.DiskAboveWater},
	} {
		gauge(storeBytesDesc, float64(t.used), t.name)
		gauge(storeLimitDesc, float64(t.limit), t.name)
		gauge(storeFullDesc, flag(t.above), t.name)
		counter(storeHitsDesc, t.hits, t.name)
		counter(storeEvictDesc, t.evicts, t.name)
	}
	gauge(storePagesDesc, float64(st.Pages))
	gauge(storePinnedDesc, float64(st.PinnedPages))
	counter(storeMissesDesc, st.Misses)
	counter(storeEvictedDesc, st.EvictedBytes)
	counter(storeCorruptDesc, st.CorruptBlocks)
	counter(storeFreshDesc, st.FreshBuffers)
	counter(storeCollectedDesc, st.BufferCollections)
	counter(storeReusedDesc, st.PackSlotsReused)
}
