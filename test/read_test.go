package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

const MiB = 1 << 20

// The headers of S3 responses (a few hundred bytes each) cross the proxy
// too; a read of every byte once stays within 2% of the object's size.
const overhead = 1.02

// A 256 MiB object read twice by two clients through a 3-node region:
// MinIO serves its bytes once.
func TestLakeReadOnceForTwoClients(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 256 * MiB
	want := m.upload("big/object.bin", size, 1)
	m.proxy.Reset()

	c1, c2 := m.client(), m.client()
	if got := readAll(t, c1, "/lake/s3/big/object.bin", 8*MiB); got != want {
		t.Fatalf("client 1 read wrong bytes")
	}
	afterFirst := m.lakeBytes()
	if got := readAll(t, c2, "/lake/s3/big/object.bin", 8*MiB); got != want {
		t.Fatalf("client 2 read wrong bytes")
	}
	total := m.lakeBytes()
	t.Logf("bytes from MinIO: %d after the first read, %d after the second (object %d)", afterFirst, total, size)
	if float64(total) > size*overhead {
		t.Fatalf("MinIO sent %d bytes for a %d-byte object read twice: %.3fx, want <= %.2fx", total, size, float64(total)/size, overhead)
	}
	if total < size {
		t.Fatalf("MinIO sent %d bytes, less than the object (%d): the proxy is not in the path", total, size)
	}
}

// 16 concurrent readers of one cold file: one lake read per page.
func TestConcurrentColdReadersOneLakeReadPerPage(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 64 * MiB
	want := m.upload("shared/file.bin", size, 2)
	m.proxy.Reset()

	c := m.client()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Odd readers take 1 MiB reads, even ones 4 MiB, so they
			// are not in lock step.
			buf := 1 * MiB
			if i%2 == 0 {
				buf = 4 * MiB
			}
			if got := readAll(t, c, "/lake/s3/shared/file.bin", buf); got != want {
				errs <- fmt.Errorf("reader %d read wrong bytes", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := m.lakeBytes()
	t.Logf("16 readers of a %d-byte file: %d bytes from MinIO (%.3fx)", size, total, float64(total)/size)
	if float64(total) > size*overhead {
		t.Fatalf("MinIO sent %d bytes: %.3fx the file; some page was read from the lake more than once", total, float64(total)/size)
	}
}

// kill -9 of a node in the middle of a 256 MiB read: the read completes
// with the right bytes.
func TestKillNodeMidRead(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 256 * MiB
	want := m.upload("big/kill.bin", size, 3)

	c := m.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, err := c.Open(ctx, "/lake/s3/big/kill.bin")
	if err != nil {
		t.Fatal(err)
	}
	h := newHasher()
	buf := make([]byte, 4*MiB)
	killed := false
	for off := int64(0); off < size; {
		if !killed && off >= size/3 {
			// Kill the owner of the next page, so the read must fail
			// over in the middle of the file.
			next := cachenode.PageID{File: fileRefOf(f).ID(), Index: off / (4 * MiB)}
			owner, _ := region.Owner(next.Key(), c.Members())
			for _, n := range m.nodes {
				if n.addr == owner.Addr {
					t.Logf("kill -9 %s (owner of page %d) at offset %d", n.id, next.Index, off)
					m.stop(n, syscall.SIGKILL)
				}
			}
			killed = true
		}
		n, err := f.ReadAt(ctx, buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("read at %d after the kill: %v", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	if h.sum() != want {
		t.Fatal("wrong bytes after a node was killed mid-read")
	}
}

// A restarted node serves its cached pages from disk with no lake read:
// a large file's pages and small files', which all share packs
// (cachenode/pack.go), no page in a file of its own.
func TestRestartedNodesServeFromDisk(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 48 * MiB
	const smallFiles, smallSize = 20, 100 << 10
	want := m.upload("warm/file.bin", size, 4)
	if got := readAll(t, m.client(), "/lake/s3/warm/file.bin", 4*MiB); got != want {
		t.Fatal("wrong bytes on the first read")
	}
	smallWant := make([][32]byte, smallFiles)
	for i := range smallFiles {
		key := fmt.Sprintf("warm/small-%d", i)
		smallWant[i] = m.upload(key, smallSize, uint64(100+i))
		if got := readAll(t, m.client(), "/lake/s3/"+key, 4*MiB); got != smallWant[i] {
			t.Fatalf("wrong bytes on the first read of %s", key)
		}
	}
	// A read is answered before its page's disk copy is written (the
	// disk tier is a cache): the file is cached once the nodes' disk
	// tiers hold its bytes and a slot header a page, then each node is
	// killed.
	pages := size/(4*MiB) + smallFiles
	deadline := time.Now().Add(10 * time.Second)
	for {
		var onDisk int64
		for _, n := range m.nodes {
			if info, err := router.NodeInfo(context.Background(), n.addr); err == nil {
				onDisk += info.GetCache().GetDiskBytes()
			}
		}
		if onDisk >= size+smallFiles*smallSize+int64(pages)*cachenode.DirectAlign {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes' disk tiers hold %d bytes of a %d-byte file read 10 s ago", onDisk, size)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a page's bytes are counted as its write begins
	var pageFiles, packed int
	for _, n := range m.nodes {
		filepath.WalkDir(n.cacheDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Ext(p) == ".page" {
				pageFiles++
			}
			return nil
		})
		packed += len(packedPagesIn(t, n.cacheDir))
	}
	if pageFiles != 0 || packed != pages {
		t.Fatalf("the nodes hold %d page files and %d pages in packs; want none and every page (%d)", pageFiles, packed, pages)
	}
	m.killAll()
	m.proxy.Reset()
	if got := readAll(t, m.client(), "/lake/s3/warm/file.bin", 4*MiB); got != want {
		t.Fatal("wrong bytes after the restart")
	}
	for i := range smallFiles {
		if got := readAll(t, m.client(), fmt.Sprintf("/lake/s3/warm/small-%d", i), 4*MiB); got != smallWant[i] {
			t.Fatalf("wrong bytes of small file %d after the restart", i)
		}
	}
	// The stats after the restart ask MinIO (HEADs: headers only); no
	// page may be read again.
	if got := m.lakeBytes(); got > 64*1024 {
		t.Fatalf("after a restart MinIO sent %d bytes for a cached file; want only metadata (< 64 KiB)", got)
	}
}

// The object replaced in MinIO: the new content after the mount's TTL or
// `lakemesh sync`, and never a mix of old and new pages.
func TestReplacedObjectNeverMixed(t *testing.T) {
	m := newMesh(t, meshOptions{metadataTTL: "3s"})
	const size = 12 * MiB
	const key = "changing/file.bin"
	const path = "/lake/s3/" + key
	v1 := m.upload(key, size, 10)
	c := m.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Open at v1 and read a little of the first page (not at offset 0,
	// so no readahead fills the rest), then replace the object.
	f, err := c.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64*1024)
	if _, err := f.ReadAt(ctx, first, 100); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, patternAt(10, 100, 64*1024)) {
		t.Fatal("first bytes of v1 are wrong")
	}
	v2 := m.upload(key, size, 11)

	// The open v1 file must not return v2's bytes for pages the region
	// has not cached: the read fails with a version error instead.
	rest := make([]byte, 64*1024)
	_, err = f.ReadAt(ctx, rest, 8*MiB+100)
	if !errors.Is(err, ufs.ErrVersionChanged) {
		t.Fatalf("reading uncached pages of v1 after the object changed: got %v, want ErrVersionChanged", err)
	}

	// sync: the next open sees v2 at once, all of it.
	out, stderr, code := run(t, "sync", "--consul", m.consul.HTTPAddr, "--region", m.region, "/lake/s3/changing")
	if code != 0 {
		t.Fatalf("lakemesh sync failed (%d): %s", code, stderr)
	}
	t.Logf("sync: %s", out)
	if got := readAll(t, c, path, 4*MiB); got != v2 {
		t.Fatal("after sync the file is not v2")
	}

	// TTL: replace again without sync; within the TTL the region may
	// still serve v2 whole, after it v3 whole; never a mix.
	v3 := m.upload(key, size, 12)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := readAll(t, c, path, 4*MiB)
		if got == v3 {
			break
		}
		if got != v2 {
			t.Fatal("read a mix of versions")
		}
		if time.Now().After(deadline) {
			t.Fatal("v3 not seen 15s after the change with a 3s metadata TTL")
		}
		time.Sleep(500 * time.Millisecond)
	}
	_ = v1
}

// A page corrupted on disk: detected, refetched, right bytes served.
func TestCorruptPageRefetched(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 1, memorySize: "0"})
	const size = 8 * MiB
	want := m.upload("corrupt/file.bin", size, 5)
	c := m.client()
	if got := readAll(t, c, "/lake/s3/corrupt/file.bin", 4*MiB); got != want {
		t.Fatal("wrong bytes on the first read")
	}
	// Flip bytes in the middle of every page of the node.
	pages := packedPagesIn(t, m.nodes[0].cacheDir)
	if len(pages) == 0 {
		t.Fatal("no pages in the cache directory's packs")
	}
	corruptPages(t, pages, 1*MiB+100)
	m.proxy.Reset()
	if got := readAll(t, c, "/lake/s3/corrupt/file.bin", 4*MiB); got != want {
		t.Fatal("corrupt bytes were served")
	}
	if m.lakeBytes() == 0 {
		t.Fatal("no bytes refetched from the lake after corrupting pages")
	}
	t.Logf("refetched %d bytes after corrupting %d pages", m.lakeBytes(), len(pages))
}

// The same through the S3 gateway, which sends warm pages from their
// files (to this test, a client on its host, from a mapping of them),
// checking each piece just before it goes: a GET
// after the page files were corrupted returns the object's bytes, the
// corrupt blocks refetched from the lake.
func TestS3GatewayCorruptPageRefetched(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 1, memorySize: "0"})
	gw := startS3Gateway(t, m, "--log-level", "debug")
	c := gw.client(gw.secret)
	const size = 8 * MiB
	const key = "corrupt/gw.bin"
	m.upload(key, size, 6)
	get := func() []byte { t.Helper(); return getObject(t, c, "s3", key) }
	if !bytes.Equal(get(), patternAt(6, 0, size)) {
		t.Fatal("wrong bytes on the first GET")
	}
	// Both pages whole on disk (the node writes them after it answered).
	pages := waitPacked(t, m.nodes[0].cacheDir, 2)
	// The gateway asks again for a page that was not on disk after a
	// second (router's scAskEvery).
	time.Sleep(1100 * time.Millisecond)
	if !bytes.Equal(get(), patternAt(6, 0, size)) {
		t.Fatal("wrong bytes on the warm GET")
	}
	corruptPages(t, pages, 2*MiB+100) // past the first pieces
	m.proxy.Reset()
	if !bytes.Equal(get(), patternAt(6, 0, size)) {
		t.Fatal("corrupt bytes were served")
	}
	if m.lakeBytes() == 0 {
		t.Fatal("no bytes refetched from the lake after corrupting pages")
	}
	log, _ := os.ReadFile(gw.proc.logPath)
	if n := strings.Count(string(log), "short-circuit section failed its check"); n != len(pages) {
		t.Fatalf("the gateway's log tells of %d sections that failed their check; want %d, one a page:\n%s", n, len(pages), log)
	}
	t.Logf("refetched %d bytes after corrupting %d pages", m.lakeBytes(), len(pages))
}

// getObject GETs bucket/key through c, whole.
func getObject(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitPacked waits until a node's cache directory holds n pages in packs
// (a node writes a page after it answered the read) and returns them.
func waitPacked(t *testing.T, cacheDir string, n int) []packedPage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pages := packedPagesIn(t, cacheDir)
		if len(pages) == n {
			return pages
		}
		if time.Now().After(deadline) {
			t.Fatalf("pages on disk after 10s: %v; want %d", pages, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// packedPage is a page in a pack of a node's cache directory.
type packedPage struct {
	path string // the pack
	cachenode.PackedPage
}

// packedPagesIn returns the pages held in the packs under a node's cache
// directory.
func packedPagesIn(t *testing.T, dir string) []packedPage {
	t.Helper()
	var pages []packedPage
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".pack" {
			return nil
		}
		in, err := cachenode.ReadPackSlots(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, pg := range in {
			pages = append(pages, packedPage{p, pg})
		}
		return nil
	})
	return pages
}

// corruptPages writes "corrupt!" at offset off of every page.
func corruptPages(t *testing.T, pages []packedPage, off int64) {
	t.Helper()
	for _, pg := range pages {
		if off+8 > pg.Length {
			t.Fatalf("page %d of %s has %d bytes: nothing to corrupt at %d", pg.Index, pg.File.Path, pg.Length, off)
		}
		fh, err := os.OpenFile(pg.path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fh.WriteAt([]byte("corrupt!"), pg.Data+off)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// 1,000 random 4 KiB reads of a cold 1 GiB object: lake bytes read <= 16x
// the bytes asked for.
func TestRandomReadAmplification(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 1 << 30
	m.upload("random/1g.bin", size, 6)
	c := m.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, err := c.Open(ctx, "/lake/s3/random/1g.bin")
	if err != nil {
		t.Fatal(err)
	}
	m.proxy.Reset()
	rng := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 4096)
	const reads = 1000
	for i := 0; i < reads; i++ {
		off := rng.Int64N(size - 4096)
		if _, err := f.ReadAt(ctx, buf, off); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if i%97 == 0 && !bytes.Equal(buf, patternAt(6, off, 4096)) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}
	asked := int64(reads * 4096)
	got := m.lakeBytes()
	ratio := float64(got) / float64(asked)
	t.Logf("1000 random 4 KiB reads of a cold 1 GiB object: %d bytes from MinIO, %.2fx the %d bytes asked", got, ratio, asked)
	if ratio > 16 {
		t.Fatalf("lake bytes / bytes asked = %.2f, want <= 16", ratio)
	}
}

// fileRefOf recomputes the cache identity of an open file, as nodes do.
func fileRefOf(f *router.File) cachenode.FileRef {
	e := f.Entry()
	return cachenode.FileRef{Mount: "/lake/s3", Path: strings.TrimPrefix(e.Path, "/lake/s3/"), Version: e.Version, Size: e.Size}
}

type hasher struct{ h hash.Hash }

func newHasher() *hasher { return &hasher{h: sha256.New()} }

func (h *hasher) Write(p []byte) { h.h.Write(p) }

func (h *hasher) sum() (s [32]byte) {
	copy(s[:], h.h.Sum(nil))
	return s
}

// When no node of the region can serve, a client allowed to reads the lake
// directly; one that is not allowed fails with ErrNoNode, never hangs.
func TestDirectLakeReadWhenNoNodeServes(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 2})
	const size = 10 * MiB
	want := m.upload("direct/file.bin", size, 30)
	m.minio.SetEnv(t) // the client's own lake credentials

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct, err := router.Dial(ctx, router.DialConfig{Consul: m.consul.HTTPAddr, Region: m.region, DirectFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	strict := m.client()
	f, err := direct.Open(ctx, "/lake/s3/direct/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	g, err := strict.Open(ctx, "/lake/s3/direct/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.nodes {
		m.stop(n, syscall.SIGKILL)
	}
	m.proxy.Reset()
	buf := make([]byte, size)
	if _, err := f.ReadAt(ctx, buf, 0); err != nil {
		t.Fatalf("direct fallback read: %v", err)
	}
	if sha256.Sum256(buf) != want {
		t.Fatal("direct fallback read wrong bytes")
	}
	if got := m.lakeBytes(); got < size {
		t.Fatalf("the lake sent %d bytes for a %d-byte direct read: the bytes came from elsewhere", got, size)
	}
	if _, err := g.ReadAt(ctx, buf[:4096], 100); !errors.Is(err, router.ErrNoNode) {
		t.Fatalf("without fallback: got %v, want ErrNoNode", err)
	}
}

// Small files read through a cache far smaller than them: pages are
// evicted and their pack slots taken again by the next pages while
// clients still hold short-circuit grants of the old ones. Every byte is
// right (a grant of a slot taken again fails its checksums, and the read
// is served the usual way), the lake is asked again for what was
// evicted, and the node's packs stay within a few of its tier.
func TestSmallFilesThroughATinyCache(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 1, memorySize: "0", cacheSize: "4MiB"})
	const files, size = 120, 100 << 10 // 12 MB through a 4 MiB disk tier
	sums := make([][32]byte, files)
	for i := range files {
		sums[i] = m.upload(fmt.Sprintf("tiny-cache/f%03d", i), size, uint64(500+i))
	}
	c := m.client()
	m.proxy.Reset()
	for pass := range 3 {
		order := rand.New(rand.NewPCG(uint64(pass), 9)).Perm(files)
		var wg sync.WaitGroup
		work := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if got := readAll(t, c, fmt.Sprintf("/lake/s3/tiny-cache/f%03d", i), 128<<10); got != sums[i] {
						t.Errorf("pass %d: wrong bytes of f%03d", pass, i)
					}
				}
			}()
		}
		for _, i := range order {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	if lake := m.lakeBytes(); lake <= files*size {
		t.Errorf("the lake sent %d bytes for 3 passes over %d bytes through a 4 MiB cache; want the evicted pages asked for again", lake, files*size)
	}
	reused := m.scrapeNodes(t)["lakemesh_pack_slots_reused_total"]
	packs, _ := filepath.Glob(filepath.Join(m.nodes[0].cacheDir, "packs", "*.pack"))
	t.Logf("lake bytes %d for 3 passes over %d; %d packs, %v slots taken again", m.lakeBytes(), files*size, len(packs), reused)
	if reused == 0 {
		t.Error("no pack slot taken again (lakemesh_pack_slots_reused_total)")
	}
	if len(packs) > 8 {
		t.Errorf("%d packs for a 4 MiB tier (1 MiB packs); want at most 8", len(packs))
	}
}
