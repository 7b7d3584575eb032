package s3gw

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

// spool keeps multipart uploads on local disk until they complete:
//
//	<dir>/<upload id>/upload.json            bucket, key, when it began
//	<dir>/<upload id>/<part 00001>-<md5 hex> a part's bytes
//	<dir>/<upload id>/.tmp-*                 a part being received
//
// A part is written to a temporary file and renamed into place only
// after its body verified, so a listed part is always whole; its name
// carries its MD5 (the part's ETag), so a completion finds exactly the
// part the client names even if the part was uploaded twice. Upload IDs
// are 128 random bits, so they cannot be guessed, and name a directory
// only after checking their form.
type spool struct {
	dir string
	log *slog.Logger

	mu         sync.Mutex // guards completing
	completing map[string]bool
}

// uploadInfo is a multipart upload's record.
type uploadInfo struct {
	ID        string    `json:"-"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Initiated time.Time `json:"initiated"`
	Attrs     ufs.Attrs `json:"attrs,omitempty"` // given at creation, stored at completion
}

// partInfo is one stored part.
type partInfo struct {
	number  int
	md5     string // hex
	size    int64
	modTime time.Time
	path    string
}

const uploadRecord = "upload.json"

func openSpool(dir string, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("spool directory %s is not a directory", dir)
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		return nil, fmt.Errorf("spool directory %s is open to group or others (mode %04o), and it holds upload data; chmod 700 %s or give another --spool-dir", dir, mode, dir)
	}
	return &spool{dir: dir, log: log, completing: map[string]bool{}}, nil
}

// validUploadID checks an upload ID's form before it names a directory.
func validUploadID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func (sp *spool) create(bucket, key string, attrs ufs.Attrs, now time.Time) (uploadInfo, error) {
	up := uploadInfo{ID: rand.Text(), Bucket: bucket, Key: key, Initiated: now.UTC(), Attrs: attrs}
	dir := filepath.Join(sp.dir, up.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return uploadInfo{}, fmt.Errorf("spool upload: %w", err)
	}
	b, _ := json.Marshal(up)
	if err := writeFileAtomic(filepath.Join(dir, uploadRecord), b); err != nil {
		os.RemoveAll(dir)
		return uploadInfo{}, fmt.Errorf("spool upload: %w", err)
	}
	return up, nil
}

func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// get returns an upload's record; NoSuchUpload if there is none.
func (sp *spool) get(id string) (uploadInfo, error) {
	if !validUploadID(id) {
		return uploadInfo{}, noSuchUpload(id)
	}
	b, err := os.ReadFile(filepath.Join(sp.dir, id, uploadRecord))
	if errors.Is(err, fs.ErrNotExist) {
		return uploadInfo{}, noSuchUpload(id)
	}
	if err != nil {
		return uploadInfo{}, fmt.Errorf("spool: %w", err)
	}
	var up uploadInfo
	if err := json.Unmarshal(b, &up); err != nil {
		return uploadInfo{}, fmt.Errorf("spool: upload %s: %w", id, err)
	}
	up.ID = id
	return up, nil
}

func noSuchUpload(id string) *apiError {
	return s3err("NoSuchUpload", "the specified multipart upload does not exist (upload ID %q); it may have been aborted or completed", id)
}

// writePart stores part n of an upload from r and returns its MD5 (hex)
// and size. The part replaces an earlier upload of the same number.
func (sp *spool) writePart(id string, n int, r io.Reader) (string, int64, error) {
	dir := filepath.Join(sp.dir, id)
	f, err := os.CreateTemp(dir, ".tmp-part-")
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, noSuchUpload(id)
	}
	if err != nil {
		return "", 0, fmt.Errorf("spool part: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	h := md5.New()
	buf := chunkPool.Get().(*[]byte)
	size, err := io.CopyBuffer(io.MultiWriter(f, h), r, *buf)
	chunkPool.Put(buf)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool part: %w", cerr)
	}
	if err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	name := fmt.Sprintf("%05d-%s", n, sum)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", 0, noSuchUpload(id)
		}
		return "", 0, fmt.Errorf("spool part: %w", err)
	}
	// Earlier uploads of this part number are replaced.
	olds, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%05d-*", n)))
	for _, old := range olds {
		if filepath.Base(old) != name {
			os.Remove(old)
		}
	}
	return sum, size, nil
}

// parts lists an upload's parts by number.
func (sp *spool) parts(id string) ([]partInfo, error) {
	dir := filepath.Join(sp.dir, id)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noSuchUpload(id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []partInfo
	for _, de := range entries {
		num, sum, ok := strings.Cut(de.Name(), "-")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 5 || len(sum) != 32 {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // replaced meanwhile
		}
		out = append(out, partInfo{number: n, md5: sum, size: fi.Size(), modTime: fi.ModTime(), path: filepath.Join(dir, de.Name())})
	}
	// One part per number: a racing re-upload may briefly leave two.
	slices.SortFunc(out, func(a, b partInfo) int {
		if a.number != b.number {
			return a.number - b.number
		}
		return b.modTime.Compare(a.modTime)
	})
	return slices.CompactFunc(out, func(a, b partInfo) bool { return a.number == b.number }), nil
}

// findPart returns the stored part n whose MD5 is sum.
func (sp *spool) findPart(id string, n int, sum string) (partInfo, bool) {
	p := filepath.Join(sp.dir, id, fmt.Sprintf("%05d-%s", n, sum))
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return partInfo{}, false
	}
	return partInfo{number: n, md5: sum, size: fi.Size(), modTime: fi.ModTime(), path: p}, true
}

// lock marks an upload as being completed or aborted; ok is false if it
// already is.
func (sp *spool) lock(id string) (unlock func(), ok bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.completing[id] {
		return nil, false
	}
	sp.completing[id] = true
	return func() {
		sp.mu.Lock()
		delete(sp.completing, id)
		sp.mu.Unlock()
	}, true
}

func (sp *spool) remove(id string) error {
	if !validUploadID(id) {
		return noSuchUpload(id)
	}
	return os.RemoveAll(filepath.Join(sp.dir, id))
}

// list returns every upload's record.
func (sp *spool) list() ([]uploadInfo, error) {
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []uploadInfo
	for _, de := range entries {
		if !de.IsDir() || !validUploadID(de.Name()) {
			continue
		}
		if up, err := sp.get(de.Name()); err == nil {
			out = append(out, up)
		}
	}
	return out, nil
}

// expire removes uploads begun more than ttl ago, and upload directories
// without a record (a crash between mkdir and the record).
func (sp *spool) expire(ttl time.Duration) {
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		sp.log.Warn("spool: cannot list uploads to expire", "dir", sp.dir, "err", err)
		return
	}
	for _, de := range entries {
		if !de.IsDir() || !validUploadID(de.Name()) {
			continue
		}
		up, err := sp.get(de.Name())
		old := err == nil && time.Since(up.Initiated) > ttl
		var ae *apiError
		orphan := errors.As(err, &ae) && dirOlderThan(filepath.Join(sp.dir, de.Name()), time.Hour)
		if !old && !orphan {
			continue
		}
		if unlock, ok := sp.lock(de.Name()); ok {
			os.RemoveAll(filepath.Join(sp.dir, de.Name()))
			unlock()
			sp.log.Info("expired multipart upload removed", "upload", de.Name(), "bucket", up.Bucket, "key", up.Key)
		}
	}
}

func dirOlderThan(p string, d time.Duration) bool {
	st, err := os.Stat(p)
	return err == nil && time.Since(st.ModTime()) > d
}

// partsReader reads stored parts one after another, opening each only
// when it is reached, so a completion of 10,000 parts holds one file
// open.
type partsReader struct {
	ctx   context.Context
	parts []partInfo
	cur   *os.File
}

func (r *partsReader) Read(p []byte) (int, error) {
	for {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		if r.cur == nil {
			if len(r.parts) == 0 {
				return 0, io.EOF
			}
			f, err := os.Open(r.parts[0].path)
			if err != nil {
				return 0, fmt.Errorf("spool part %d: %w", r.parts[0].number, err)
			}
			r.cur, r.parts = f, r.parts[1:]
		}
		n, err := r.cur.Read(p)
		if errors.Is(err, io.EOF) {
			r.cur.Close()
			r.cur = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (r *partsReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}
