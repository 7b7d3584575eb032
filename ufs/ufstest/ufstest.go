package ufstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

// Run runs the conformance suite. newFS must return an FS on a fresh, empty
// root each time it is called; it is called once per subtest and may use
// t.Cleanup to remove what it made. The Attrs tests run on lakes that
// implement ufs.AttrFS and are skipped, naming the lake, on the others.
func Run(t *testing.T, newFS func(t *testing.T) ufs.FS) {
	tests := []struct {
		name string
		run  func(t *testing.T, fs ufs.FS)
	}{
		{"Stat", testStat},
		{"VersionStable", testVersionStable},
		{"ReadRange", testReadRange},
		{"ReadRangeEmptyFile", testReadRangeEmptyFile},
		{"ReadRangeErrors", testReadRangeErrors},
		{"LargeFile", testLargeFile},
		{"StaleVersion", testStaleVersion},
		{"CreateAtomic", testCreateAtomic},
		{"CreateFailureKeepsOld", testCreateFailureKeepsOld},
		{"CreateNested", testCreateNested},
		{"Mkdir", testMkdir},
		{"ListPaging", testListPaging},
		{"ListErrors", testListErrors},
		{"Unicode", testUnicode},
		{"Delete", testDelete},
		{"Rename", testRename},
		{"Root", testRoot},
		{"Cancelled", testCancelled},
		{"CancelMidRead", testCancelMidRead},
		{"InvalidPaths", testInvalidPaths},
		{"AttrsRoundTrip", testAttrsRoundTrip},
		{"AttrsAtomic", testAttrsAtomic},
		{"AttrsConsistent", testAttrsConsistent},
		{"AttrsCreateClears", testAttrsCreateClears},
		{"AttrsRename", testAttrsRename},
		{"AttrsInvalid", testAttrsInvalid},
		{"AttrsCreateFailureKeepsOld", testAttrsCreateFailureKeepsOld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFS(t)
			t.Cleanup(func() {
				if err := fs.Close(); err != nil {
					t.Errorf("close %s: %v", fs, err)
				}
			})
			tc.run(t, fs)
		})
	}
}

// create writes data to p and checks what Create reports.
func create(t *testing.T, fs ufs.FS, p string, data []byte) ufs.FileInfo {
	t.Helper()
	fi, err := fs.Create(t.Context(), p, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("create %s: %v", p, err)
	}
	if fi.Path != p || fi.IsDir || fi.Size != int64(len(data)) || fi.Version == "" {
		t.Fatalf("create %s returned %+v, want a file of %d bytes with a version", p, fi, len(data))
	}
	return fi
}

// read returns the bytes ReadRange yields.
func read(t *testing.T, fs ufs.FS, p, version string, off, n int64) []byte {
	t.Helper()
	got, err := readErr(t.Context(), fs, p, version, off, n)
	if err != nil {
		t.Fatalf("read %s [%d,+%d) version %q: %v", p, off, n, version, err)
	}
	return got
}

func readErr(ctx context.Context, fs ufs.FS, p, version string, off, n int64) ([]byte, error) {
	rc, err := fs.ReadRange(ctx, p, version, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func stat(t *testing.T, fs ufs.FS, p string) ufs.FileInfo {
	t.Helper()
	fi, err := fs.Stat(t.Context(), p)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	if fi.Path != p {
		t.Fatalf("stat %s: Path = %q", p, fi.Path)
	}
	return fi
}

func wantDir(t *testing.T, fs ufs.FS, p string) {
	t.Helper()
	if fi := stat(t, fs, p); !fi.IsDir || fi.Version != "" {
		t.Fatalf("stat %s = %+v, want a directory without version", p, fi)
	}
}

// wantErr fails unless err wraps one of the targets.
func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Fatalf("%s: got error %v, want one wrapping %v", what, err, targets)
}

func wantMissing(t *testing.T, fs ufs.FS, p string) {
	t.Helper()
	_, err := fs.Stat(t.Context(), p)
	wantErr(t, "stat "+p, err, ufs.ErrNotFound)
}

// listAll follows a listing to its end with the given page size.
func listAll(t *testing.T, fs ufs.FS, dir string, limit int) []ufs.FileInfo {
	t.Helper()
	var all []ufs.FileInfo
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("list %s: listing does not end", dir)
		}
		page, err := fs.List(t.Context(), dir, token, limit)
		if err != nil {
			t.Fatalf("list %s token %q: %v", dir, token, err)
		}
		if limit > 0 && len(page.Entries) > limit {
			t.Fatalf("list %s: page of %d entries, limit %d", dir, len(page.Entries), limit)
		}
		all = append(all, page.Entries...)
		if page.Next == "" {
			return all
		}
		if page.Next == token {
			t.Fatalf("list %s: token %q does not advance", dir, token)
		}
		token = page.Next
	}
}

// content is reproducible pseudo-random bytes.
func content(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// streamOnly hides every interface but io.Reader, so adapters see a stream
// of unknown size, as they would from a network client.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

func describe(data []byte) string {
	if len(data) <= 32 {
		return fmt.Sprintf("%q", data)
	}
	return fmt.Sprintf("%d bytes starting %q", len(data), data[:16])
}
