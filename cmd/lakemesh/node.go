package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
)

func nodeCmd() *cobra.Command {
	var (
		topologyPath, regionName, id, listen, advertise, consul string
		cacheDir, diskSize, memSize, pageSize, blockSize        string
		logLevel, natsURL, natsCreds, metricsListen, socket     string
		lineProxies                                             map[string]string
		singleDC, pretouch                                      bool
	)
	cmd := &cobra.Command{
		Use:   "node [flags]",
		Short: "Run one cache node of one region",
		Long: `Run one cache node: it registers in its region's Consul (a health-checked
service carrying its region, gRPC address and capacity), serves reads of every
mount of the topology from its page cache (memory and disk tiers), fills
missing pages from the lakes, and leaves Consul cleanly on SIGINT/SIGTERM.

Lake credentials come from the environment (the standard AWS credential chain
for s3://, HADOOP_USER_NAME for hdfs://), never from the topology file; the
Consul token from CONSUL_HTTP_TOKEN, NATS credentials from a file named by
--nats-creds.

A restarted node with the same --cache-dir serves what it had cached without
reading the lakes again.

The node also serves gRPC on a Unix socket (--socket, by default
<cache-dir>/node.sock, mode 0660) and advertises it in Consul with this
machine's identity (/etc/machine-id, else hostname and boot id): clients on the
same machine read through the socket instead of loopback TCP, and fall back to
TCP when they cannot open it. A socket file left by a killed node is replaced.
Next to it, node.fd.sock (mode 0660) lets those clients read cached pages
themselves: out of the node's memory (process_vm_readv, which needs the right
to ptrace the node: the same user with Yama's ptrace_scope 0, or root) or
through read-only descriptors of its page files, every block checked against
its CRC-32C.

Across regions: a miss of a lake homed in another region crosses into this
region once (a claim in the region's NATS JetStream), from the cheapest region
that holds the bytes, over the cheapest usable route of lines, each piece
granted by the line's budget (one governor per line direction, elected among
the region's nodes). Other regions' members are read from Consul: each region
is a Consul datacenter named after it, WAN-federated (?dc=<region>), unless
--single-datacenter says every region registers in one datacenter.
--line-proxy sends the traffic to a region through an HTTP CONNECT proxy (the
line's egress). Line use, budget waits and cost are served at --metrics.`,
		Example: `  lakemesh node --topology topology.yaml --region gpu-wlcb --consul 127.0.0.1:8500 \
      --listen 10.0.0.5:7070 --cache-dir /var/cache/lakemesh --cache-size 500GiB --memory-size 16GiB`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := newLogger(logLevel)
			if regionName == "" {
				return fmt.Errorf("--region is required: which region of the topology this node belongs to")
			}
			if consul == "" {
				return fmt.Errorf("--consul is required (or CONSUL_HTTP_ADDR): the region's members are found in Consul")
			}
			data, err := os.ReadFile(topologyPath)
			if err != nil {
				return fmt.Errorf("read topology: %w", err)
			}
			topo, err := federation.Parse(topologyPath, data)
			if err != nil {
				return err
			}
			var disk, mem, page, block int64
			for _, sz := range []struct {
				flag, val string
				dst       *int64
			}{{"cache-size", diskSize, &disk}, {"memory-size", memSize, &mem}, {"page-size", pageSize, &page}, {"block-size", blockSize, &block}} {
				n, err := federation.ParseSize(sz.val)
				if err != nil {
					return fmt.Errorf("--%s %q: %w", sz.flag, sz.val, err)
				}
				*sz.dst = n
			}
			if advertise == "" {
				host, _, err := net.SplitHostPort(listen)
				if err != nil {
					return fmt.Errorf("--listen %q: %w", listen, err)
				}
				if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
					return fmt.Errorf("--listen %s listens on every address; say which one other machines reach this node at with --advertise", listen)
				}
			}
			if cacheDir == "" {
				return fmt.Errorf("--cache-dir is required: where the disk tier keeps pages")
			}
			socketPath := filepath.Join(filepath.Clean(cacheDir), "node.sock")
			switch {
			case cmd.Flags().Changed("socket") && (socket == "" || socket == "none"):
				socketPath = ""
			case cmd.Flags().Changed("socket"):
				if socketPath, err = filepath.Abs(socket); err != nil {
					return fmt.Errorf("--socket %q: %w", socket, err)
				}
			case len(socketPath) > maxSocketPath:
				// Only the default is dropped with a warning: a path the
				// operator named fails the start at listen instead.
				log.Warn("default socket path is too long for a Unix socket; serving TCP only (set --socket)", "socket", socketPath)
				socketPath = ""
			}
			tp, shutdown := tracing(ctx, "lakemesh-node", log)
			defer shutdown(ctx)
			n, err := startNode(ctx, nodeOptions{
				topology:      topo,
				topologyYAML:  data,
				region:        regionName,
				id:            id,
				listen:        listen,
				advertise:     advertise,
				socket:        socketPath,
				consul:        consul,
				natsURL:       natsURL,
				natsCreds:     natsCreds,
				lineProxies:   lineProxies,
				metricsListen: metricsListen,
				regions: func(ctx context.Context, name string) (region.Membership, error) {
					return followRegion(ctx, log, consul, name, singleDC)
				},
				cacheDir:    filepath.Clean(cacheDir),
				diskBytes:   disk,
				memoryBytes: mem,
				pretouch:    pretouch,
				pageSize:    page,
				blockSize:   block,
				log:         log,
				tp:          tp,
			})
			if err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				log.Info("shutting down", "node", n.opts.id)
			case err := <-n.served:
				log.Error("gRPC server stopped", "err", err)
			}
			return n.close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&topologyPath, "topology", "topology.yaml", "the mesh's topology file")
	f.StringVar(&regionName, "region", "", "region this node belongs to (required)")
	f.StringVar(&id, "id", "", "node id, stable across restarts (default <region>-<host>-<port>)")
	f.StringVar(&listen, "listen", "127.0.0.1:7070", "gRPC listen address")
	f.StringVar(&advertise, "advertise", "", "address clients and peers reach this node at (default: --listen)")
	f.StringVar(&consul, "consul", os.Getenv("CONSUL_HTTP_ADDR"), "HTTP address of the region's Consul agent (default $CONSUL_HTTP_ADDR)")
	f.StringVar(&natsURL, "nats", os.Getenv("NATS_URL"), "NATS server of the region: transfer claims, line budget governors, mesh-wide events (default $NATS_URL; without it a node fences only itself and uses a static share of each line budget)")
	f.StringVar(&natsCreds, "nats-creds", "", "NATS credentials file")
	f.StringToStringVar(&lineProxies, "line-proxy", nil, "REGION=http://host:port: reach the nodes of REGION through this HTTP CONNECT proxy (repeatable)")
	f.StringVar(&metricsListen, "metrics", "", "address to serve Prometheus /metrics on (line bytes, budget waits, cost), e.g. 127.0.0.1:9100")
	f.BoolVar(&singleDC, "single-datacenter", false, "every region registers in the local Consul datacenter (default: one datacenter per region, named after it, WAN-federated)")
	f.StringVar(&cacheDir, "cache-dir", "", "directory of the disk tier (required)")
	f.StringVar(&socket, "socket", "", `Unix socket to also serve gRPC on, for clients on this machine (default <cache-dir>/node.sock; "" or none: TCP only)`)
	f.StringVar(&diskSize, "cache-size", "10GiB", "disk tier size")
	f.StringVar(&memSize, "memory-size", "1GiB", "memory tier size (0 disables it)")
	f.BoolVar(&pretouch, "memory-pretouch", true, "fault the memory tier in at start, in the background, as a JVM's AlwaysPreTouch does, so the first fills do not pay for fresh memory; the node holds --memory-size from the start (false: grow as pages arrive)")
	f.StringVar(&pageSize, "page-size", "4MiB", "page size; every node of a region must use the same")
	f.StringVar(&blockSize, "block-size", "32KiB", "fill unit of random reads; divides the page size")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// maxSocketPath is the longest path a Unix socket can be bound at on Linux
// (sun_path is 108 bytes, NUL included).
const maxSocketPath = 107

// followRegion follows another region's members in Consul: in its own
// datacenter (WAN federation) unless singleDC. A region that cannot be
// reached now is not fatal: the node starts, treats the region as having
// no node (its lake, if any, is then read directly over the line) and
// follows it still, its members joining when Consul answers for them.
func followRegion(ctx context.Context, log *slog.Logger, consul, name string, singleDC bool) (region.Membership, error) {
	cfg := region.ConsulConfig{Address: consul, Region: name, Logger: log}
	if !singleDC {
		cfg.Datacenter = name
	}
	m, err := region.FollowConsul(cfg)
	if err != nil {
		return nil, err // startFederation names the region
	}
	// Start with the region's members when Consul can say them soon; a
	// region it cannot reach now (its datacenter away) is followed all
	// the same, its members joining when Consul answers.
	t := time.NewTimer(followRegionWait)
	defer t.Stop()
	select {
	case <-m.Ready():
	case <-t.C:
		log.Warn("region not reachable in Consul yet; starting without its members, which join when Consul answers for them",
			"region", name, "err", m.NotReady(context.DeadlineExceeded))
	case <-ctx.Done():
		m.Close()
		return nil, ctx.Err()
	}
	return m, nil
}

// followRegionWait is how long a starting node waits for another region's
// members before it starts without them (they join later).
const followRegionWait = 10 * time.Second
