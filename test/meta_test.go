package test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/internal/testenv"
)

// s3Requests is an HTTP proxy in front of MinIO that counts the S3
// requests it passes by kind: HEAD (HeadObject), LIST (ListObjectsV2),
// GET (GetObject) and the rest by method. It sits below lakemesh's own
// code, so a claim about lake requests is checked on the wire.
type s3Requests struct {
	srv             *httptest.Server
	head, list, get atomic.Int64
	other           atomic.Int64
}

func startS3Requests(t *testing.T, target string) *s3Requests {
	t.Helper()
	to := &url.URL{Scheme: "http", Host: target}
	r := &s3Requests{}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(to)
		pr.Out.Host = pr.In.Host // the request is signed for the proxy's host
	}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case req.Method == http.MethodHead:
			r.head.Add(1)
		case req.Method == http.MethodGet && req.URL.Query().Has("list-type"):
			r.list.Add(1)
		case req.Method == http.MethodGet:
			r.get.Add(1)
		default:
			r.other.Add(1)
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *s3Requests) addr() string { return r.srv.Listener.Addr().String() }

func (r *s3Requests) reset() {
	r.head.Store(0)
	r.list.Store(0)
	r.get.Store(0)
	r.other.Store(0)
}

func (r *s3Requests) String() string {
	return fmt.Sprintf("%d HEAD, %d LIST, %d GET, %d other", r.head.Load(), r.list.Load(), r.get.Load(), r.other.Load())
}

// newMeshCountingRequests is newMesh with the lake behind s3Requests
// instead of the byte-counting TCP proxy.
func newMeshCountingRequests(t *testing.T, o meshOptions) (*mesh, *s3Requests) {
	t.Helper()
	m := &mesh{t: t, region: "r1", opts: o}
	m.consul = testenv.Consul(t)
	m.minio = testenv.MinIO(t)
	m.minio.CreateBucket(t, bucket)
	reqs := startS3Requests(t, m.minio.Addr)
	m.topology = filepath.Join(t.TempDir(), "topology.yaml")
	topo := fmt.Sprintf(`mesh: e2e
regions:
  - name: r1
mounts:
  - path: /lake/s3
    ufs: s3://%s/?endpoint=http://%s&region=us-east-1
    region: r1
    metadata_ttl: %s
`, bucket, reqs.addr(), o.metadataTTL)
	if err := os.WriteFile(m.topology, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	m.startNodes(t, o.nodes)
	return m, reqs
}

// A data loader stats the files of one directory once per epoch, epochs
// longer than the metadata TTL. Past the TTL, the nodes of the region
// revalidate their shares of the directory with one LIST in all (the
// directory's metadata owner's, which the others read from it) instead
// of one HEAD per file or one LIST per node, and the answers are MinIO's
// current ones.
func TestStatsPastTTLListTheDirectoryOncePerRegion(t *testing.T) {
	const nodes, files = 3, 300
	const ttl = 3 * time.Second
	m, reqs := newMeshCountingRequests(t, meshOptions{nodes: nodes, memorySize: "64MiB", metadataTTL: ttl.String()})
	want := map[string][2]any{} // path -> size, version
	put := func(i, size int) {
		data := patternAt(uint64(i), 0, int64(size))
		key := fmt.Sprintf("epoch/f%04d", i)
		m.minio.PutObject(t, bucket, key, data)
		sum := md5.Sum(data) // a single PUT's ETag
		want["/lake/s3/"+key] = [2]any{int64(size), hex.EncodeToString(sum[:])}
	}
	for i := range files {
		put(i, 1000+i)
	}
	c := m.client()
	statAll := func(workers int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, files)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < files; i += workers {
					p := fmt.Sprintf("/lake/s3/epoch/f%04d", i)
					e, err := c.Stat(t.Context(), p)
					switch {
					case err != nil:
						errs <- err
					case e.Size != want[p][0] || e.Version != want[p][1]:
						errs <- fmt.Errorf("stat %s: size %d version %s, want %v", p, e.Size, e.Version, want[p])
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}

	reqs.reset()
	statAll(8)
	t.Logf("first pass, %d files on %d nodes: %s", files, nodes, reqs)

	// Past the TTL, with a tenth of the files replaced in MinIO.
	time.Sleep(ttl + 500*time.Millisecond)
	for i := 0; i < files; i += 10 {
		put(i, 3000+i)
	}
	reqs.reset()
	statAll(16)
	heads, lists := reqs.head.Load(), reqs.list.Load()
	t.Logf("second pass past the TTL, 16 goroutines: %s (a HEAD per file would be %d)", reqs, files)
	if heads > nodes*4 || lists > 1 {
		t.Fatalf("stats of %d files past the TTL cost %s; want at most %d HEADs and 1 LIST (one listing for the region)", files, reqs, nodes*4)
	}
}
