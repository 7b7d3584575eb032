package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/router"
)

// TestWriteBackSurvivesKill: writes under a write_mode: back policy are
// acknowledged while the lake hangs, read back in the region at once from
// the journal, and reach the lake after every node was killed -9 and
// restarted; a newer write of a path wins over an older one still pending.
func TestWriteBackSurvivesKill(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/ckpt\n    write_mode: back\n"})
	c := m.client()
	ctx := context.Background()

	m.proxy.Hold() // the lake hangs: nothing written can reach it
	want := map[string][32]byte{}
	for i, size := range []int64{64 * MiB, 16 * MiB, 5*MiB + 123} {
		p := fmt.Sprintf("/lake/s3/ckpt/rank-%d.pt", i)
		e, err := putWithin(ctx, c, p, patternAt(uint64(500+i), 0, size), 60*time.Second)
		if err != nil {
			t.Fatalf("write-back put %s while the lake hangs: %v", p, err)
		}
		if _, ok := cachenode.JournalNode(e.Version); !ok {
			t.Fatalf("put %s answered version %q, want a journal version", p, e.Version)
		}
		want[p] = sha256.Sum256(patternAt(uint64(500+i), 0, size))
		// Readers in the region see it at once.
		st, err := c.Stat(ctx, p)
		if err != nil || st.Size != size || st.Version != e.Version {
			t.Fatalf("stat %s after write-back: %+v, %v; want size %d version %s", p, st, err, size, e.Version)
		}
		if got := readAll(t, c, p, 1*MiB); got != want[p] {
			t.Fatalf("%s read back from the journal: SHA-256 differs", p)
		}
	}
	// An overwrite while the first is pending: only the newer reaches the lake.
	p0 := "/lake/s3/ckpt/rank-0.pt"
	if _, err := putWithin(ctx, c, p0, patternAt(599, 0, 8*MiB), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	want[p0] = sha256.Sum256(patternAt(599, 0, 8*MiB))
	for p := range want {
		if _, err := headDirect(ctx, m.minio, p); err == nil {
			t.Fatalf("%s is in the lake while the lake hangs", p)
		}
	}

	m.killAll()
	m.proxy.Release()

	deadline := time.Now().Add(90 * time.Second)
	for p, sum := range want {
		for {
			got, err := getDirect(ctx, m.minio, p)
			if err == nil && sha256.Sum256(got) == sum {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach the lake with the acknowledged content after the restart (err %v, %d bytes)", p, err, len(got))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Write-through outside the policy: the lake has it when Put returns.
	if _, err := c.Put(ctx, "/lake/s3/plain/a.bin", bytes.NewReader(patternAt(7, 0, MiB))); err != nil {
		t.Fatal(err)
	}
	if got, err := getDirect(ctx, m.minio, "/lake/s3/plain/a.bin"); err != nil || !bytes.Equal(got, patternAt(7, 0, MiB)) {
		t.Fatalf("write-through: the lake does not have the bytes when Put returned (%v)", err)
	}

	// A Put whose input breaks off writes nothing, in either mode: not a
	// short file, not over the old content. An input that ends with
	// io.ErrUnexpectedEOF (a truncated body) is broken too, not a short
	// last chunk.
	for _, p := range []string{"/lake/s3/plain/a.bin", "/lake/s3/plain/new.bin", "/lake/s3/ckpt/broken.pt"} {
		for _, cause := range []error{errors.New("input went away"), io.ErrUnexpectedEOF} {
			before, beforeErr := getDirect(ctx, m.minio, p)
			in := io.MultiReader(bytes.NewReader(patternAt(9, 0, 3*MiB)), iotest.ErrReader(cause))
			if _, err := c.Put(ctx, p, in); !errors.Is(err, cause) {
				t.Fatalf("put %s from an input failing with %q: err %v, want that error", p, cause, err)
			}
			if st, err := c.Stat(ctx, p); beforeErr != nil && err == nil {
				t.Fatalf("put %s failed, yet the region stats it: %+v", p, st)
			}
			time.Sleep(time.Second) // a write-back would be on its way to the lake by now
			after, afterErr := getDirect(ctx, m.minio, p)
			if (beforeErr == nil) != (afterErr == nil) || !bytes.Equal(before, after) {
				t.Fatalf("put %s failed with %q, yet the lake changed: %d bytes (err %v) before, %d bytes (err %v) after", p, cause, len(before), beforeErr, len(after), afterErr)
			}
		}
	}
}

// TestWriteBackWhileItsNodeIsDown: a write-back file not in its lake yet
// whose node is killed -9. The region never answers the lake's previous
// version for it: a stat on the nodes left answers the journal's version
// (every node was told of it), and a read fails naming the node, until
// the node is back; then the new bytes, which reach the lake.
func TestWriteBackWhileItsNodeIsDown(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/ckpt\n    write_mode: back\n"})
	ctx := context.Background()
	c := m.client()
	// A path whose next node (its stats' node while its owner, the
	// journal's node, is down) is not its directory's node, which was
	// told of write-back files before every node was.
	members := c.Members()
	dirNode, _ := region.Owner("meta:/lake/s3/ckpt", members)
	var p string
	for i := 0; p == ""; i++ {
		q := fmt.Sprintf("/lake/s3/ckpt/model-%d.pt", i)
		if region.Rank("meta:"+q, members)[1].ID != dirNode.ID {
			p = q
		}
	}
	oldSum := m.upload(lakeKey(p), 3*MiB, 700)
	// Every node may have the previous version cached (metadata, pages).
	for range m.nodes {
		if got := readAll(t, c, p, MiB); got != oldSum {
			t.Fatal("the previous version read back wrong")
		}
	}

	// A node away while the file is written is told of it when it is
	// back.
	owner := region.Rank("meta:"+p, members)[0].ID
	var away *nodeProc
	for _, n := range m.nodes {
		if n.id != owner {
			away = n
			break
		}
	}
	m.stop(away, syscall.SIGTERM)
	m.waitMembers(len(m.nodes) - 1)
	for deadline := time.Now().Add(30 * time.Second); len(c.Members()) != len(m.nodes)-1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client still sees %d members", len(c.Members()))
		}
	}

	m.proxy.Hold()             // the new version stays in the journal
	t.Cleanup(m.proxy.Release) // before the mesh stops, should this test fail
	newData := patternAt(701, 0, 5*MiB)
	e, err := putWithin(ctx, c, p, newData, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	holder, ok := cachenode.JournalNode(e.Version)
	if !ok || holder != owner {
		t.Fatalf("put answered version %q, want a journal version of %s", e.Version, owner)
	}
	m.start(away)
	m.waitMembers(len(m.nodes))
	waitNodeStat(t, away, p, "back after the write", "the journal's version "+e.Version, func(got *nodepb.Entry) bool {
		return got.GetVersion() == e.Version
	})
	down := m.node(holder)
	time.Sleep(time.Second) // the announcement is on its way to every node
	m.stop(down, syscall.SIGKILL)
	m.waitMembers(len(m.nodes) - 1)

	c2 := m.client() // a reader that never saw the write
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	st, err := c2.Stat(sctx, p) // the lake still hangs: only the region can answer
	cancel()
	if err != nil || st.Version != e.Version || st.Size != int64(len(newData)) {
		t.Fatalf("stat %s while its journal's node %s is down: %+v, %v; want the journal's version %s (size %d), not the lake's previous one", p, holder, st, err, e.Version, len(newData))
	}
	f, err := c2.Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	got, err := io.ReadAll(f.Reader(rctx))
	cancel()
	f.Close()
	if err == nil {
		t.Fatalf("read %s while its journal's node is down returned %d bytes (the previous version: %v); want an error", p, len(got), sha256.Sum256(got) == oldSum)
	}
	if !errors.Is(err, router.ErrNoNode) || !strings.Contains(err.Error(), holder) {
		t.Fatalf("read while %s is down: %v; want router.ErrNoNode, naming the node", holder, err)
	}
	t.Logf("read while %s is down: %v", holder, err)

	m.start(down)
	m.waitMembers(len(m.nodes))
	m.waitViews(len(m.nodes))
	m.proxy.Release()
	want := sha256.Sum256(newData)
	deadline := time.Now().Add(90 * time.Second)
	for {
		lake, err := getDirect(ctx, m.minio, p)
		if err == nil && sha256.Sum256(lake) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach the lake after its node came back (err %v)", p, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := readAll(t, m.client(), p, MiB); got != want {
		t.Fatal("after the upload the region reads other bytes than those written")
	}
}

// TestWriteFromRemoteRegion: region c (no data) writes into the lake homed
// in a. Write-through returns once a's lake has it; write-back returns at
// once, reads back in c from c's journal, and reaches the lake through a
// node of a that pulls it over the line (the bytes counted on the line).
func TestWriteFromRemoteRegion(t *testing.T) {
	m := newFedMesh(t, fedOptions{
		nodes:    map[string]int{"a": 2, "b": 1, "c": 2},
		policies: "  - path: /lake/s3/wb\n    write_mode: back\n",
	})
	ctx := context.Background()
	cc, ca := m.client("c"), m.client("a")
	const size = 24 * MiB

	m.resetLines()
	data := patternAt(41, 0, size)
	if _, err := cc.Put(ctx, "/lake/s3/through/x.bin", bytes.NewReader(data)); err != nil {
		t.Fatalf("write-through from c: %v", err)
	}
	if got, err := getDirect(ctx, m.minio, "/lake/s3/through/x.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("write-through from c: the lake does not have the bytes when Put returned (%v)", err)
	}
	_, crossed := m.lineTo("a", "c").Bytes()
	t.Logf("write-through of %d bytes from c: %d bytes crossed c->a on the line (%.4fx)", size, crossed, float64(crossed)/size)
	if crossed < size || crossed > size*102/100 {
		t.Errorf("write-through of %d bytes from c: %d bytes crossed the line a-c, want about %d", size, crossed, size)
	}
	if got := readAll(t, ca, "/lake/s3/through/x.bin", MiB); got != sha256.Sum256(data) {
		t.Fatal("read from a after the write-through: SHA-256 differs")
	}
	// c wrote those bytes: its read of the new version crosses no line.
	readWithoutLine(t, m, cc, "/lake/s3/through/x.bin", data, "write-through from c")

	data = patternAt(42, 0, size)
	e, err := cc.Put(ctx, "/lake/s3/wb/y.bin", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("write-back from c: %v", err)
	}
	if _, ok := cachenode.JournalNode(e.Version); !ok {
		t.Fatalf("write-back from c answered version %q, want a journal version", e.Version)
	}
	if got := readAll(t, cc, "/lake/s3/wb/y.bin", MiB); got != sha256.Sum256(data) {
		t.Fatal("read back in c after the write-back: SHA-256 differs")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := getDirect(ctx, m.minio, "/lake/s3/wb/y.bin")
		if err == nil && bytes.Equal(got, data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write-back from c did not reach a's lake within 60s (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Once the journal has retired it, c stats the lake's version; c
	// wrote those bytes, so reading that version crosses no line.
	waitLakeVersion(t, cc, "/lake/s3/wb/y.bin", 30*time.Second)
	readWithoutLine(t, m, cc, "/lake/s3/wb/y.bin", data, "write-back from c")
	if _, _, err := ca.Sync(ctx, "/lake/s3/wb"); err != nil {
		t.Logf("sync: %v", err)
	}
	// a's node that pulled the file seeded a with it, as c's write-back
	// was retired only after that (waitLakeVersion above).
	m.resetLines()
	if got := readAll(t, ca, "/lake/s3/wb/y.bin", MiB); got != sha256.Sum256(data) {
		t.Fatal("read from a after the upload: SHA-256 differs")
	}
	if fromLake := m.lake.BytesFromTarget(); fromLake > seedSlack {
		t.Errorf("read of %d bytes in a right after c's write-back reached it: %d bytes came from the lake, want about 0 (under %d)", size, fromLake, seedSlack)
	}

	// A write-through in the lake's home region: a reads what it wrote
	// without reading it back from the lake.
	data = patternAt(43, 0, size)
	if _, err := ca.Put(ctx, "/lake/s3/through/z.bin", bytes.NewReader(data)); err != nil {
		t.Fatalf("write-through from a: %v", err)
	}
	m.resetLines()
	if got := readAll(t, ca, "/lake/s3/through/z.bin", MiB); got != sha256.Sum256(data) {
		t.Fatal("read from a after its write-through: SHA-256 differs")
	}
	fromLake := m.lake.BytesFromTarget()
	t.Logf("read of %d bytes in a right after a's write-through: %d bytes from the lake", size, fromLake)
	if fromLake > seedSlack {
		t.Errorf("read of %d bytes in a right after a's write-through: %d bytes came from the lake, want about 0 (under %d)", size, fromLake, seedSlack)
	}
}

// seedSlack is what a read of a file its region wrote may still move on a
// line or from the lake (metadata, not pages): well under one page.
const seedSlack = 64 << 10

// waitLakeVersion waits until c stats p at a version from its lake, not
// a write-back journal's.
func waitLakeVersion(t *testing.T, c *router.Client, p string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		e, err := c.Stat(context.Background(), p)
		if err == nil {
			if _, journal := cachenode.JournalNode(e.Version); !journal && e.Version != "" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the region still stats a write-back version %d s after the lake had it (%+v, %v)", p, int(d.Seconds()), e, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readWithoutLine reads p in c's region and checks that its content is
// want and that no page of it crossed the line a-c or came from the lake.
func readWithoutLine(t *testing.T, m *fedMesh, cc *router.Client, p string, want []byte, what string) {
	t.Helper()
	m.resetLines()
	if got := readAll(t, cc, p, MiB); got != sha256.Sum256(want) {
		t.Fatalf("%s: read back in c after the upload: SHA-256 differs", what)
	}
	crossed := m.intoRegion("c")
	t.Logf("%s: read of %d bytes in c after the upload: %d bytes crossed into c, %d from the lake", what, len(want), crossed, m.lake.BytesFromTarget())
	if crossed > seedSlack {
		t.Errorf("%s: read of %d bytes in c after the upload: %d bytes crossed into c over lines, want about 0 (under %d)", what, len(want), crossed, seedSlack)
	}
}

// putWithin writes p and fails if it takes longer than d.
func putWithin(ctx context.Context, c *router.Client, p string, data []byte, d time.Duration) (router.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.Put(ctx, p, bytes.NewReader(data))
}

// lakeKey is the MinIO key of a namespace path under /lake/s3.
func lakeKey(p string) string { return p[len("/lake/s3/"):] }

func headDirect(ctx context.Context, minio *testenv.MinIOServer, p string) (*s3.HeadObjectOutput, error) {
	return minio.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(lakeKey(p))})
}

func getDirect(ctx context.Context, minio *testenv.MinIOServer, p string) ([]byte, error) {
	out, err := minio.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(lakeKey(p))})
	if err != nil {
		var nk *types.NoSuchKey
		if errors.As(err, &nk) {
			return nil, fmt.Errorf("%s: not in the lake", p)
		}
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// TestEveryNodeKnowsWhatAnUploadCameFrom: once a write-back file is in
// its lake, every node of the region answers its stat with the journal
// version it came from (uploaded_from), not only the node that uploaded
// it: so an S3 client's If-Match of the ETag from before the upload still
// holds when another node answers the stat (after the uploader went down,
// or the members changed).
func TestEveryNodeKnowsWhatAnUploadCameFrom(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/wb\n    write_mode: back\n"})
	c := m.client()
	ctx := context.Background()
	const p = "/lake/s3/wb/ckpt.bin"
	data := patternAt(81, 0, 3*MiB)
	e, err := c.Put(ctx, p, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cachenode.JournalNode(e.Version); !ok {
		t.Fatalf("put answered version %q, want a journal version", e.Version)
	}
	waitLake(t, m, p, data)
	for _, n := range m.nodes {
		waitNodeStat(t, n, p, "after its upload", "the lake's version, uploaded from "+e.Version, func(got *nodepb.Entry) bool {
			return !strings.HasPrefix(got.GetVersion(), "wb:") && got.GetUploadedFrom() == e.Version
		})
	}
}

// waitNodeStat asks node n for a stat of p (its own answer, not the
// router's) until ok accepts it, for at most 30 s.
func waitNodeStat(t *testing.T, n *nodeProc, p, when, want string, ok func(*nodepb.Entry) bool) {
	t.Helper()
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		reply, err := nodepb.NewNodeClient(cc).Stat(sctx, &nodepb.StatRequest{Path: p})
		cancel()
		if err == nil && ok(reply.GetEntry()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s, %s, answers a stat of %s with %v, %v; want %s", n.id, when, p, reply.GetEntry(), err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
