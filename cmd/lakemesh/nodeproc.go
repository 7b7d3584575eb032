package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/nats-io/nats.go"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/policy"
	"github.com/lakemesh/lakemesh/region"
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
	consul       string // Consul agent HTTP address; "" with members set
	members      region.Membership
	natsURL      string // NATS server of the region; "" runs without mesh events
	natsCreds    string // NATS credentials file (a secret: named by a flag, never in the topology)
	cacheDir     string
	diskBytes    int64
	memoryBytes  int64
	pageSize     int64
	blockSize    int64
	log          *slog.Logger
	tp           trace.TracerProvider
}

// runningNode is one started cache node.
type runningNode struct {
	opts       nodeOptions
	addr       string
	srv        *grpc.Server
	health     *health.Server
	store      *cachenode.Store
	cache      *cachenode.Cache
	lakes      []ufs.FS
	membership region.Membership
	ownsMember bool
	served     chan error
	nats       *nats.Conn
	events     *cachenode.MeshEvents
}

// startNode opens the node's lakes and cache, starts its gRPC server and
// registers it in its region. On error nothing is left running.
func startNode(ctx context.Context, o nodeOptions) (_ *runningNode, err error) {
	if _, ok := o.topology.Region(o.region); !ok {
		return nil, fmt.Errorf("region %q is not declared in %s", o.region, o.topology.Source)
	}
	n := &runningNode{opts: o, served: make(chan error, 1)}
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
		lakes = append(lakes, cachenode.Lake{Path: m.Path, FS: fs, MetadataTTL: m.MetadataTTL, ReadOnly: m.ReadOnly})
	}
	lakeSet := cachenode.NewLakes(lakes)

	policies := policy.NewSet(o.topology.Policies)
	n.store, err = cachenode.OpenStore(cachenode.StoreConfig{
		Dir:         o.cacheDir,
		MemoryBytes: o.memoryBytes,
		DiskBytes:   o.diskBytes,
		PageSize:    o.pageSize,
		BlockSize:   o.blockSize,
		Classify: func(ref cachenode.FileRef) cachenode.Class {
			p := policies.For(ref.Mount + "/" + ref.Path)
			return cachenode.Class{Pin: p.Pin, TTL: p.TTL}
		},
		Logger: o.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	n.cache = cachenode.NewCache(n.store, lakeSet, cachenode.CacheConfig{Logger: o.log})

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

	tracer := o.tp.Tracer("github.com/lakemesh/lakemesh/cachenode")
	node = cachenode.NewNode(cachenode.NodeConfig{
		ID:             o.id,
		Region:         o.region,
		Addr:           n.addr,
		Lakes:          lakeSet,
		Store:          n.store,
		Cache:          n.cache,
		Members:        func() []*nodepb.Member { return memberProtos(n.membership.Members()) },
		Events:         n.events,
		Topology:       o.topologyYAML,
		TopologySource: o.topology.Source,
		Logger:         o.log,
		Tracer:         tracer,
	})
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(16 << 20),
		grpc.InitialWindowSize(4 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.WriteBufferSize(1 << 20),
		grpc.ReadBufferSize(1 << 20),
	}
	if _, off := o.tp.(noop.TracerProvider); !off {
		serverOpts = append(serverOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.tp))))
	}
	n.srv = grpc.NewServer(serverOpts...)
	nodepb.RegisterNodeServer(n.srv, node)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.srv, n.health)
	go func() { n.served <- n.srv.Serve(lis) }()

	if r, ok := n.membership.(region.Registrar); ok && n.ownsMember {
		self := region.Member{ID: o.id, Region: o.region, Addr: n.addr, Capacity: o.diskBytes}
		if err := r.Register(ctx, self); err != nil {
			return nil, fmt.Errorf("register node %s in Consul: %w", o.id, err)
		}
	}
	st := n.store.Stats()
	o.log.Info("cache node serving", "node", o.id, "region", o.region, "addr", n.addr,
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
	if n.events != nil {
		errs = append(errs, n.events.Close())
	}
	if n.nats != nil {
		n.nats.Close()
	}
	if n.cache != nil {
		errs = append(errs, n.cache.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	for _, l := range n.lakes {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

func memberProtos(ms []region.Member) []*nodepb.Member {
	out := make([]*nodepb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, &nodepb.Member{Id: m.ID, Region: m.Region, Addr: m.Addr, Capacity: m.Capacity})
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
