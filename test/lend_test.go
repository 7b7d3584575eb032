package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
)

// TestMountWritesIntoLentJournal: under write_mode: back, a file written
// through a mount on the host of its path's node goes straight into that
// node's journal, in a data file the node lends the mount (no spool, no
// bytes over gRPC; cachenode/lend.go). It is read back in the region at
// once, an fsync commits it and a write after the fsync makes a new file
// from the committed bytes, and after kill -9 of every node the lake gets
// the acknowledged content. A lent write whose node dies before the close
// is written through another node by the close; the dead node's file is
// gone after its restart.
func TestMountWritesIntoLentJournal(t *testing.T) {
	needFUSE(t)
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/lent\n    write_mode: back\n"})
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	startMount(t, m, dir)
	lake := filepath.Join(dir, "lake", "s3", "lent")
	if err := os.MkdirAll(lake, 0o755); err != nil {
		t.Fatal(err)
	}
	c := m.client()
	ctx := context.Background()

	// Written in order, fsynced, rewritten at its start, appended, closed,
	// while the lake hangs.
	const p = "/lake/s3/lent/ckpt.pt"
	want := patternAt(71, 0, 24*MiB)
	f, err := os.Create(filepath.Join(lake, "ckpt.pt")) // looks in the lake first
	if err != nil {
		t.Fatal(err)
	}
	m.proxy.Hold()
	t.Cleanup(m.proxy.Release) // a failure must not leave the lake hanging
	mustDo(t, "write", func() error { _, err := f.Write(want[:16*MiB]); return err })
	mustDo(t, "fsync", f.Sync)
	if st, err := c.Stat(ctx, p); err != nil || st.Size != 16*MiB {
		t.Fatalf("stat %s after the fsync: %+v, %v; want the 16 MiB committed", p, st, err)
	}
	copy(want[:4096], patternAt(72, 0, 4096))
	mustDo(t, "rewrite", func() error { _, err := f.WriteAt(want[:4096], 0); return err })
	mustDo(t, "append", func() error { _, err := f.Write(want[16*MiB:]); return err })
	mustDo(t, "close", f.Close)
	if got, err := os.ReadFile(filepath.Join(lake, "ckpt.pt")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back through the mount: %d bytes (%v), differ from the %d written", len(got), err, len(want))
	}
	st, err := c.Stat(ctx, p)
	if err != nil || st.Size != int64(len(want)) {
		t.Fatalf("stat %s: %+v, %v", p, st, err)
	}
	if _, ok := cachenode.JournalNode(st.Version); !ok {
		t.Fatalf("stat %s: version %q, want a journal version", p, st.Version)
	}
	if got := readAll(t, c, p, MiB); got != sha256.Sum256(want) {
		t.Fatalf("%s read by another client: SHA-256 differs", p)
	}
	if n := lentCommits(t, m, p); n != 2 {
		t.Fatalf("%s: %d commits of lent journal files logged by the nodes, want 2 (the fsync's and the close's)", p, n)
	}

	m.killAll()
	m.proxy.Release()
	waitLake(t, m, p, want)

	// The node a lent file came from dies before the close.
	const p2 = "/lake/s3/lent/orphan.pt"
	if err := os.WriteFile(filepath.Join(lake, "orphan.pt"), []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = c.Stat(ctx, p2)
	v := st.Version
	if st.UploadedFrom != "" {
		v = st.UploadedFrom // in the lake already
	}
	holder, ok := cachenode.JournalNode(v)
	if err != nil || !ok {
		t.Fatalf("stat %s: %+v, %v; want a journal version, or one uploaded from it", p2, st, err)
	}
	waitLake(t, m, p2, []byte("first"))
	owner := m.node(holder)
	want2 := patternAt(73, 0, 9*MiB+77)
	before := journalData(t, owner) // "first" may stay a while after its upload
	f, err = os.OpenFile(filepath.Join(lake, "orphan.pt"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, "write", func() error { _, err := f.Write(want2); return err })
	if during := journalData(t, owner); len(during) != len(before)+1 {
		t.Fatalf("node %s's journal holds data files %v while the write is lent, %v before: want one more", owner.id, during, before)
	}
	m.stop(owner, syscall.SIGKILL)
	mustDo(t, "close after the node died", f.Close)
	if got, err := os.ReadFile(filepath.Join(lake, "orphan.pt")); err != nil || !bytes.Equal(got, want2) {
		t.Fatalf("read back through the mount: %d bytes (%v), want the %d written", len(got), err, len(want2))
	}
	if got := readAll(t, c, p2, MiB); got != sha256.Sum256(want2) {
		t.Fatalf("%s read by another client: SHA-256 differs", p2)
	}
	waitLake(t, m, p2, want2)
	m.start(owner)
	m.waitMembers(len(m.nodes))
	waitJournalEmpty(t, owner, "after its restart")
	if got := readAll(t, c, p2, MiB); got != sha256.Sum256(want2) {
		t.Fatalf("%s after the node's restart: SHA-256 differs", p2)
	}
}

// TestLendSpool: a client on the nodes' host is lent a journal file for a
// write-back path only; a lent file given up, or committed with another
// size than it holds, writes nothing.
func TestLendSpool(t *testing.T) {
	m := newMesh(t, meshOptions{policies: "  - path: /lake/s3/lent\n    write_mode: back\n"})
	c := m.client()
	ctx := context.Background()
	if _, err := c.LendSpool(ctx, "/lake/s3/plain/a.bin", nil); !errors.Is(err, cachenode.ErrNotLendable) {
		t.Fatalf("lend for a write-through path: %v, want ErrNotLendable", err)
	}
	for i, commit := range []bool{false, true} {
		p := []string{"/lake/s3/lent/given-up.bin", "/lake/s3/lent/short.bin"}[i]
		l, err := c.LendSpool(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.WriteAt(patternAt(5, 0, MiB), 0); err != nil {
			t.Fatal(err)
		}
		if commit {
			if _, err := l.Commit(ctx, MiB+1); err == nil {
				t.Fatalf("commit of %d bytes of a lent file holding %d: no error", MiB+1, MiB)
			}
		}
		l.Close()
		if st, err := c.Stat(ctx, p); err == nil {
			t.Fatalf("%s exists after its lent file was given up: %+v", p, st)
		}
	}
	for _, n := range m.nodes {
		waitJournalEmpty(t, n, "after the lent files were given up")
	}
	// A commit of the right size is a write-back write, whose record
	// holds its bytes' CRC-32C, whether the client could take it (the
	// bytes written in order) or the node had to.
	data := patternAt(6, 0, 5*MiB+3)
	m.proxy.Hold() // the records stay until the uploads
	t.Cleanup(m.proxy.Release)
	for _, inOrder := range []bool{true, false} {
		p := fmt.Sprintf("/lake/s3/lent/ok-%v.bin", inOrder)
		l, err := c.LendSpool(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		pieces := []int64{0, 3 * MiB, int64(len(data))}
		if !inOrder {
			pieces = []int64{3 * MiB, int64(len(data)), 0, 3 * MiB}
		}
		for i := 0; i+1 < len(pieces); i += 2 - boolInt(inOrder) {
			from, to := pieces[i], pieces[i+1]
			if _, err := l.WriteAt(data[from:to], from); err != nil {
				t.Fatal(err)
			}
		}
		e, err := l.Commit(ctx, int64(len(data)))
		if _, ok := cachenode.JournalNode(e.Version); err != nil || !ok || e.Size != int64(len(data)) {
			t.Fatalf("commit: %+v, %v; want a journal version of %d bytes", e, err, len(data))
		}
		if got := readAll(t, c, p, MiB); got != sha256.Sum256(data) {
			t.Fatalf("%s committed reads back other bytes", p)
		}
		if _, err := l.Commit(ctx, int64(len(data))); err == nil {
			t.Fatal("a second commit of the same lent file: no error")
		}
		if sum := journalRecordCRC(t, m, e.Version); sum != crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) {
			t.Fatalf("%s (written in order: %v): the journal's record has CRC-32C %08x, not the bytes'", p, inOrder, sum)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// journalRecordCRC reads the CRC-32C in the journal record of version v,
// on whichever node holds it.
func journalRecordCRC(t *testing.T, m *mesh, v string) uint32 {
	t.Helper()
	id := strings.TrimPrefix(v, "wb:")
	for _, n := range m.nodes {
		b, err := os.ReadFile(filepath.Join(n.cacheDir, "journal", strings.ReplaceAll(id, ":", "_")+".rec"))
		if err != nil {
			continue
		}
		var rec struct {
			CRC32C uint32 `json:"crc32c"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.CRC32C
	}
	t.Fatalf("no node has the journal record of %s", v)
	return 0
}

func mustDo(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitLake waits for MinIO to hold want at namespace path p.
func waitLake(t *testing.T, m *mesh, p string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := getDirect(context.Background(), m.minio, p)
		if err == nil && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach the lake: %d bytes (%v), want %d", p, len(got), err, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lentCommits counts the nodes' log lines of lent journal files committed
// for p.
func lentCommits(t *testing.T, m *mesh, p string) int {
	t.Helper()
	n := 0
	for _, np := range m.nodes {
		b, err := os.ReadFile(np.logPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "file written into a lent journal file") && strings.Contains(line, p) {
				n++
			}
		}
	}
	return n
}

// waitJournalEmpty waits for a node's journal to hold no data file.
func waitJournalEmpty(t *testing.T, n *nodeProc, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for left := journalData(t, n); len(left) != 0; left = journalData(t, n) {
		if time.Now().After(deadline) {
			t.Fatalf("node %s's journal keeps %v %s, want none", n.id, left, when)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// journalData lists the data files in a node's journal.
func journalData(t *testing.T, n *nodeProc) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(n.cacheDir, "journal", "*.data"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}
