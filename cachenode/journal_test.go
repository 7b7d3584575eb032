package cachenode

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

func journalBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Appended files are stored whole, at every size around the journal's
// buffer and direct I/O boundaries, and found again by a journal opened
// on the same directory (a restarted node).
func TestJournalAppendStoresBytes(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, directAlign - 1, directAlign, directAlign + 1, journalBuffer - 1, journalBuffer, journalBuffer + 1, 3*journalBuffer + 12345}
	want := map[string][]byte{}
	for i, size := range sizes {
		p := fmt.Sprintf("/lake/a/f%d", i)
		data := journalBytes(size, uint64(i))
		// Small reads, as a gRPC stream gives them, must not matter.
		e, err := j.AppendAttrs(p, iotest.HalfReader(bytes.NewReader(data)), attrsOf(i))
		if err != nil {
			t.Fatalf("append %d bytes: %v", size, err)
		}
		if e.Size != int64(size) || e.CRC32C != crc32.Checksum(data, castagnoli) {
			t.Fatalf("append %d bytes: entry size %d CRC-32C %08x", size, e.Size, e.CRC32C)
		}
		want[p] = data
	}
	again, err := OpenJournal(dir, "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(again.All()); got != len(sizes) {
		t.Fatalf("reopened journal has %d entries, want %d", got, len(sizes))
	}
	for _, e := range again.All() {
		f, err := again.OpenData(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, want[e.Path]) {
			t.Fatalf("%s: read %d bytes back (%v), want the %d written", e.Path, len(got), err, len(want[e.Path]))
		}
		var i int
		fmt.Sscanf(e.Path, "/lake/a/f%d", &i)
		if !maps.Equal(e.Attrs, attrsOf(i)) {
			t.Errorf("%s: the reopened journal has attrs %v, want %v", e.Path, e.Attrs, attrsOf(i))
		}
	}
}

// attrsOf are the attrs of the i-th file of a test: none for even i.
func attrsOf(i int) ufs.Attrs {
	if i%2 == 0 {
		return nil
	}
	return ufs.Attrs{"content-type": "application/x-test", "x-amz-meta-i": fmt.Sprint(i)}
}

// An input that breaks off leaves nothing in the journal, whether it
// fails with an error or with io.ErrUnexpectedEOF (a truncated body, not
// a short last piece).
func TestJournalAppendFailedInputLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cause := range []error{errors.New("stream cancelled"), io.ErrUnexpectedEOF} {
		in := io.MultiReader(bytes.NewReader(journalBytes(journalBuffer+5, 1)), iotest.ErrReader(cause))
		if _, err := j.Append("/lake/a/broken", in); !errors.Is(err, cause) {
			t.Fatalf("append from an input failing with %q: err %v", cause, err)
		}
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("failed appends left %d files in the journal: %v", len(names), names)
	}
	if _, ok := j.Pending("/lake/a/broken"); ok {
		t.Fatal("a failed append is pending")
	}
}

// BenchmarkJournalAppend appends 256 MiB files: bytes written, then
// synced, as a write-back checkpoint is before its acknowledgement.
//
//	go test ./cachenode -run '^$' -bench JournalAppend -benchtime 5x
func BenchmarkJournalAppend(b *testing.B) {
	const size = 256 << 20
	data := journalBytes(1<<20, 1)
	j, err := OpenJournal(b.TempDir(), "n1", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	cpu := cpuTime()
	for b.Loop() {
		e, err := j.Append("/lake/a/ckpt", &repeatReader{b: data, left: size})
		if err != nil {
			b.Fatal(err)
		}
		j.mu.Lock()
		j.drop(j.byID[e.ID])
		j.mu.Unlock()
	}
	b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N)*(1<<30)/size, "cpu-s/GiB")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// repeatReader reads b again and again, left bytes in all, in pieces of
// at most 1 MiB (a write stream's messages).
type repeatReader struct {
	b    []byte
	left int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.left)], r.b)
	r.left -= n
	return n, nil
}

// A lent file becomes an entry only when committed at the size it holds,
// with the CRC-32C of its bytes whether the client gave it or not; one
// given up, or never committed before a restart, leaves nothing.
func TestJournalLend(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	data := journalBytes(3*journalBuffer+999, 7)
	sum := crc32.Checksum(data, castagnoli)
	var want []JournalEntry
	for i, known := range []bool{true, false} {
		l, err := j.Lend(fmt.Sprintf("/lake/x/lent-%d", i), attrsOf(i))
		if err != nil {
			t.Fatal(err)
		}
		// Out of order, as a client may write.
		half := len(data) / 2
		if _, err := l.File().WriteAt(data[half:], int64(half)); err != nil {
			t.Fatal(err)
		}
		if _, err := l.File().WriteAt(data[:half], 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Commit(LentCommit{Size: int64(len(data)) - 1}); !errors.Is(err, errLentSize) {
			t.Fatalf("commit at a size the file does not have: %v, want errLentSize", err)
		}
		if _, ok := j.Pending(l.Path()); ok {
			t.Fatal("a refused commit made an entry")
		}
		given := sum
		if !known {
			given = 0 // not known: the journal takes it
		}
		e, err := l.Commit(LentCommit{Size: int64(len(data)), CRC32C: given, CRCKnown: known})
		if err != nil {
			t.Fatal(err)
		}
		if e.Size != int64(len(data)) || e.CRC32C != sum || !maps.Equal(e.Attrs, attrsOf(i)) {
			t.Fatalf("committed entry %+v, want %d bytes, CRC %08x, attrs %v", e, len(data), sum, attrsOf(i))
		}
		if _, err := l.Commit(LentCommit{Size: int64(len(data)), CRC32C: sum, CRCKnown: true}); !errors.Is(err, errLentDone) {
			t.Fatalf("second commit: %v, want errLentDone", err)
		}
		l.Abort() // after a commit: nothing
		want = append(want, e)
	}
	// Of two lent files of one path, the one committed last is the
	// newest, whichever was lent first.
	first, err := j.Lend("/lake/x/both", nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := j.Lend("/lake/x/both", nil)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := second.Commit(LentCommit{Size: 0, CRCKnown: true})
	if err != nil {
		t.Fatal(err)
	}
	first.File().Write(data[:10])
	e1, err := first.Commit(LentCommit{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if newest, _ := j.Pending("/lake/x/both"); newest.ID != e1.ID || e1.Seq <= e2.Seq {
		t.Fatalf("the newest entry of a path written by two lent files is %+v, want the one committed last, %+v", newest, e1)
	}
	want = append(want, e2, e1)
	given, err := j.Lend("/lake/x/given-up", nil)
	if err != nil {
		t.Fatal(err)
	}
	given.File().Write(data[:100])
	given.Abort()
	if _, err := os.Stat(j.dataPath(given.fileID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a lent file given up is still there: %v", err)
	}
	never, err := j.Lend("/lake/x/never", nil)
	if err != nil {
		t.Fatal(err)
	}
	never.File().Write(data[:100])

	j2, err := OpenJournal(dir, "n1", nil) // a restart, with never still lent
	if err != nil {
		t.Fatal(err)
	}
	got := j2.All()
	if len(got) != len(want) {
		t.Fatalf("after a restart the journal has %d entries, want the %d committed", len(got), len(want))
	}
	for i, e := range got {
		f, err := j2.OpenData(e)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if e.ID != want[i].ID || !bytes.Equal(b, data[:e.Size]) {
			t.Fatalf("entry %d after a restart: %+v with %d bytes, want %+v", i, e, len(b), want[i])
		}
	}
	if _, err := os.Stat(j.dataPath(never.fileID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a lent file never committed survived the restart: %v", err)
	}
}
