package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
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
}

func defaultNode() string {
	if n := os.Getenv("LAKEMESH_NODE"); n != "" {
		return n
	}
	return "127.0.0.1:7070"
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", "", "address of any cache node of the region (default $LAKEMESH_NODE or 127.0.0.1:7070)")
	fl.StringVar(&f.consul, "consul", os.Getenv("CONSUL_HTTP_ADDR"), "Consul agent HTTP address to find the region's nodes (with --region; instead of --node)")
	fl.StringVar(&f.region, "region", "", "region whose cache nodes serve this client (with --consul)")
	fl.StringVar(&f.topology, "topology", "", "topology.yaml to use instead of the one the nodes serve (needed for --direct when no node answers)")
	fl.BoolVar(&f.direct, "direct", false, "read the lake directly when no node of the region can serve (uses this machine's lake credentials)")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

func (f *clientFlags) dial(ctx context.Context, tp trace.TracerProvider) (*router.Client, error) {
	dc := router.DialConfig{
		Node:           f.node,
		Consul:         f.consul,
		Region:         f.region,
		DirectFallback: f.direct,
		TracerProvider: tp,
		Logger:         newLogger(f.logLevel),
	}
	if dc.Node == "" && dc.Consul == "" {
		dc.Node = defaultNode()
	}
	if dc.Node == "" && f.region == "" {
		return nil, fmt.Errorf("--consul needs --region: which region's nodes should serve this client")
	}
	if f.consul != "" && f.node != "" {
		return nil, fmt.Errorf("--node and --consul both given; use one")
	}
	if f.node == "" && f.consul != "" {
		dc.Node = ""
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
