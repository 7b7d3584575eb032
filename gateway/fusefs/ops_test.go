package fusefs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir %s: %v", dir, err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func TestMountNamespaceAndFileOps(t *testing.T) {
	tm := mountLakes(t, mountOptions{})

	if got := names(t, tm.dir); !slices.Equal(got, []string{"lake"}) {
		t.Fatalf("root lists %v, want [lake]", got)
	}
	if got := names(t, filepath.Join(tm.dir, "lake")); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("/lake lists %v, want [a]", got)
	}

	// A file written through the mount lands in the lake and reads back.
	data := randomBytes(3<<20+17, 1)
	if err := os.WriteFile(tm.path("hello.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(tm.lake, "hello.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("lake has %d bytes (err %v), want the %d written", len(got), err, len(data))
	}
	if got, err := os.ReadFile(tm.path("hello.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (err %v), want %d", len(got), err, len(data))
	}
	if st, err := os.Stat(tm.path("hello.bin")); err != nil || st.Size() != int64(len(data)) || st.IsDir() {
		t.Fatalf("stat: %v %v", st, err)
	}

	// A file put in the lake by someone else shows up.
	if err := os.WriteFile(filepath.Join(tm.lake, "outside.txt"), []byte("from the lake"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(tm.path("outside.txt")); err != nil || string(got) != "from the lake" {
		t.Fatalf("read outside.txt: %q %v", got, err)
	}

	// mkdir, a file in it, rename, unlink, rmdir.
	if err := os.Mkdir(tm.path("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(tm.lake, "sub")); err != nil || !st.IsDir() {
		t.Fatalf("lake has no directory sub: %v", err)
	}
	if err := os.WriteFile(tm.path("sub/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rmdir of a non-empty directory", os.Remove(tm.path("sub")), syscall.ENOTEMPTY)
	if err := os.Rename(tm.path("sub/x"), tm.path("sub/y")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tm.lake, "sub", "x")); !os.IsNotExist(err) {
		t.Errorf("lake still has sub/x after rename: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(tm.lake, "sub", "y")); err != nil || string(got) != "x" {
		t.Errorf("lake's sub/y after rename: %q %v", got, err)
	}
	if got, err := os.ReadFile(tm.path("sub/y")); err != nil || string(got) != "x" {
		t.Errorf("read sub/y after rename: %q %v", got, err)
	}
	if err := os.Remove(tm.path("sub/y")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tm.lake, "sub", "y")); !os.IsNotExist(err) {
		t.Errorf("lake still has sub/y after unlink: %v", err)
	}
	if err := os.Remove(tm.path("sub")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tm.lake, "sub")); !os.IsNotExist(err) {
		t.Errorf("lake still has sub after rmdir: %v", err)
	}

	// Rename replaces its target; a rename over a file with O_TRUNC.
	os.WriteFile(tm.path("t1"), []byte("one"), 0o644)
	os.WriteFile(tm.path("t2"), []byte("two"), 0o644)
	if err := os.Rename(tm.path("t1"), tm.path("t2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(tm.path("t2")); string(got) != "one" {
		t.Errorf("t2 after rename over it: %q", got)
	}
	if err := os.WriteFile(tm.path("t2"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "t2")); string(got) != "2" {
		t.Errorf("lake's t2 after rewrite with O_TRUNC: %q", got)
	}

	// Errors.
	_, err := os.Stat(tm.path("missing"))
	wantErrno(t, "stat of a missing file", err, syscall.ENOENT)
	_, err = os.ReadDir(tm.path("hello.bin"))
	wantErrno(t, "readdir of a file", err, syscall.ENOTDIR)
	wantErrno(t, "create above the mounts", os.WriteFile(filepath.Join(tm.dir, "lake", "new"), nil, 0o644), syscall.EROFS)
	wantErrno(t, "mkdir above the mounts", os.Mkdir(filepath.Join(tm.dir, "lake", "b"), 0o755), syscall.EROFS)
	wantErrno(t, "rmdir of a mount point", os.Remove(filepath.Join(tm.dir, "lake", "a")), syscall.EROFS)
	wantErrno(t, "rename out of the mount", os.Rename(tm.path("t2"), filepath.Join(tm.dir, "lake", "t2")), syscall.EROFS)
	wantErrno(t, "mkdir of an existing name", os.Mkdir(tm.path("t2"), 0o755), syscall.EEXIST)

	var st syscall.Statfs_t
	before := tm.ns.stats.Load() + tm.ns.lists.Load()
	if err := syscall.Statfs(tm.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Namelen != maxNameLen || st.Blocks == 0 {
		t.Errorf("statfs: namelen %d blocks %d", st.Namelen, st.Blocks)
	}
	if after := tm.ns.stats.Load() + tm.ns.lists.Load(); after != before {
		t.Errorf("statfs made %d namespace calls, want none", after-before)
	}
}

func TestMountNames(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	for _, name := range []string{"héllo wörld ☃.txt", "with space", " leading", "日本語のファイル名", strings.Repeat("n", 255)} {
		if err := os.WriteFile(tm.path(name), []byte(name), 0o644); err != nil {
			t.Errorf("write %q: %v", name, err)
			continue
		}
		if got, err := os.ReadFile(tm.path(name)); err != nil || string(got) != name {
			t.Errorf("read %q: %q %v", name, got, err)
		}
		if _, err := os.Stat(filepath.Join(tm.lake, name)); err != nil {
			t.Errorf("lake has no %q: %v", name, err)
		}
	}
	got := names(t, tm.path(""))
	for _, name := range []string{"héllo wörld ☃.txt", "with space", "日本語のファイル名"} {
		if !slices.Contains(got, name) {
			t.Errorf("listing %v lacks %q", got, name)
		}
	}

	long := strings.Repeat("n", 256)
	wantErrno(t, "create with a 256-byte name", os.WriteFile(tm.path(long), nil, 0o644), syscall.ENAMETOOLONG)
	_, err := os.Stat(tm.path(long))
	wantErrno(t, "stat of a 256-byte name", err, syscall.ENAMETOOLONG)
	wantErrno(t, "mkdir with a 256-byte name", os.Mkdir(tm.path(long), 0o755), syscall.ENAMETOOLONG)

	// ".." is resolved by the kernel inside the mount and never reaches
	// the namespace; at the mount's root it leaves the mount, not the
	// namespace.
	if st, err := os.Stat(tm.path("../a/with space")); err != nil || st.IsDir() {
		t.Errorf("stat through ..: %v", err)
	}
	for _, name := range []string{"..", ".", "", "a/b", "nul\x00"} {
		if errno := checkName(name); errno != syscall.EINVAL {
			t.Errorf("checkName(%q) = %v, want EINVAL", name, errno)
		}
	}
	if errno := checkName(long); errno != syscall.ENAMETOOLONG {
		t.Errorf("checkName(256 bytes) = %v", errno)
	}
	// The namespace refuses ".." in a path even if a name got through.
	if _, err := tm.ns.Stat(t.Context(), "/lake/a/../../etc"); Errno(err) != syscall.EINVAL {
		t.Errorf("namespace stat with ..: %v", err)
	}
}

func TestMountWriteSemantics(t *testing.T) {
	tm := mountLakes(t, mountOptions{})

	// A new file is listed at once, before it reaches the lake; its
	// spool lives while it is open and is gone after close.
	f, err := os.Create(tm.path("new.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names(t, tm.path("")), "new.bin") {
		t.Errorf("a file being created is not listed")
	}
	if _, err := os.Stat(tm.path("new.bin")); err != nil {
		t.Errorf("stat of a file being created: %v", err)
	}
	data := randomBytes(1<<20+5, 2)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	spools, _ := os.ReadDir(tm.fsys.SpoolDir())
	if len(spools) != 1 {
		t.Errorf("spool dir holds %d files while a file is open for write, want 1", len(spools))
	}
	// Reads of a handle with a dirty spool read the spool (os.Create
	// opens O_RDWR).
	rb := make([]byte, 100)
	if _, err := f.ReadAt(rb, 1000); err != nil || !bytes.Equal(rb, data[1000:1100]) {
		t.Errorf("read of the spool: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if spools, _ := os.ReadDir(tm.fsys.SpoolDir()); len(spools) != 0 {
			return fmt.Errorf("spool dir holds %d files after close", len(spools))
		}
		return nil
	})
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "new.bin")); !bytes.Equal(got, data) {
		t.Fatalf("lake has %d bytes after close, want %d", len(got), len(data))
	}

	// O_RDWR: reads before a write come from the lake, after it from the
	// spool; the lake changes only at fsync.
	rw, err := os.OpenFile(tm.path("new.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.ReadAt(rb, 1000); err != nil || !bytes.Equal(rb, data[1000:1100]) {
		t.Fatalf("read before write: %v", err)
	}
	if _, err := rw.WriteAt([]byte("PATCH"), 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.ReadAt(rb[:5], 1000); err != nil || string(rb[:5]) != "PATCH" {
		t.Fatalf("read after write: %q %v", rb[:5], err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "new.bin")); !bytes.Equal(got, data) {
		t.Errorf("the lake changed before fsync")
	}
	puts := tm.ns.puts.Load()
	if err := rw.Sync(); err != nil {
		t.Fatal(err)
	}
	if tm.ns.puts.Load() != puts+1 {
		t.Errorf("fsync made %d Puts, want 1", tm.ns.puts.Load()-puts)
	}
	want := slices.Clone(data)
	copy(want[1000:], "PATCH")
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "new.bin")); !bytes.Equal(got, want) {
		t.Errorf("the lake after fsync is not the patched file")
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if tm.ns.puts.Load() != puts+1 {
		t.Errorf("close after fsync uploaded again")
	}
	if got, _ := os.ReadFile(tm.path("new.bin")); !bytes.Equal(got, want) {
		t.Errorf("read back after fsync+close differs")
	}

	// Append copies the file in and adds to it; truncate cuts it.
	a, err := os.OpenFile(tm.path("new.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("TAIL"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, "TAIL"...)
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "new.bin")); !bytes.Equal(got, want) {
		t.Errorf("lake after append: %d bytes, want %d", len(got), len(want))
	}
	if err := os.Truncate(tm.path("new.bin"), 10); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "new.bin")); !bytes.Equal(got, want[:10]) {
		t.Errorf("lake after truncate: %q", got)
	}
	if st, _ := os.Stat(tm.path("new.bin")); st.Size() != 10 {
		t.Errorf("size after truncate %d", st.Size())
	}

	// fsync of a directory (after a rename, as checkpoint writers do) and
	// of a file open for reading succeed.
	for _, p := range []string{tm.path(""), tm.path("new.bin")} {
		d, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Errorf("fsync of %s: %v", p, err)
		}
		d.Close()
	}

	// An empty new file exists in the lake after close.
	if err := os.WriteFile(tm.path("empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(tm.lake, "empty")); err != nil || st.Size() != 0 {
		t.Errorf("lake's empty file: %v", err)
	}

	// A file unlinked while open for write does not come back at close.
	g, err := os.Create(tm.path("doomed"))
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("nothing"))
	if err := os.Remove(tm.path("doomed")); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tm.lake, "doomed")); !os.IsNotExist(err) {
		t.Errorf("an unlinked file came back at close: %v", err)
	}
}

func TestMountReadOnly(t *testing.T) {
	tm := mountLakes(t, mountOptions{readOnly: true})
	os.WriteFile(filepath.Join(tm.lake, "f"), []byte("ro"), 0o644)
	if got, err := os.ReadFile(tm.path("f")); err != nil || string(got) != "ro" {
		t.Fatalf("read: %q %v", got, err)
	}
	wantErrno(t, "write on a read-only mount", os.WriteFile(tm.path("g"), nil, 0o644), syscall.EROFS)
	wantErrno(t, "mkdir on a read-only mount", os.Mkdir(tm.path("d"), 0o755), syscall.EROFS)
	wantErrno(t, "unlink on a read-only mount", os.Remove(tm.path("f")), syscall.EROFS)
}

// A large file written in order is uploaded while it is written; a write
// out of order aborts that upload (the lake keeps its old content) and the
// file is uploaded whole at close.
func TestMountStreamingUpload(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	data := randomBytes(24<<20, 9)
	f, err := os.Create(tm.path("ckpt.bin"))
	if err != nil {
		t.Fatal(err)
	}
	puts := tm.ns.puts.Load()
	for off := 0; off < 12<<20; off += 1 << 20 {
		if _, err := f.Write(data[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() error {
		if tm.ns.puts.Load() == puts {
			return fmt.Errorf("no upload started after 12 MiB of appends")
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(tm.lake, "ckpt.bin")); !os.IsNotExist(err) {
		t.Errorf("the lake has the file before close: %v", err)
	}
	for off := 12 << 20; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tm.ns.puts.Load() - puts; got != 1 {
		t.Errorf("a file written in order took %d Puts, want 1", got)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "ckpt.bin")); !bytes.Equal(got, data) {
		t.Fatalf("the lake has %d bytes, not the %d written", len(got), len(data))
	}

	// Out of order: rewrite the start after the upload began.
	g, err := os.OpenFile(tm.path("ckpt.bin"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	neu := randomBytes(12<<20, 10)
	for off := 0; off < len(neu); off += 1 << 20 {
		g.Write(neu[off : off+1<<20])
	}
	if _, err := g.WriteAt([]byte("HEAD"), 0); err != nil {
		t.Fatal(err)
	}
	copy(neu, "HEAD")
	if got, err := os.ReadFile(filepath.Join(tm.lake, "ckpt.bin")); !bytes.Equal(got, data) {
		t.Errorf("an aborted upload changed the lake's file: %d bytes (%v), prefix of the new content %v", len(got), err, bytes.HasPrefix(neu, got[:min(len(got), 100)]))
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "ckpt.bin")); !bytes.Equal(got, neu) {
		t.Fatalf("after an out-of-order write the lake has %d bytes, not the file written", len(got))
	}
	if got, _ := os.ReadFile(tm.path("ckpt.bin")); !bytes.Equal(got, neu) {
		t.Fatalf("read back after an out-of-order write differs")
	}
}

// Open handles follow their file through a rename, as on a local file
// system: a reader reads on, and a writer's first write copies the file
// in from its new path.
func TestMountOpenHandlesFollowRename(t *testing.T) {
	tm := mountLakes(t, mountOptions{})
	data := randomBytes(2<<20+7, 9)
	for _, name := range []string{"r.bin", "w.bin"} {
		if err := os.WriteFile(tm.path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := os.Open(tm.path("r.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(tm.path("w.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, mv := range [][2]string{{"r.bin", "r2.bin"}, {"w.bin", "w2.bin"}} {
		if err := os.Rename(tm.path(mv[0]), tm.path(mv[1])); err != nil {
			t.Fatal(err)
		}
		// A new file under the old name must not be what the handle reads.
		if err := os.WriteFile(tm.path(mv[0]), []byte("another file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of a renamed open file: %v (equal %v)", err, bytes.Equal(got, data))
	}
	if _, err := w.WriteAt([]byte("PATCH"), 1<<20); err != nil {
		t.Fatalf("write to a renamed open file: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(data)
	copy(want[1<<20:], "PATCH")
	if got, err := os.ReadFile(filepath.Join(tm.lake, "w2.bin")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the lake's renamed file after the write: %d bytes (%v), want the patched %d", len(got), err, len(want))
	}
	if got, _ := os.ReadFile(filepath.Join(tm.lake, "w.bin")); string(got) != "another file" {
		t.Errorf("the file under the old name is %q", got)
	}
}
