package ufstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

// testCreateAtomic replaces a file while its new content is still being
// written: until Create returns, readers must see all of the old content.
func testCreateAtomic(t *testing.T, fs ufs.FS) {
	oldData := bytes.Repeat([]byte("old."), 64<<10)
	newData := bytes.Repeat([]byte("NEW!"), 80<<10)
	old := create(t, fs, "a/file", oldData)

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := fs.Create(t.Context(), "a/file", pr)
		done <- err
	}()
	if _, err := pw.Write(newData[:len(newData)/2]); err != nil {
		t.Fatalf("write first half: %v", err)
	}
	// Half of the new content is with the adapter; the old must still be
	// there, whole.
	if st := stat(t, fs, "a/file"); st.Version != old.Version || st.Size != int64(len(oldData)) {
		t.Fatalf("during create: stat = %+v, want the old file %+v", st, old)
	}
	if got := read(t, fs, "a/file", "", 0, 1<<30); !bytes.Equal(got, oldData) {
		t.Fatalf("during create: read %s, want the old content", describe(got))
	}
	if _, err := pw.Write(newData[len(newData)/2:]); err != nil {
		t.Fatalf("write second half: %v", err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := read(t, fs, "a/file", "", 0, 1<<30); !bytes.Equal(got, newData) {
		t.Fatalf("after create: read %s, want the new content", describe(got))
	}
}

var errWriterBroke = errors.New("writer broke")

// failingReader yields some bytes, then an error, as a dropped upload
// connection would.
type failingReader struct {
	data []byte
	err  error
	// before, if set, runs when the data is used up.
	before func()
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		if f.before != nil {
			f.before()
		}
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testCreateFailureKeepsOld(t *testing.T, fs ufs.FS) {
	oldData := []byte("the old content")
	create(t, fs, "k/file", oldData)

	_, err := fs.Create(t.Context(), "k/file", &failingReader{data: content(100<<10, 4), err: errWriterBroke})
	wantErr(t, "create from a failing reader", err, errWriterBroke)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = fs.Create(ctx, "k/file", &failingReader{data: content(100<<10, 5), err: io.EOF, before: cancel})
	if err == nil {
		t.Fatalf("create whose context was cancelled before the end succeeded")
	}

	if got := read(t, fs, "k/file", "", 0, 1<<20); !bytes.Equal(got, oldData) {
		t.Fatalf("after failed creates: read %s, want the old content", describe(got))
	}
	_, err = fs.Create(t.Context(), "k/new", &failingReader{data: []byte("partial"), err: errWriterBroke})
	wantErr(t, "create new file from a failing reader", err, errWriterBroke)
	wantMissing(t, fs, "k/new")
	// No temporary file shows.
	entries := listAll(t, fs, "k", 0)
	if len(entries) != 1 || entries[0].Path != "k/file" {
		t.Fatalf("list k after failed creates = %+v, want only k/file", entries)
	}
}

func testCreateNested(t *testing.T, fs ufs.FS) {
	create(t, fs, "a/b/c/d.txt", []byte("deep"))
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		wantDir(t, fs, d)
	}
	entries := listAll(t, fs, "a/b", 0)
	if len(entries) != 1 || entries[0].Path != "a/b/c" || !entries[0].IsDir || entries[0].Name() != "c" {
		t.Fatalf("list a/b = %+v, want the directory a/b/c", entries)
	}
	if got := read(t, fs, "a/b/c/d.txt", "", 0, 10); string(got) != "deep" {
		t.Fatalf("read = %q", got)
	}
}

func testMkdir(t *testing.T, fs ufs.FS) {
	if err := fs.Mkdir(t.Context(), "m/n"); err != nil {
		t.Fatalf("mkdir m/n: %v", err)
	}
	wantDir(t, fs, "m")
	wantDir(t, fs, "m/n")
	if err := fs.Mkdir(t.Context(), "m/n"); err != nil {
		t.Fatalf("mkdir of an existing directory: %v", err)
	}
	if err := fs.Mkdir(t.Context(), ""); err != nil {
		t.Fatalf("mkdir of the root: %v", err)
	}
	page, err := fs.List(t.Context(), "m/n", "", 10)
	if err != nil || len(page.Entries) != 0 || page.Next != "" {
		t.Fatalf("list of an empty directory = %+v, %v", page, err)
	}
	entries := listAll(t, fs, "m", 0)
	if len(entries) != 1 || entries[0].Path != "m/n" || !entries[0].IsDir {
		t.Fatalf("list m = %+v, want the directory m/n", entries)
	}
	create(t, fs, "m/file", []byte("x"))
	wantErr(t, "mkdir over a file", fs.Mkdir(t.Context(), "m/file"), ufs.ErrNotDir)
}

func testDelete(t *testing.T, fs ufs.FS) {
	create(t, fs, "del/f", []byte("x"))
	create(t, fs, "del/g", []byte("y"))
	if err := fs.Delete(t.Context(), "del/f"); err != nil {
		t.Fatalf("delete del/f: %v", err)
	}
	wantMissing(t, fs, "del/f")
	wantErr(t, "delete it again", fs.Delete(t.Context(), "del/f"), ufs.ErrNotFound)
	wantErr(t, "delete missing", fs.Delete(t.Context(), "never/was"), ufs.ErrNotFound)
	wantErr(t, "delete non-empty directory", fs.Delete(t.Context(), "del"), ufs.ErrNotEmpty)
	if got := read(t, fs, "del/g", "", 0, 10); string(got) != "y" {
		t.Fatalf("after refused delete, del/g = %q", got)
	}
	if err := fs.Mkdir(t.Context(), "empty"); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := fs.Delete(t.Context(), "empty"); err != nil {
		t.Fatalf("delete empty directory: %v", err)
	}
	wantMissing(t, fs, "empty")
}

func testRename(t *testing.T, fs ufs.FS) {
	a := create(t, fs, "ren/a", []byte("content of a"))
	b := create(t, fs, "ren/b", []byte("content of b, longer"))
	if err := fs.Rename(t.Context(), "ren/a", "ren/b"); err != nil {
		t.Fatalf("rename a over b: %v", err)
	}
	wantMissing(t, fs, "ren/a")
	st := stat(t, fs, "ren/b")
	if st.Version == b.Version || st.Size != a.Size {
		t.Fatalf("after rename, b = %+v; a was %+v, old b %+v", st, a, b)
	}
	if got := read(t, fs, "ren/b", st.Version, 0, 100); string(got) != "content of a" {
		t.Fatalf("after rename, b holds %q", got)
	}
	if err := fs.Rename(t.Context(), "ren/b", "elsewhere/deep/c"); err != nil {
		t.Fatalf("rename into new directories: %v", err)
	}
	if got := read(t, fs, "elsewhere/deep/c", "", 0, 100); string(got) != "content of a" {
		t.Fatalf("after rename, c holds %q", got)
	}
	wantErr(t, "rename missing", fs.Rename(t.Context(), "ren/missing", "ren/x"), ufs.ErrNotFound)
	create(t, fs, "ren/d/inside", []byte("i"))
	wantErr(t, "rename onto a directory", fs.Rename(t.Context(), "elsewhere/deep/c", "ren/d"), ufs.ErrIsDir)
	if got := read(t, fs, "elsewhere/deep/c", "", 0, 100); string(got) != "content of a" {
		t.Fatalf("after a refused rename, c holds %q", got)
	}
}

func testUnicode(t *testing.T, fs ufs.FS) {
	const dir, name = "dir with space", "naïve-日本.txt"
	p := dir + "/" + name
	data := []byte("unicode names work")
	fi := create(t, fs, p, data)
	if st := stat(t, fs, p); st.Version != fi.Version || st.Name() != name {
		t.Fatalf("stat %s = %+v", p, st)
	}
	wantDir(t, fs, dir)
	entries := listAll(t, fs, dir, 0)
	if len(entries) != 1 || entries[0].Path != p || entries[0].Name() != name {
		t.Fatalf("list %q = %+v", dir, entries)
	}
	root := listAll(t, fs, "", 0)
	if len(root) != 1 || root[0].Path != dir || !root[0].IsDir {
		t.Fatalf("list root = %+v", root)
	}
	if got := read(t, fs, p, fi.Version, 4, 5); string(got) != "ode n" {
		t.Fatalf("read = %q", got)
	}
	to := "другой каталог/файл #2 (copy)+%.txt"
	if err := fs.Rename(t.Context(), p, to); err != nil {
		t.Fatalf("rename %s to %s: %v", p, to, err)
	}
	if got := read(t, fs, to, "", 0, 100); !bytes.Equal(got, data) {
		t.Fatalf("read %s = %q", to, got)
	}
	// And back from a name with "+", "%" and "#", which URL encodings
	// disagree on.
	back := "plain/name"
	if err := fs.Rename(t.Context(), to, back); err != nil {
		t.Fatalf("rename %s to %s: %v", to, back, err)
	}
	wantMissing(t, fs, to)
	if got := read(t, fs, back, "", 0, 100); !bytes.Equal(got, data) {
		t.Fatalf("read %s = %q", back, got)
	}
	if err := fs.Delete(t.Context(), back); err != nil {
		t.Fatalf("delete %s: %v", back, err)
	}
	wantMissing(t, fs, back)
}

func testRoot(t *testing.T, fs ufs.FS) {
	wantDir(t, fs, "")
	if page, err := fs.List(t.Context(), "", "", 10); err != nil || len(page.Entries) != 0 || page.Next != "" {
		t.Fatalf("list of an empty root = %+v, %v", page, err)
	}
	if err := fs.Delete(t.Context(), ""); err == nil {
		t.Errorf("delete of the root succeeded")
	}
	if _, err := fs.Create(t.Context(), "", bytes.NewReader(nil)); err == nil {
		t.Errorf("create of the root succeeded")
	}
	create(t, fs, "x", []byte("x"))
	if err := fs.Rename(t.Context(), "", "y"); err == nil {
		t.Errorf("rename of the root succeeded")
	}
	if err := fs.Rename(t.Context(), "x", ""); err == nil {
		t.Errorf("rename onto the root succeeded")
	}
	wantDir(t, fs, "")
}
