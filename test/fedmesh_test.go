package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/router"
)

// fedMesh is three regions as separate deployments on loopback: region a
// holds the lake (MinIO behind a counting proxy), region c holds no data,
// region b has lines to both. Each region has its own Consul datacenter
// (WAN-joined) and its own NATS server (JetStream domain of its own,
// joined to c's by a leaf connection). Every line is an HTTP CONNECT
// proxy that shapes and counts the bytes on it, below lakemesh.
type fedMesh struct {
	t        testing.TB
	minio    *testenv.MinIOServer
	lake     *testenv.CountingProxy
	consul   map[string]*testenv.ConsulAgent
	nats     map[string]*testenv.NATSServer
	lines    map[string]*testenv.LineProxy // "a-b", "a-c", "b-c"
	topology string
	nodes    map[string][]*fedNode
	opts     fedOptions
}

type fedOptions struct {
	nodes map[string]int // nodes per region (default a:2 b:2 c:4)
	// lines: capacity of each line proxy in bytes/s (0 unlimited) and the
	// topology's budget text per line.
	capacity map[string]int64
	budget   map[string]string
	cost     map[string]string
	rtt      map[string]time.Duration
	policies string // extra policies: YAML list items
}

type fedNode struct {
	nodeProc
	region string
}

func newFedMesh(t testing.TB, o fedOptions) *fedMesh {
	t.Helper()
	if o.nodes == nil {
		o.nodes = map[string]int{"a": 2, "b": 2, "c": 4}
	}
	m := &fedMesh{t: t, opts: o, lines: map[string]*testenv.LineProxy{}, nats: map[string]*testenv.NATSServer{}, consul: map[string]*testenv.ConsulAgent{}, nodes: map[string][]*fedNode{}}
	agents := testenv.ConsulWAN(t, "a", "b", "c")
	for i, dc := range []string{"a", "b", "c"} {
		m.consul[dc] = agents[i]
	}
	m.minio = testenv.MinIO(t)
	m.minio.CreateBucket(t, bucket)
	m.lake = testenv.Proxy(t, m.minio.Addr)

	m.nats["c"] = testenv.NATS(t, "c", "c")
	m.nats["a"] = testenv.NATS(t, "a", "a", m.nats["c"].LeafURL)
	m.nats["b"] = testenv.NATS(t, "b", "b", m.nats["c"].LeafURL)

	var lines strings.Builder
	for _, l := range []string{"a-b", "a-c", "b-c"} {
		m.lines[l] = testenv.Line(t, l, o.capacity[l], o.rtt[l])
		budget := o.budget[l]
		if budget == "" {
			budget = "400MB/s"
		}
		ends := strings.Split(l, "-")
		fmt.Fprintf(&lines, "  - between: [%s, %s]\n    capacity: 1GB/s\n    budget: %s\n", ends[0], ends[1], budget)
		if c := o.cost[l]; c != "" {
			fmt.Fprintf(&lines, "    cost_per_gb: %s\n", c)
		}
		if r := o.rtt[l]; r > 0 {
			fmt.Fprintf(&lines, "    rtt: %s\n", r)
		}
	}
	policies := ""
	if o.policies != "" {
		policies = "policies:\n" + o.policies
	}
	m.topology = filepath.Join(t.TempDir(), "topology.yaml")
	topo := fmt.Sprintf(`mesh: fed
regions:
  - name: a
  - name: b
  - name: c
lines:
%smounts:
  - path: /lake/s3
    ufs: s3://%s/?endpoint=http://%s&region=us-east-1
    region: a
    metadata_ttl: 30s
%s`, lines.String(), bucket, m.lake.Addr(), policies)
	if err := os.WriteFile(m.topology, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		for i := 0; i < o.nodes[r]; i++ {
			n := &fedNode{region: r, nodeProc: nodeProc{
				id:       fmt.Sprintf("%s-node%d", r, i+1),
				addr:     testenv.FreeAddr(t),
				cacheDir: filepath.Join(t.TempDir(), fmt.Sprintf("cache-%s%d", r, i+1)),
			}}
			n.logPath = n.cacheDir + ".log"
			m.nodes[r] = append(m.nodes[r], n)
			m.start(n)
		}
	}
	for _, r := range []string{"a", "b", "c"} {
		m.waitMembers(r, o.nodes[r])
	}
	t.Cleanup(func() {
		for _, ns := range m.nodes {
			for _, n := range ns {
				m.stop(n, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			for _, ns := range m.nodes {
				for _, n := range ns {
					b, _ := os.ReadFile(n.logPath)
					t.Logf("log of %s:\n%s", n.id, tail(string(b), 25))
				}
			}
		}
	})
	return m
}

// lineTo is the line proxy between region r and other.
func (m *fedMesh) lineTo(r, other string) *testenv.LineProxy {
	if other < r {
		r, other = other, r
	}
	return m.lines[r+"-"+other]
}

func (m *fedMesh) start(n *fedNode) {
	m.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	args := []string{"node",
		"--topology", m.topology, "--region", n.region, "--id", n.id,
		"--listen", n.addr, "--consul", m.consul[n.region].HTTPAddr,
		"--nats", m.nats[n.region].URL,
		"--cache-dir", n.cacheDir, "--cache-size", "4GiB", "--memory-size", "256MiB",
		"--log-level", "info"}
	for _, other := range []string{"a", "b", "c"} {
		if other != n.region {
			args = append(args, "--line-proxy", other+"="+m.lineTo(n.region, other).URL())
		}
	}
	cmd := exec.Command(lakemeshBin, args...)
	cmd.Env = append(os.Environ(), m.minio.Env()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start node %s: %v", n.id, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(n.exited) }()
}

func (m *fedMesh) stop(n *fedNode, sig syscall.Signal) { n.nodeProc.stop(sig) }

// waitMembers waits until region r's Consul datacenter shows n healthy
// nodes, as seen from every other datacenter too (WAN federation).
func (m *fedMesh) waitMembers(r string, n int) {
	m.t.Helper()
	for _, from := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c, err := region.NewConsul(ctx, region.ConsulConfig{Address: m.consul[from].HTTPAddr, Datacenter: r, Region: r})
		if err != nil {
			cancel()
			m.t.Fatalf("follow region %s from datacenter %s: %v", r, from, err)
		}
		err = c.WaitFor(ctx, func(ms []region.Member) bool { return len(ms) == n })
		have := len(c.Members())
		c.Close()
		cancel()
		if err != nil {
			m.t.Fatalf("waiting for %d healthy members of region %s seen from %s, have %d: %v", n, r, from, have, err)
		}
	}
}

// client is a Go client of region r, found through r's Consul.
func (m *fedMesh) client(r string) *router.Client {
	return m.clientWith(router.DialConfig{Region: r})
}

// clientWith is a client dialled with dc, found through dc.Region's Consul.
func (m *fedMesh) clientWith(dc router.DialConfig) *router.Client {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dc.Consul = m.consul[dc.Region].HTTPAddr
	c, err := router.Dial(ctx, dc)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// upload writes an object straight to MinIO and returns its SHA-256.
func (m *fedMesh) upload(key string, size int64, seed uint64) [32]byte {
	return uploadTo(m.t, m.minio, key, size, seed)
}

// intoRegion is the bytes that crossed lines into region r since the
// lines' last Reset: what r's nodes received through the line proxies.
func (m *fedMesh) intoRegion(r string) int64 {
	var total int64
	for _, other := range []string{"a", "b", "c"} {
		if other == r {
			continue
		}
		// Tunnels are opened by the node that pulls, so what flows back
		// to the opener entered the puller's region. A test calls this
		// while only r's nodes pull over r's lines.
		_, down := m.lineTo(r, other).Bytes()
		total += down
	}
	return total
}

func (m *fedMesh) resetLines() {
	for _, l := range m.lines {
		l.Reset()
	}
	m.lake.Reset()
}
