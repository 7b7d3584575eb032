package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/router"
)

// clientFlags are the flags every client command shares: where the region
// is, and how to log.
type clientFlags struct {
	node     string
	consul   string
	region   string
	topology string
	direct   bool
	logLevel string
	flags    *pflag.FlagSet // to tell a flag given from its environment default
}

func defaultNode() string {
	if n := os.Getenv("LAKEMESH_NODE"); n != "" {
		return n
	}
	return "127.0.0.1:7070"
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.flags = fl
	fl.StringVar(&f.node, "node", "", "address of any cache node of the region (default $LAKEMESH_NODE or 127.0.0.1:7070)")
	fl.StringVar(&f.consul, "consul", os.Getenv("CONSUL_HTTP_ADDR"), "Consul agent HTTP address to find the region's nodes (with --region; instead of --node)")
	fl.StringVar(&f.region, "region", "", "region whose cache nodes serve this client (with --consul)")
	fl.StringVar(&f.topology, "topology", "", "topology.yaml to use instead of the one the nodes serve (needed for --direct when no node answers)")
	fl.BoolVar(&f.direct, "direct", false, "read the lake directly when no node of the region can serve (uses this machine's lake credentials)")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

func (f *clientFlags) dial(ctx context.Context, tp trace.TracerProvider) (*router.Client, error) {
	dc := router.DialConfig{
		Region:         f.region,
		DirectFallback: f.direct,
		TracerProvider: tp,
		Logger:         newLogger(f.logLevel),
	}
	// An explicit --node wins; Consul (from --consul or CONSUL_HTTP_ADDR)
	// is used with a --region; otherwise the default node.
	consulGiven := f.flags != nil && f.flags.Changed("consul")
	switch {
	case f.node != "":
		if consulGiven {
			return nil, fmt.Errorf("--node and --consul both given; use one")
		}
		dc.Node = f.node
	case f.consul != "" && f.region != "":
		dc.Consul = f.consul
	case consulGiven:
		return nil, fmt.Errorf("--consul needs --region: which region's nodes should serve this client")
	default:
		dc.Node = defaultNode()
	}
	if f.topology != "" {
		t, err := federation.Load(f.topology)
		if err != nil {
			return nil, err
		}
		dc.Topology = t
	}
	return router.Dial(ctx, dc)
}

// run dials the region, calls fn with the client, and closes it.
func (f *clientFlags) run(cmd *cobra.Command, fn func(ctx context.Context, c *router.Client) error) error {
	ctx := cmd.Context()
	c, err := f.dial(ctx, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}
