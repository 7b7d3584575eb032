package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
)

func upCmd() *cobra.Command {
	var (
		topologyPath, workdir, logLevel string
		nodesPerRegion, basePort        int
		memSize, diskSize               string
	)
	cmd := &cobra.Command{
		Use:   "up [flags]",
		Short: "Run a whole demo mesh in this process",
		Long: `Run every region of a topology in this one process, so a newcomer sees the
mesh work in seconds: each region gets its cache nodes (membership without
Consul), and every lake is replaced by a file:// lake under the work
directory, seeded with sample data (a README, training shards, a model).

It prints the commands to try next and runs until Ctrl-C. The first region
that holds no lake (the GPU region of the example) listens on the base port,
so client commands reach it without flags. Deployments across machines use
'lakemesh node' with Consul instead.`,
		Example: "  lakemesh up\n  lakemesh up --topology my-topology.yaml --workdir /tmp/demo --nodes 3",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := newLogger(logLevel)
			data, err := os.ReadFile(topologyPath)
			if err != nil {
				return fmt.Errorf("read topology: %w (run from the repository root, or give --topology)", err)
			}
			if _, err := federation.Parse(topologyPath, data); err != nil {
				return err
			}
			mem, err := federation.ParseSize(memSize)
			if err != nil {
				return fmt.Errorf("--memory-size %q: %w", memSize, err)
			}
			disk, err := federation.ParseSize(diskSize)
			if err != nil {
				return fmt.Errorf("--cache-size %q: %w", diskSize, err)
			}
			if nodesPerRegion < 1 {
				return fmt.Errorf("--nodes must be at least 1")
			}
			workdir, err = filepath.Abs(workdir)
			if err != nil {
				return err
			}
			demoYAML, err := demoTopology(data, workdir)
			if err != nil {
				return fmt.Errorf("%s: %w", topologyPath, err)
			}
			demoPath := filepath.Join(workdir, "topology.yaml")
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(demoPath, demoYAML, 0o644); err != nil {
				return err
			}
			topo, err := federation.Parse(demoPath, demoYAML)
			if err != nil {
				return err
			}
			if err := seedLakes(topo); err != nil {
				return fmt.Errorf("seed demo lakes: %w", err)
			}

			regions := demoRegionOrder(topo)
			buses, err := startRegionNATS(topo, regions, filepath.Join(workdir, "nats"))
			if err != nil {
				return err
			}
			defer func() {
				for _, b := range buses {
					b.Shutdown()
				}
			}()

			tp, shutdown := tracing(ctx, "lakemesh-up", log)
			defer shutdown(context.Background())

			var nodes []*runningNode
			defer func() {
				for _, n := range nodes {
					n.close()
				}
			}()
			addrs := map[string][]string{}
			memberships := map[string]region.Membership{}
			var all [][]region.Member
			for i, r := range regions {
				var ms []region.Member
				for j := 0; j < nodesPerRegion; j++ {
					addr := fmt.Sprintf("127.0.0.1:%d", basePort+i*10+j)
					m := region.Member{ID: fmt.Sprintf("%s-%d", r, j+1), Region: r, Addr: addr, Capacity: disk}
					// Every demo node is on this host: clients here read
					// through the sockets, as they would from a node's host.
					if sock := filepath.Join(workdir, "cache", m.ID, "node.sock"); len(sock) <= maxSocketPath {
						m.Host, m.Socket = region.LocalHost(), sock
					}
					ms = append(ms, m)
					addrs[r] = append(addrs[r], addr)
				}
				memberships[r] = region.NewStatic(ms...)
				all = append(all, ms)
			}
			// Every demo node's cache is under the work directory: one
			// warning about its file system, not one per node.
			cacheRoot := filepath.Join(workdir, "cache")
			if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
				return err
			}
			cachenode.WarnIfDiscard(log, cacheRoot)
			for i, r := range regions {
				for _, m := range all[i] {
					n, err := startNode(ctx, nodeOptions{
						topology:     topo,
						topologyYAML: demoYAML,
						region:       r,
						id:           m.ID,
						listen:       m.Addr,
						socket:       m.Socket,
						members:      memberships[r],
						regions: func(_ context.Context, name string) (region.Membership, error) {
							return memberships[name], nil
						},
						natsURL:        buses[r].ClientURL(),
						cacheDir:       filepath.Join(cacheRoot, m.ID),
						discardChecked: true,
						diskBytes:      disk,
						memoryBytes:    mem,
						log:            log.With("node", m.ID),
						tp:             tp,
					})
					if err != nil {
						return fmt.Errorf("start node %s: %w", m.ID, err)
					}
					nodes = append(nodes, n)
				}
			}
			printDemoHelp(topo, regions, addrs, workdir, buses)
			<-ctx.Done()
			fmt.Println("\nstopping the demo mesh")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&topologyPath, "topology", "topology.yaml", "topology to run")
	f.StringVar(&workdir, "workdir", filepath.Join(os.TempDir(), "lakemesh-demo"), "where the demo lakes and caches live")
	f.IntVar(&nodesPerRegion, "nodes", 2, "cache nodes per region")
	f.IntVar(&basePort, "port", 7070, "first gRPC port; region i, node j listens on port+10*i+j")
	f.StringVar(&memSize, "memory-size", "256MiB", "memory tier of each node")
	f.StringVar(&diskSize, "cache-size", "2GiB", "disk tier of each node")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	return cmd
}

// demoTopology rewrites every mount's ufs to a file:// lake under workdir,
// keeping the rest of the file (comments included) as written.
func demoTopology(data []byte, workdir string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("empty topology")
	}
	mounts := mapValue(doc.Content[0], "mounts")
	if mounts == nil {
		return nil, fmt.Errorf("no mounts to run")
	}
	for _, m := range mounts.Content {
		p, u := mapValue(m, "path"), mapValue(m, "ufs")
		if p == nil || u == nil {
			continue
		}
		dir := filepath.Join(workdir, "lakes", strings.ReplaceAll(strings.Trim(p.Value, "/"), "/", "_"))
		u.LineComment = "demo lake; the topology says " + u.Value
		u.Value = "file://" + dir
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// demoRegionOrder puts the regions that hold no lake first, so the GPU
// region of the example gets the base port.
func demoRegionOrder(t *federation.Topology) []string {
	homes := map[string]bool{}
	for _, m := range t.Mounts {
		homes[m.Region] = true
	}
	var first, rest []string
	for _, r := range t.Regions {
		if homes[r.Name] {
			rest = append(rest, r.Name)
		} else {
			first = append(first, r.Name)
		}
	}
	return append(first, rest...)
}

// seedLakes writes sample data into every file:// lake that is empty.
func seedLakes(t *federation.Topology) error {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range t.Mounts {
		dir := strings.TrimPrefix(m.UFS, "file://")
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			continue
		}
		files := map[string][]byte{
			"README.txt": []byte(fmt.Sprintf("This is a demo lake that 'lakemesh up' made for the mount %s (home region %s).\nA real deployment reads the lake that topology.yaml names for it.\n", m.Path, m.Region)),
		}
		for i := 0; i < 4; i++ {
			shard := make([]byte, 16<<20)
			for j := range shard {
				shard[j] = byte(rng.Uint32())
			}
			files[fmt.Sprintf("train/part-%04d", i)] = shard
		}
		model := make([]byte, 32<<20)
		for j := range model {
			model[j] = byte(rng.Uint32())
		}
		files["models/demo-v1/model.bin"] = model
		files["models/demo-v1/config.json"] = []byte(`{"layers": 12, "hidden": 768}` + "\n")
		for _, p := range t.Policies {
			if strings.HasPrefix(p.Path, m.Path+"/") {
				rel := strings.TrimPrefix(p.Path, m.Path+"/")
				files[path.Join(rel, "example.txt")] = []byte("a file under the policy path " + p.Path + "\n")
			}
		}
		for name, data := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// startRegionNATS runs one real NATS server (with JetStream, in a
// JetStream domain named after the region) per region inside this
// process, joined by leaf node connections along a spanning tree of the
// lines, as federation/doc.go explains.
func startRegionNATS(t *federation.Topology, regions []string, storeDir string) (map[string]*natsserver.Server, error) {
	buses := map[string]*natsserver.Server{}
	fail := func(err error) (map[string]*natsserver.Server, error) {
		for _, b := range buses {
			b.Shutdown()
		}
		return nil, err
	}
	leafPorts := map[string]int{}
	for _, r := range regions {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		leafPorts[r] = port
		var remotes []*natsserver.RemoteLeafOpts
		if parent := federation.LeafParent(t, regions[0], r); parent != "" {
			u, err := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPorts[parent]))
			if err != nil {
				return fail(err)
			}
			remotes = append(remotes, &natsserver.RemoteLeafOpts{URLs: []*url.URL{u}})
		}
		ns, err := natsserver.NewServer(&natsserver.Options{
			ServerName:      "lakemesh-up-" + r,
			Host:            "127.0.0.1",
			Port:            natsserver.RANDOM_PORT,
			JetStream:       true,
			JetStreamDomain: r,
			StoreDir:        filepath.Join(storeDir, r),
			LeafNode:        natsserver.LeafNodeOpts{Host: "127.0.0.1", Port: port, Remotes: remotes},
			NoSigs:          true,
		})
		if err != nil {
			return fail(fmt.Errorf("NATS server of region %s: %w", r, err))
		}
		go ns.Start()
		buses[r] = ns
		if !ns.ReadyForConnections(10 * time.Second) {
			return fail(fmt.Errorf("NATS server of region %s did not start within 10s", r))
		}
	}
	return buses, nil
}

func printDemoHelp(t *federation.Topology, regions []string, addrs map[string][]string, workdir string, buses map[string]*natsserver.Server) {
	fmt.Printf("lakemesh demo mesh %q is up (work directory %s)\n\n", t.Mesh, workdir)
	for _, r := range regions {
		fmt.Printf("  region %-12s nodes %s  NATS %s\n", r, strings.Join(addrs[r], " "), buses[r].ClientURL())
	}
	fmt.Println()
	for _, m := range t.Mounts {
		fmt.Printf("  mount %-16s home region %-10s lake %s\n", m.Path, m.Region, m.UFS)
	}
	first := t.Mounts[0].Path
	// Say the commands the way this binary was invoked (./bin/lakemesh
	// after `make demo`), so they work when pasted.
	self := "lakemesh"
	if strings.Contains(os.Args[0], "/") && !strings.HasPrefix(os.Args[0], os.TempDir()) {
		self = os.Args[0]
	}
	fmt.Printf(strings.ReplaceAll(`
Try, from another terminal (client commands talk to %s, region %s):
  lakemesh ls /lake
  lakemesh ls -l %s/train
  lakemesh cat %s/README.txt
  lakemesh cat --trace %s/train/part-0000 > /dev/null     # cold: from the lake's region, over a line
  lakemesh cat --trace %s/train/part-0000 > /dev/null     # warm: from this region's cache
  lakemesh status                                              # nodes, cache use, each line's use vs budget
  echo hello | lakemesh put - %s/notes/hello.txt
  lakemesh --help
`, "lakemesh", self), addrs[regions[0]][0], regions[0], first, first, first, first, first)
	mnt := filepath.Join(workdir, "mnt")
	bucket := path.Base(first)
	keys := filepath.Join(workdir, "s3.keys")
	fmt.Printf(strings.ReplaceAll(`
The namespace as files (FUSE; as root) and as an S3 endpoint:
  mkdir -p %s && lakemesh mount %s &
  ls %s%s; head -c 200 %s%s/README.txt
  printf 'demo %%s\n' "$(openssl rand -hex 20)" > %s && chmod 600 %s
  lakemesh s3 --credentials %s --listen 127.0.0.1:9090 &
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=$(cut -d' ' -f2 %s) AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url http://127.0.0.1:9090 s3 ls s3://%s/

Ctrl-C stops the mesh.
`, "lakemesh", self), mnt, mnt, mnt, first, mnt, first, keys, keys, keys, keys, bucket)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
