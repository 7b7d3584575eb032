package cachenode

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

// journalVersionPrefix starts the Version of a file that is in a node's
// write-back journal and not yet in its lake: "wb:<node id>:<entry id>".
// Readers route the pages of such a version to that node.
const journalVersionPrefix = "wb:"

// journalGrace is how long a journal file's bytes stay readable after its
// upload, for readers that opened the journal version before.
const journalGrace = 2 * time.Minute

// JournalEntry is one acknowledged write waiting for its lake.
type JournalEntry struct {
	ID      string    `json:"id"`
	Path    string    `json:"path"` // namespace path
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// CRC32C is the CRC-32C of the bytes, taken as they were written.
	// (Records of earlier versions carry a SHA-256 instead, which cost
	// a node more CPU than writing the bytes; neither is needed to
	// replay a record, whose data file is checked by its size.)
	CRC32C uint32 `json:"crc32c"`
	Seq    int64  `json:"seq"` // order of writes on this node
	// Attrs are stored with the file in its lake (ufs.AttrFS).
	Attrs ufs.Attrs `json:"attrs,omitempty"`
}

// Version is the entry's file version until the lake has it.
func (e JournalEntry) Version() string { return journalVersionPrefix + e.ID }

// JournalNode returns the node that holds a journal version, and false
// for versions that came from a lake.
func JournalNode(version string) (string, bool) {
	rest, ok := strings.CutPrefix(version, journalVersionPrefix)
	if !ok {
		return "", false
	}
	node, _, ok := strings.Cut(rest, ":")
	return node, ok
}

// Journal keeps the files written in write-back mode on a node's disk
// until their lake has them: a write is acknowledged only after its bytes
// and its record are synced, and a node that restarts (after a crash too)
// finds every record again and uploads it.
//
// On disk, each entry is <id>.data (the bytes) and <id>.rec (the record,
// JSON), the record written last by rename, so a data file without a
// record is a write that was never acknowledged and is removed at open.
//
// Entries of one path are uploaded in the order they were written; an
// entry superseded by a newer write of its path before its upload is
// dropped, never uploaded after the newer one.
type Journal struct {
	dir    string
	nodeID string
	log    *slog.Logger

	mu      sync.Mutex
	pending []*JournalEntry          // in Seq order
	newest  map[string]*JournalEntry // path -> its newest pending entry
	byID    map[string]*JournalEntry // pending and recently uploaded
	done    map[string]time.Time     // uploaded id -> when its bytes may go
	busy    map[string]bool          // id -> being uploaded
	// forgotten are busy entries whose path was deleted during their
	// upload: dropped when it ends, never retried.
	forgotten map[string]bool
	seq       int64
	wake      chan struct{}
	uploads   *sync.Cond // signalled when an entry leaves the pending set
}

// OpenJournal opens (creating it) the journal in dir and loads the
// entries a previous run acknowledged and did not upload.
func OpenJournal(dir, nodeID string, log *slog.Logger) (*Journal, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write-back journal %s: %w", dir, err)
	}
	j := &Journal{dir: dir, nodeID: nodeID, log: log, newest: map[string]*JournalEntry{},
		byID: map[string]*JournalEntry{}, done: map[string]time.Time{}, busy: map[string]bool{},
		forgotten: map[string]bool{}, wake: make(chan struct{}, 1)}
	j.uploads = sync.NewCond(&j.mu)
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("write-back journal %s: %w", dir, err)
	}
	records := map[string]bool{}
	for _, de := range names {
		if id, ok := strings.CutSuffix(de.Name(), ".rec"); ok {
			records[id] = true
		}
	}
	for _, de := range names {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, ".rec"):
			e, err := j.load(name)
			if err != nil {
				return nil, err
			}
			j.add(e)
		case strings.HasSuffix(name, ".data") && records[strings.TrimSuffix(name, ".data")]:
		default: // a write that was never acknowledged, or a record's temporary
			os.Remove(filepath.Join(dir, name))
		}
	}
	slices.SortFunc(j.pending, func(a, b *JournalEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(j.pending) > 0 {
		log.Info("write-back journal has files for their lakes", "dir", dir, "files", len(j.pending))
	}
	return j, nil
}

func (j *Journal) load(name string) (*JournalEntry, error) {
	b, err := os.ReadFile(filepath.Join(j.dir, name))
	if err != nil {
		return nil, fmt.Errorf("write-back journal: %w", err)
	}
	var e JournalEntry
	if err := json.Unmarshal(b, &e); err != nil || e.ID == "" || e.Path == "" {
		return nil, fmt.Errorf("write-back journal %s: record %s is damaged (%v); move it aside to start, its file was not uploaded", j.dir, name, err)
	}
	fi, err := os.Stat(j.dataPath(fileIDOf(e.ID)))
	if err != nil || fi.Size() != e.Size {
		return nil, fmt.Errorf("write-back journal %s: the data of record %s (%s) is missing or short; move both aside to start, the file was not uploaded", j.dir, name, e.Path)
	}
	j.seq = max(j.seq, e.Seq)
	return &e, nil
}

// add makes e pending; j.mu is held or j is not shared yet.
func (j *Journal) add(e *JournalEntry) {
	j.pending = append(j.pending, e)
	if old := j.newest[e.Path]; old == nil || old.Seq < e.Seq {
		j.newest[e.Path] = e
	}
	j.byID[e.ID] = e
}

func (j *Journal) dataPath(id string) string { return filepath.Join(j.dir, id+".data") }
func (j *Journal) recPath(id string) string  { return filepath.Join(j.dir, id+".rec") }

// Append writes r as the new content of path and returns once the bytes
// and the record are on disk. A failed Append leaves nothing behind.
func (j *Journal) Append(path string, r io.Reader) (JournalEntry, error) {
	return j.AppendAttrs(path, r, nil)
}

// AppendAttrs is Append of a file with attrs for its lake.
func (j *Journal) AppendAttrs(path string, r io.Reader, attrs ufs.Attrs) (JournalEntry, error) {
	e := j.newEntry(path, attrs)
	fileID := fileIDOf(e.ID)
	if err := j.write(&e, fileID, r); err != nil {
		os.Remove(j.dataPath(fileID))
		os.Remove(j.recPath(fileID) + ".tmp")
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", path, err)
	}
	j.publish(&e)
	return e, nil
}

// newEntry returns a new entry of path, with its id and place in the
// node's order of writes.
func (j *Journal) newEntry(path string, attrs ufs.Attrs) JournalEntry {
	var rnd [6]byte
	rand.Read(rnd[:])
	seq := j.nextSeq()
	return JournalEntry{ID: fmt.Sprintf("%s:%d-%s", j.nodeID, seq, hex.EncodeToString(rnd[:])), Path: path, Seq: seq, Attrs: attrs}
}

// nextSeq takes the next place in the node's order of writes.
func (j *Journal) nextSeq() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	return j.seq
}

// publish makes an entry whose data and record are on disk pending, and
// wakes the uploader.
func (j *Journal) publish(e *JournalEntry) {
	j.mu.Lock()
	j.add(e)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// LentFile is a journal data file lent to a client on the node's host,
// which writes the file's bytes into it itself (the FUSE mount does,
// instead of spooling them and streaming them to the node: see
// cachenode/lend.go). Until Commit it is no entry: a node that restarts
// removes it, as a write never acknowledged.
type LentFile struct {
	j      *Journal
	e      JournalEntry
	fileID string
	f      *os.File // read-write

	mu   sync.Mutex
	done bool // committed or aborted
}

// Lend creates an empty data file for a new write of path and returns it
// open for reading and writing.
func (j *Journal) Lend(path string, attrs ufs.Attrs) (*LentFile, error) {
	e := j.newEntry(path, attrs)
	fileID := fileIDOf(e.ID)
	f, err := os.OpenFile(j.dataPath(fileID), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write-back journal: %s: %w", path, err)
	}
	return &LentFile{j: j, e: e, fileID: fileID, f: f}, nil
}

// File is the lent data file; the node's copy of the descriptor.
func (l *LentFile) File() *os.File { return l.f }

// Path is the namespace path the file is written for.
func (l *LentFile) Path() string { return l.e.Path }

// Commit makes the lent file the new content of its path, c.Size bytes
// long, once the bytes and the record are on disk; the file is the
// journal's from then on. c.CRC32C is their CRC-32C when known
// (c.CRCKnown: the client took it while it wrote them in order);
// otherwise Commit reads the file to take it. A file whose size is not
// c.Size is refused and stays lent.
func (l *LentFile) Commit(c LentCommit) (JournalEntry, error) {
	size, sum := c.Size, c.CRC32C
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", l.e.Path, errLentDone)
	}
	fi, err := l.f.Stat()
	if err != nil {
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", l.e.Path, err)
	}
	if fi.Size() != size {
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w: the file holds %d bytes, the commit says %d",
			l.e.Path, errLentSize, fi.Size(), size)
	}
	if err := l.f.Sync(); err != nil {
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", l.e.Path, err)
	}
	if !c.CRCKnown {
		if sum, err = crcOf(io.NewSectionReader(l.f, 0, size)); err != nil {
			return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", l.e.Path, err)
		}
	}
	e := l.e
	e.Size, e.CRC32C, e.ModTime = size, sum, time.Now()
	// The write is ordered by its commit, not by its lend: of two
	// handles writing one path, the one closed last wins.
	e.Seq = l.j.nextSeq()
	if err := l.j.writeRecord(&e, l.fileID); err != nil {
		os.Remove(l.j.recPath(l.fileID) + ".tmp")
		return JournalEntry{}, fmt.Errorf("write-back journal: %s: %w", l.e.Path, err)
	}
	l.done = true
	l.f.Close()
	l.j.publish(&e)
	return e, nil
}

// Abort removes a lent file that was not committed; after Commit it does
// nothing.
func (l *LentFile) Abort() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	l.f.Close()
	os.Remove(l.j.dataPath(l.fileID))
}

var (
	errLentDone = errors.New("the lent file was committed or aborted already")
	errLentSize = errors.New("lent file size differs")
)

// journalBuffer is the piece of a file the journal writes at a time, and
// journalBuffers how many pieces one Append holds: one is filled from the
// write stream while the others wait for, or are in, the write. Pieces are
// written through the kernel's page cache, and each one's writeback is
// started as soon as it is written (startWriteback, sync_file_range): the
// bytes reach the disk while the stream goes on, so the fsync that
// acknowledges the file has little left to do, and the upload that reads
// the file back finds it in the page cache. Direct writes cost less CPU
// (0.38 CPU-s per GiB against 0.9-1.0) but this machine's disk took them
// at 330-360 MB/s, 4 MiB at a time with two to four in flight, against
// 475-500 MB/s for the page cache's writeback (`go test ./cachenode -run
// '^$' -bench JournalAppend`); a 2 GiB write-back checkpoint through the
// mount measured 238-417 MB/s (median 305) with direct writes, 296-415
// (median 348) this way.
const (
	journalBuffer  = 4 << 20
	journalBuffers = 4
	journalWriters = 2
)

func (j *Journal) write(e *JournalEntry, fileID string, r io.Reader) error {
	name := j.dataPath(fileID)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	n, sum, err := writeData(name, r)
	if err != nil {
		return err
	}
	e.Size, e.CRC32C, e.ModTime = n, sum, time.Now()
	return j.writeRecord(e, fileID)
}

// writeRecord writes e's record, which acknowledges its synced data file.
func (j *Journal) writeRecord(e *JournalEntry, fileID string) error {
	rec, _ := json.Marshal(e)
	tmp := j.recPath(fileID) + ".tmp"
	if err := writeSynced(tmp, rec); err != nil {
		return err
	}
	if err := os.Rename(tmp, j.recPath(fileID)); err != nil {
		return err
	}
	return syncDir(j.dir)
}

// writeData writes r into the empty file name and syncs it, and returns
// its size and CRC-32C. Reading r and writing the file overlap: a writer
// goroutine writes each filled buffer while the next one is read. r's
// clean end (io.EOF) ends the file; any other error of r fails the write.
func writeData(name string, r io.Reader) (int64, uint32, error) {
	w, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}

	type piece struct {
		b   []byte
		off int64
	}
	free := make(chan []byte, journalBuffers)
	for range journalBuffers {
		free <- make([]byte, journalBuffer)
	}
	full := make(chan piece, journalBuffers)
	failed := make(chan struct{}) // closed when a write fails
	var (
		failOnce sync.Once
		werr     error // the failed write's error, once failed is closed
		written  sync.WaitGroup
	)
	for range journalWriters {
		written.Go(func() {
			for p := range full {
				select {
				case <-failed:
				default:
					if _, err := w.WriteAt(p.b, p.off); err != nil {
						failOnce.Do(func() { werr = err; close(failed) })
					} else {
						startWriteback(w, p.off, int64(len(p.b)))
					}
				}
				free <- p.b[:cap(p.b)]
			}
		})
	}
	var n int64
	var sum uint32
	var rerr error
	for rerr == nil {
		var b []byte
		select {
		case b = <-free:
		case <-failed:
			rerr = errJournalWrite
			continue
		}
		var k int
		k, rerr = fillBuffer(r, b)
		if k > 0 {
			sum = crc32.Update(sum, castagnoli, b[:k])
			full <- piece{b[:k], n}
			n += int64(k)
		}
	}
	close(full)
	written.Wait()
	if rerr == io.EOF || rerr == errJournalWrite {
		rerr = nil
	}
	if err := cmp.Or(werr, rerr, w.Close()); err != nil {
		return 0, 0, err
	}
	// fsync syncs the file's bytes and size, whichever descriptor wrote them.
	if err := syncFile(name); err != nil {
		return 0, 0, err
	}
	return n, sum, nil
}

// errJournalWrite stops reading a write stream whose bytes could not be
// written; the write's own error is returned.
var errJournalWrite = errors.New("journal write failed")

// fillBuffer reads from r until b is full or r fails. It returns io.EOF
// only for r's own clean end: an input that breaks off with
// io.ErrUnexpectedEOF is an error, which io.ReadFull could not tell apart
// from a short last piece.
func fillBuffer(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Pending returns the newest entry of path that its lake does not have yet.
func (j *Journal) Pending(path string) (JournalEntry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if e := j.newest[path]; e != nil {
		return *e, true
	}
	return JournalEntry{}, false
}

// PendingUnder returns the newest pending entry of every path directly
// under dir.
func (j *Journal) PendingUnder(dir string) []JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []JournalEntry
	for p, e := range j.newest {
		if parent, _ := splitDir(p); parent == dir {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b JournalEntry) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// PendingBelow returns the newest pending entry of every path below dir,
// at any depth.
func (j *Journal) PendingBelow(dir string) []JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []JournalEntry
	for p, e := range j.newest {
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, *e)
		}
	}
	return out
}

func splitDir(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

// All returns every pending entry, oldest first.
func (j *Journal) All() []JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]JournalEntry, 0, len(j.pending))
	for _, e := range j.pending {
		out = append(out, *e)
	}
	return out
}

// Next waits for the oldest pending entry that is not superseded and not
// being uploaded, and marks it busy. Superseded entries are dropped.
func (j *Journal) Next(ctx context.Context) (JournalEntry, error) {
	for {
		j.mu.Lock()
		j.expire()
		for _, e := range slices.Clone(j.pending) {
			if j.busy[e.ID] {
				continue
			}
			if j.newest[e.Path] != e {
				j.drop(e) // a newer write of the path replaces it
				continue
			}
			j.busy[e.ID] = true
			j.mu.Unlock()
			return *e, nil
		}
		j.mu.Unlock()
		select {
		case <-ctx.Done():
			return JournalEntry{}, ctx.Err()
		case <-j.wake:
		case <-time.After(30 * time.Second): // expire uploaded bytes
		}
	}
}

// Done records that e's lake has it: its record goes at once, its bytes
// after a grace period for readers that opened its version.
func (j *Journal) Done(e JournalEntry) error {
	err := os.Remove(j.recPath(fileIDOf(e.ID)))
	if err == nil {
		err = syncDir(j.dir)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.busy, e.ID)
	delete(j.forgotten, e.ID)
	j.removePending(e.ID)
	j.done[e.ID] = time.Now().Add(journalGrace)
	return err
}

// claim marks a pending entry busy for an upload by the caller; false if
// it is busy already or gone.
func (j *Journal) claim(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.busy[id] || !slices.ContainsFunc(j.pending, func(e *JournalEntry) bool { return e.ID == id }) {
		return false
	}
	j.busy[id] = true
	return true
}

// Failed returns e to the pending set after a failed upload, or drops it
// if it was forgotten meanwhile (forgotten true).
func (j *Journal) Failed(e JournalEntry) (forgotten bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.busy, e.ID)
	if forgotten = j.forgotten[e.ID]; forgotten {
		delete(j.forgotten, e.ID)
		if pe := j.byID[e.ID]; pe != nil {
			j.drop(pe)
		}
	}
	j.uploads.Broadcast()
	return forgotten
}

// Forget drops the pending entries of path (the file was deleted, or
// written again straight to its lake), and reports whether there were
// any. An entry being uploaded cannot be taken from under its upload:
// Forget returns once that upload has ended, succeeded or not, so the
// caller's change to the lake comes after it (an upload that finished
// after a delete would bring the file back); the entry is then dropped,
// never retried. The upload is not cancelled: a lake may still apply a
// request its client gave up on (S3 a PUT whose body it has), after the
// delete.
func (j *Journal) Forget(ctx context.Context, path string) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	found := false
	var uploading []string
	for _, e := range slices.Clone(j.pending) {
		if e.Path != path {
			continue
		}
		found = true
		if !j.busy[e.ID] {
			j.drop(e)
			continue
		}
		j.forgotten[e.ID] = true
		uploading = append(uploading, e.ID)
	}
	if err := j.waitLocked(ctx, func() bool { return slices.ContainsFunc(uploading, func(id string) bool { return j.busy[id] }) }); err != nil {
		return found, fmt.Errorf("write-back journal: %s: waiting for its upload in flight to end: %w", path, err)
	}
	return found, nil
}

// WaitUploaded blocks until path has no pending entry.
func (j *Journal) WaitUploaded(ctx context.Context, path string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.waitLocked(ctx, func() bool { return j.newest[path] != nil })
}

// waitLocked waits while busy says so, for entries to leave the pending
// set or uploads to end, or until ctx ends; j.mu is held.
func (j *Journal) waitLocked(ctx context.Context, busy func() bool) error {
	stop := context.AfterFunc(ctx, func() { j.mu.Lock(); j.uploads.Broadcast(); j.mu.Unlock() })
	defer stop()
	for busy() {
		if err := ctx.Err(); err != nil {
			return err
		}
		j.uploads.Wait()
	}
	return nil
}

func fileIDOf(id string) string { return strings.ReplaceAll(id, ":", "_") }

// drop removes a pending entry and its files; j.mu is held.
func (j *Journal) drop(e *JournalEntry) {
	os.Remove(j.recPath(fileIDOf(e.ID)))
	os.Remove(j.dataPath(fileIDOf(e.ID)))
	j.removePending(e.ID)
	delete(j.byID, e.ID)
}

// removePending takes id out of the pending set; j.mu is held.
func (j *Journal) removePending(id string) {
	j.pending = slices.DeleteFunc(j.pending, func(e *JournalEntry) bool { return e.ID == id })
	for p, e := range j.newest {
		if e.ID == id {
			delete(j.newest, p)
			// An older entry of the path may still be pending (dropped
			// later by Next); the newest stays the newest written.
			for _, o := range j.pending {
				if o.Path == p && (j.newest[p] == nil || j.newest[p].Seq < o.Seq) {
					j.newest[p] = o
				}
			}
		}
	}
	j.uploads.Broadcast()
}

// expire removes uploaded bytes whose grace has passed; j.mu is held.
func (j *Journal) expire() {
	now := time.Now()
	for id, until := range j.done {
		if now.After(until) {
			os.Remove(j.dataPath(fileIDOf(id)))
			delete(j.done, id)
			delete(j.byID, id)
		}
	}
}

// Source serves the bytes of journal versions from the journal and every
// other fetch from next, so a node reads its own unuploaded files through
// its page store like any other.
func (j *Journal) Source(next Source) Source { return &journalSource{j: j, next: next} }

type journalSource struct {
	j    *Journal
	next Source
}

// Spans implements SpanSource: a journaled file is read from one file;
// other files as the next Source says.
func (s *journalSource) Spans(ctx context.Context, ref FileRef) bool {
	if strings.HasPrefix(ref.Version, journalVersionPrefix) {
		return true
	}
	next, ok := s.next.(SpanSource)
	return ok && next.Spans(ctx, ref)
}

func (s *journalSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	rest, ok := strings.CutPrefix(ref.Version, journalVersionPrefix)
	if !ok {
		return s.next.Fetch(ctx, ref, off, n)
	}
	s.j.mu.Lock()
	_, known := s.j.byID[rest]
	s.j.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("%s: write-back version %s is not in this node's journal: %w", ref, ref.Version, ufs.ErrVersionChanged)
	}
	f, err := os.Open(s.j.dataPath(fileIDOf(rest)))
	if err != nil {
		return nil, fmt.Errorf("%s: write-back journal: %w", ref, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

// OpenData opens the bytes of a journal entry (for its upload).
func (j *Journal) OpenData(e JournalEntry) (*os.File, error) {
	return os.Open(j.dataPath(fileIDOf(e.ID)))
}
