package test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/router"
)

// lakemeshBin is the binary under test, built once by TestMain.
var lakemeshBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lakemesh-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lakemeshBin = filepath.Join(dir, "lakemesh")
	build := exec.Command("go", "build", "-o", lakemeshBin, "../cmd/lakemesh")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lakemesh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const bucket = "lake"

// mesh is one region of cache node processes over a MinIO lake, with the
// lake behind a counting proxy.
type mesh struct {
	t        testing.TB
	consul   *testenv.ConsulAgent
	minio    *testenv.MinIOServer
	proxy    *testenv.CountingProxy
	topology string // path of the topology file
	region   string
	nodes    []*nodeProc
	opts     meshOptions
}

type meshOptions struct {
	nodes       int
	memorySize  string // node --memory-size
	metadataTTL string
	policies    string // policies: YAML list items
	// directMount adds /lake/direct: the same bucket with no proxy in
	// between, for throughput figures that must not pay for the counting
	// proxy's copy (the peer's direct GETs do not).
	directMount bool
	// pretouch: nodes fault their memory tier in at start, the node's
	// default. Off in tests, where it would only spend the machine's
	// memory and CPU; on in benchmarks, which measure the default.
	pretouch  bool
	cacheSize string // node --cache-size (default 4GiB)
}

// nodeProc is one `lakemesh node` process.
type nodeProc struct {
	id, addr, cacheDir, logPath string
	metricsAddr                 string // its Prometheus /metrics
	cmd                         *exec.Cmd
	exited                      chan struct{}
}

func newMesh(t testing.TB, o meshOptions) *mesh {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	if o.memorySize == "" {
		o.memorySize = "512MiB"
	}
	if o.metadataTTL == "" {
		o.metadataTTL = "30s"
	}
	m := &mesh{t: t, region: "r1", opts: o}
	m.consul = testenv.Consul(t)
	m.minio = testenv.MinIO(t)
	m.minio.CreateBucket(t, bucket)
	m.proxy = testenv.Proxy(t, m.minio.Addr)
	m.topology = filepath.Join(t.TempDir(), "topology.yaml")
	topo := fmt.Sprintf(`mesh: e2e
regions:
  - name: r1
mounts:
  - path: /lake/s3
    ufs: s3://%s/?endpoint=http://%s&region=us-east-1
    region: r1
    metadata_ttl: %s
`, bucket, m.proxy.Addr(), o.metadataTTL)
	if o.directMount {
		topo += fmt.Sprintf(`  - path: /lake/direct
    ufs: s3://%s/?endpoint=http://%s&region=us-east-1
    region: r1
    metadata_ttl: %s
`, bucket, m.minio.Addr, o.metadataTTL)
	}
	if o.policies != "" {
		topo += "policies:\n" + o.policies
	}
	if err := os.WriteFile(m.topology, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	m.startNodes(t, o.nodes)
	return m
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// start runs (or restarts) a node process.
func (m *mesh) start(n *nodeProc) {
	m.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	cmd := exec.Command(lakemeshBin, "node",
		"--topology", m.topology, "--region", m.region, "--id", n.id,
		"--listen", n.addr, "--consul", m.consul.HTTPAddr,
		"--cache-dir", n.cacheDir, "--cache-size", cmp.Or(m.opts.cacheSize, "4GiB"), "--memory-size", m.opts.memorySize,
		"--memory-pretouch="+strconv.FormatBool(m.opts.pretouch), "--log-level", "info", "--metrics", n.metricsAddr)
	cmd.Env = append(os.Environ(), m.minio.Env()...)
	if base := os.Getenv("LAKEMESH_BENCH_PPROF"); base != "" {
		// Profiling a benchmark: node i serves pprof on port base+i.
		port, _ := strconv.Atoi(base)
		for i, other := range m.nodes {
			if other == n {
				cmd.Env = append(cmd.Env, fmt.Sprintf("LAKEMESH_PPROF=127.0.0.1:%d", port+i))
			}
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start node %s: %v", n.id, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(n.exited) }()
}

// stop ends a node process with sig and waits for it.
func (m *mesh) stop(n *nodeProc, sig syscall.Signal) { n.stop(sig) }

// node returns the mesh's node with id, failing the test if there is
// none.
func (m *mesh) node(id string) *nodeProc {
	m.t.Helper()
	for _, n := range m.nodes {
		if n.id == id {
			return n
		}
	}
	m.t.Fatalf("no node %q in the mesh", id)
	return nil
}

// killAll kills every node with SIGKILL, starts them again and waits for
// the region to see them all.
func (m *mesh) killAll() {
	for _, n := range m.nodes {
		m.stop(n, syscall.SIGKILL)
	}
	for _, n := range m.nodes {
		m.start(n)
	}
	m.waitMembers(len(m.nodes))
	m.waitViews(len(m.nodes))
}

// stop ends the process with sig and waits for it (SIGKILL after 15 s).
func (n *nodeProc) stop(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// members is a client-side view of the region's membership in Consul.
func (m *mesh) membership() *region.Consul {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := region.NewConsul(ctx, region.ConsulConfig{Address: m.consul.HTTPAddr, Region: m.region})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// waitMembers waits until Consul shows n healthy nodes in the region.
func (m *mesh) waitMembers(n int) {
	m.t.Helper()
	c := m.membership()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitFor(ctx, func(ms []region.Member) bool { return len(ms) == n }); err != nil {
		for _, nd := range m.nodes {
			b, _ := os.ReadFile(nd.logPath)
			m.t.Logf("log of %s:\n%s", nd.id, tail(string(b), 20))
		}
		m.t.Fatalf("waiting for %d healthy members, have %d: %v", n, len(c.Members()), err)
	}
}

// waitViews waits until every node's own view of the region has n
// members. After a kill -9 and restart, Consul may still list the old
// registrations as healthy, so waitMembers returns at once, while the
// restarted nodes still watch their way to the full membership; a read
// in between goes to a node that does not know the page's owner and
// fills the page from the lake again.
func (m *mesh) waitViews(n int) {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range m.nodes {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			info, err := router.NodeInfo(ctx, nd.addr)
			cancel()
			if err == nil && len(info.GetMembers()) == n {
				break
			}
			if time.Now().After(deadline) {
				m.t.Fatalf("node %s does not see %d members within 30s (last: %d members, %v)", nd.id, n, len(info.GetMembers()), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// client is an in-process Go client of the region, found through Consul.
func (m *mesh) client() *router.Client {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := router.Dial(ctx, router.DialConfig{Consul: m.consul.HTTPAddr, Region: m.region})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// upload writes an object of size bytes of seeded pseudo-random content
// directly to MinIO (not through the proxy) and returns its SHA-256.
func (m *mesh) upload(key string, size int64, seed uint64) [32]byte {
	m.t.Helper()
	return uploadTo(m.t, m.minio, key, size, seed)
}

// uploadTo writes an object of size bytes of seeded pseudo-random content
// straight to MinIO and returns its SHA-256.
func uploadTo(t testing.TB, minio *testenv.MinIOServer, key string, size int64, seed uint64) [32]byte {
	t.Helper()
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(newPattern(seed), size), h)
	up := manager.NewUploader(minio.Client(), func(u *manager.Uploader) { u.PartSize = 16 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: body}); err != nil {
		t.Fatalf("upload %s: %v", key, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// pattern is a fast deterministic pseudo-random byte stream.
type pattern struct{ rng *rand.ChaCha8 }

func newPattern(seed uint64) io.Reader {
	var s [32]byte
	for i := 0; i < 8; i++ {
		s[i] = byte(seed >> (8 * i))
	}
	return &pattern{rng: rand.NewChaCha8(s)}
}

func (p *pattern) Read(b []byte) (int, error) { return p.rng.Read(b) }

// patternAt returns n bytes of the pattern for seed starting at off.
func patternAt(seed uint64, off, n int64) []byte {
	r := newPattern(seed)
	io.CopyN(io.Discard, r, off)
	b := make([]byte, n)
	io.ReadFull(r, b)
	return b
}

// readAll reads a whole file through the client in chunks of bufSize and
// returns its SHA-256.
func readAll(t testing.TB, c *router.Client, path string, bufSize int) [32]byte {
	t.Helper()
	h := sha256.New()
	readInto(t, c, path, bufSize, h)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// readInto copies a whole file through the client into w.
func readInto(t testing.TB, c *router.Client, path string, bufSize int, w io.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, err := c.Open(ctx, path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	// Hide w's ReadFrom, so the copy really reads bufSize at a time.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, f.Reader(ctx), make([]byte, bufSize)); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
}

// startNodes starts count node processes of region r1, waits until Consul
// lists them all, and kills them when the test ends (printing their logs'
// tails if it failed).
func (m *mesh) startNodes(t testing.TB, count int) {
	for i := 0; i < count; i++ {
		n := &nodeProc{
			id:          fmt.Sprintf("r1-node%d", i+1),
			addr:        testenv.FreeAddr(t),
			metricsAddr: testenv.FreeAddr(t),
			cacheDir:    filepath.Join(t.TempDir(), fmt.Sprintf("cache%d", i+1)),
		}
		n.logPath = n.cacheDir + ".log"
		m.nodes = append(m.nodes, n)
		m.start(n)
	}
	m.waitMembers(count)
	t.Cleanup(func() {
		for _, n := range m.nodes {
			m.stop(n, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, n := range m.nodes {
				b, _ := os.ReadFile(n.logPath)
				t.Logf("log of %s:\n%s", n.id, tail(string(b), 30))
			}
		}
	})
}

// lakeBytes is what MinIO sent through the proxy since the last reset.
func (m *mesh) lakeBytes() int64 { return m.proxy.BytesFromTarget() }

// run runs the lakemesh CLI and returns its stdout, stderr and exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	// No client command takes minutes; one that does (a mount that
	// should have been refused) is stopped as a user would, not waited
	// for until the test binary's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lakemeshBin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run lakemesh %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
