package ufstest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

// testListPaging lists 250 children seven at a time. The names include
// "a-b", "a.txt", "a0" next to the directory "a", whose S3 common prefix
// "a/" sorts among them by key, not by name.
func testListPaging(t *testing.T, fs ufs.FS) {
	want := map[string]bool{} // name -> is a directory
	var files []string
	for i := range 236 {
		files = append(files, fmt.Sprintf("f-%03d", i))
	}
	files = append(files, "a-b", "a.txt", "a0")
	for _, f := range files {
		want[f] = false
	}
	for i := range 10 {
		want[fmt.Sprintf("d-%02d", i)] = true
	}
	want["a"] = true
	var paths []string
	for _, f := range files {
		paths = append(paths, "L/"+f)
	}
	for name, dir := range want {
		if dir {
			paths = append(paths, "L/"+name+"/child")
		}
	}
	parallelCreate(t, fs, paths)

	first := listAll(t, fs, "L", 7)
	seen := map[string]bool{}
	for _, e := range first {
		name := e.Name()
		if e.Path != "L/"+name {
			t.Errorf("entry path %q is not a child of L", e.Path)
		}
		if seen[name] {
			t.Errorf("entry %q listed twice", name)
		}
		seen[name] = true
		isDir, ok := want[name]
		switch {
		case !ok:
			t.Errorf("unexpected entry %+v", e)
		case e.IsDir != isDir:
			t.Errorf("entry %q IsDir = %v, want %v", name, e.IsDir, isDir)
		case !e.IsDir && (e.Size != int64(len(name)) || e.Version == ""):
			t.Errorf("entry %+v: want size %d and a version", e, len(name))
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("entry %q never listed", name)
		}
	}
	if len(want) != 250 {
		t.Fatalf("test bug: %d entries", len(want))
	}

	// The order is stable: the same listing with other page sizes agrees.
	for _, limit := range []int{1, 250, 0} {
		again := listAll(t, fs, "L", limit)
		if !slices.EqualFunc(first, again, func(a, b ufs.FileInfo) bool { return a.Path == b.Path }) {
			t.Fatalf("listing with limit %d differs in order or content from the listing with limit 7", limit)
		}
	}
	page, err := fs.List(t.Context(), "L", "", 0)
	if err != nil || len(page.Entries) != 250 || page.Next != "" {
		t.Fatalf("list with the default limit: %d entries, next %q, err %v; want all 250 in one page", len(page.Entries), page.Next, err)
	}
}

// parallelCreate creates files named by paths, each holding its own base
// name, eight at a time.
func parallelCreate(t *testing.T, fs ufs.FS, paths []string) {
	t.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	for range 8 {
		wg.Go(func() {
			for p := range work {
				fi := ufs.FileInfo{Path: p}
				if _, err := fs.Create(t.Context(), p, strings.NewReader(fi.Name())); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
}

func testListErrors(t *testing.T, fs ufs.FS) {
	_, err := fs.List(t.Context(), "missing", "", 10)
	wantErr(t, "list missing", err, ufs.ErrNotFound)
	create(t, fs, "file", []byte("x"))
	_, err = fs.List(t.Context(), "file", "", 10)
	wantErr(t, "list a file", err, ufs.ErrNotDir, ufs.ErrNotFound)
	_, err = fs.List(t.Context(), "file/below", "", 10)
	wantErr(t, "list below a file", err, ufs.ErrNotFound, ufs.ErrNotDir)
}
