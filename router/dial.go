package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
)

// DialConfig says how a client finds its region: from one node's address
// (the node tells the region, its members, the topology and the page
// size), or from a Consul agent and a region name.
type DialConfig struct {
	Node   string // host:port of any cache node of the region
	Consul string // Consul agent HTTP address; used when Node is empty
	Region string // required with Consul
	// Topology overrides the node's; required to read lakes directly when
	// no node answers.
	Topology       *federation.Topology
	DirectFallback bool
	Readahead      int64
	Class          string // transfer class of the client's reads; see Config.Class
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// Dial connects a client to a region.
func Dial(ctx context.Context, dc DialConfig) (*Client, error) {
	cfg := Config{
		Topology:       dc.Topology,
		Region:         dc.Region,
		DirectFallback: dc.DirectFallback,
		Readahead:      dc.Readahead,
		Class:          dc.Class,
		TracerProvider: dc.TracerProvider,
		Logger:         dc.Logger,
	}
	var seeds []string
	switch {
	case dc.Node != "":
		seeds = []string{dc.Node}
	case dc.Consul != "":
		if dc.Region == "" {
			return nil, errors.New("a region is needed to find nodes in Consul (--region)")
		}
		m, err := region.NewConsul(ctx, region.ConsulConfig{Address: dc.Consul, Region: dc.Region, Logger: dc.Logger})
		if err != nil {
			return nil, fmt.Errorf("find region %s in Consul at %s: %w", dc.Region, dc.Consul, err)
		}
		cfg.Members = m
		for _, mem := range m.Members() {
			seeds = append(seeds, mem.Addr)
		}
		if len(seeds) == 0 {
			m.Close()
			return nil, fmt.Errorf("region %s has no healthy nodes in Consul at %s", dc.Region, dc.Consul)
		}
	default:
		return nil, errors.New("say where the region is: a node address (--node) or a Consul agent and region (--consul, --region)")
	}

	info, err := askInfo(ctx, seeds)
	if err != nil {
		if dc.DirectFallback && dc.Topology != nil && cfg.Members == nil {
			// No node answers: a client with the topology still reads the
			// lakes directly.
			cfg.Members = region.NewStatic()
			cfg.PageSize = 4 << 20
			return New(cfg)
		}
		return nil, err
	}
	if cfg.Topology == nil {
		src := info.GetTopologySource()
		if src == "" {
			src = "topology from node " + info.GetAddr()
		}
		cfg.Topology, err = federation.Parse(src, []byte(info.GetTopologyYaml()))
		if err != nil {
			return nil, fmt.Errorf("topology served by node %s: %w", info.GetAddr(), err)
		}
	}
	if cfg.Region == "" {
		cfg.Region = info.GetRegion()
	}
	cfg.PageSize = info.GetPageSize()
	if cfg.Members == nil {
		var ms []region.Member
		for _, pm := range info.GetMembers() {
			ms = append(ms, region.Member{ID: pm.GetId(), Region: pm.GetRegion(), Addr: pm.GetAddr(), Capacity: pm.GetCapacity(), Host: pm.GetHost(), Socket: pm.GetSocket()})
		}
		if len(ms) == 0 {
			ms = []region.Member{{ID: info.GetNodeId(), Region: info.GetRegion(), Addr: info.GetAddr()}}
		}
		cfg.Members = region.NewStatic(ms...)
	}
	return New(cfg)
}

// askInfo asks the first seed that answers to describe itself.
func askInfo(ctx context.Context, seeds []string) (*nodepb.InfoReply, error) {
	var errs []error
	for _, addr := range seeds {
		info, err := NodeInfo(ctx, addr)
		if err == nil {
			return info, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// NodeInfo asks one node to describe itself (region, members, topology,
// cache use), with a short deadline.
func NodeInfo(ctx context.Context, addr string) (*nodepb.InfoReply, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := nodepb.NewNodeClient(cc).Info(ctx, &nodepb.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("node %s did not answer: %w", addr, err)
	}
	return info, nil
}
