package ufstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

// The attrs tests run on lakes that implement ufs.AttrFS and skip on the
// others, saying which.

// attrFS returns fs as an AttrFS, or skips the test.
func attrFS(t *testing.T, fs ufs.FS) ufs.AttrFS {
	t.Helper()
	afs, ok := fs.(ufs.AttrFS)
	if !ok {
		t.Skipf("skipped: %s does not implement ufs.AttrFS", fs)
	}
	return afs
}

// fullAttrs has every standard header, and two user keys whose names came
// mixed-case (X-Amz-Meta-Project-Name, x-amz-meta-OwnerID), given
// lower-case as Attrs wants them. Values have spaces; the user values have
// non-ASCII UTF-8 too, which Validate allows in user metadata only (S3
// carries it RFC 2047-encoded).
func fullAttrs() ufs.Attrs {
	return ufs.Attrs{
		"content-type":        "text/csv; charset=utf-8",
		"content-encoding":    "gzip",
		"content-language":    "de-CH, en",
		"content-disposition": `attachment; filename="Q3 report.csv"`,
		"cache-control":       "max-age=3600, must-revalidate",
		"expires":             "Wed, 21 Oct 2037 07:28:00 GMT",
		strings.ToLower("X-Amz-Meta-Project-Name"): "Große Daten — 日本語 (ünïcode) 2024",
		strings.ToLower("x-amz-meta-OwnerID"):      "Ada Lovelace",
	}
}

// createAttrs writes data with attrs to p and checks what CreateAttrs
// reports. A file system that keeps no attrs skips the test.
func createAttrs(t *testing.T, fs ufs.FS, p string, data []byte, attrs ufs.Attrs) ufs.FileInfo {
	t.Helper()
	fi, err := attrFS(t, fs).CreateAttrs(t.Context(), p, streamOnly{bytes.NewReader(data)}, attrs)
	if errors.Is(err, ufs.ErrAttrsNotKept) {
		t.Skipf("skipped: %s keeps no attrs on this file system: %v", fs, err)
	}
	if err != nil {
		t.Fatalf("create %s with attrs: %v", p, err)
	}
	if fi.Path != p || fi.IsDir || fi.Size != int64(len(data)) || fi.Version == "" {
		t.Fatalf("create %s with attrs returned %+v, want a file of %d bytes with a version", p, fi, len(data))
	}
	return fi
}

func statAttrs(t *testing.T, fs ufs.FS, p string) (ufs.FileInfo, ufs.Attrs) {
	t.Helper()
	fi, attrs, err := attrFS(t, fs).StatAttrs(t.Context(), p)
	if err != nil {
		t.Fatalf("stat %s with attrs: %v", p, err)
	}
	if fi.Path != p {
		t.Fatalf("stat %s with attrs: Path = %q", p, fi.Path)
	}
	return fi, attrs
}

// defaultedType reports a content-type an object store sets when given
// none (MinIO: the first after a single PUT, the second after a multipart
// upload).
func defaultedType(v string) bool {
	return v == "application/octet-stream" || v == "binary/octet-stream"
}

// wantAttrs fails unless got is want, but for a content-type the store
// defaulted where want has none.
func wantAttrs(t *testing.T, what string, got, want ufs.Attrs) {
	t.Helper()
	g := got.Clone()
	if _, ok := want["content-type"]; !ok && defaultedType(g["content-type"]) {
		delete(g, "content-type")
	}
	if len(g) == 0 && len(want) == 0 {
		return
	}
	if !maps.Equal(g, want) {
		t.Fatalf("%s: attrs\n\t%q\nwant\n\t%q", what, got, want)
	}
}

func testAttrsRoundTrip(t *testing.T, fs ufs.FS) {
	data := content(1000, 11)
	want := fullAttrs()
	want["x-amz-meta-empty"] = ""
	given := want.Clone()
	fi := createAttrs(t, fs, "at/file", data, given)
	if !maps.Equal(given, want) {
		t.Fatalf("CreateAttrs changed the caller's attrs to %q", given)
	}
	st, got := statAttrs(t, fs, "at/file")
	if st.Version != fi.Version || st.Size != fi.Size || st.IsDir {
		t.Fatalf("stat with attrs = %+v, create said %+v", st, fi)
	}
	wantAttrs(t, "after create with attrs", got, want)
	if plain := stat(t, fs, "at/file"); plain.Version != fi.Version {
		t.Fatalf("stat = %+v, stat with attrs %+v", plain, st)
	}
	// The attrs are kept, not applied: content-encoding gzip changes no
	// byte of what is read.
	if got := read(t, fs, "at/file", fi.Version, 0, 1<<20); !bytes.Equal(got, data) {
		t.Fatalf("read %s, want the bytes written", describe(got))
	}
	// Directories, the root among them, have none; missing files are
	// missing.
	for _, d := range []string{"at", ""} {
		fi, attrs := statAttrs(t, fs, d)
		if !fi.IsDir || len(attrs) != 0 {
			t.Fatalf("stat %q with attrs = %+v, %q; want a directory without attrs", d, fi, attrs)
		}
	}
	_, _, err := attrFS(t, fs).StatAttrs(t.Context(), "at/missing")
	wantErr(t, "stat missing with attrs", err, ufs.ErrNotFound)
	// The largest user metadata Validate allows is kept too.
	key := "x-amz-meta-k"
	limit := ufs.Attrs{key: strings.Repeat("v", ufs.MaxUserAttrsSize-len(key))}
	createAttrs(t, fs, "at/limit", []byte("x"), limit)
	_, got = statAttrs(t, fs, "at/limit")
	wantAttrs(t, "attrs at the size limit", got, limit)
}

// testAttrsAtomic replaces a file and its attrs while the new content is
// still being written: until CreateAttrs returns, StatAttrs must report the
// old version with the old attrs, then the new version with the new attrs
// only.
func testAttrsAtomic(t *testing.T, fs ufs.FS) {
	oldData, newData := bytes.Repeat([]byte("old."), 64<<10), bytes.Repeat([]byte("NEW!"), 80<<10)
	oldAttrs := ufs.Attrs{"content-type": "text/plain", "x-amz-meta-generation": "old", "x-amz-meta-only-old": "gone soon"}
	newAttrs := ufs.Attrs{"content-language": "fr", "x-amz-meta-generation": "new"}
	old := createAttrs(t, fs, "aa/file", oldData, oldAttrs)

	afs := attrFS(t, fs)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := afs.CreateAttrs(t.Context(), "aa/file", pr, newAttrs)
		done <- err
	}()
	if _, err := pw.Write(newData[:len(newData)/2]); err != nil {
		t.Fatalf("write first half: %v", err)
	}
	st, attrs := statAttrs(t, fs, "aa/file")
	if st.Version != old.Version {
		t.Fatalf("during create: stat = %+v, want the old file %+v", st, old)
	}
	wantAttrs(t, "during create", attrs, oldAttrs)
	if _, err := pw.Write(newData[len(newData)/2:]); err != nil {
		t.Fatalf("write second half: %v", err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("create: %v", err)
	}
	st, attrs = statAttrs(t, fs, "aa/file")
	if st.Version == old.Version || st.Size != int64(len(newData)) {
		t.Fatalf("after create: stat = %+v, want the new file", st)
	}
	// Replaced as a whole: the old file's keys are gone.
	wantAttrs(t, "after create", attrs, newAttrs)
}

// testAttrsConsistent replaces a file again and again while another
// goroutine stats it: every version StatAttrs reports must come with the
// attrs written with that version, never those of the one before or
// after (as an adapter that set attrs after publishing the bytes would
// show).
func testAttrsConsistent(t *testing.T, fs ufs.FS) {
	const rounds = 40
	afs := attrFS(t, fs)
	gen := func(i int) ufs.Attrs { return ufs.Attrs{"x-amz-meta-generation": strconv.Itoa(i)} }
	written := map[string]string{} // version -> generation
	fi := createAttrs(t, fs, "acon/file", []byte("generation 0"), gen(0))
	written[fi.Version] = "0"

	type seen struct{ version, generation string }
	var observed []seen
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			fi, attrs, err := afs.StatAttrs(t.Context(), "acon/file")
			if err != nil {
				done <- err
				return
			}
			observed = append(observed, seen{fi.Version, attrs["x-amz-meta-generation"]})
		}
	}()
	for i := 1; i <= rounds; i++ {
		fi, err := afs.CreateAttrs(t.Context(), "acon/file", strings.NewReader("generation "+strconv.Itoa(i)), gen(i))
		if err != nil {
			close(stop)
			<-done
			t.Fatalf("create generation %d: %v", i, err)
		}
		written[fi.Version] = strconv.Itoa(i)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("stat with attrs during creates: %v", err)
	}
	for _, o := range observed {
		if want, ok := written[o.version]; !ok || o.generation != want {
			t.Fatalf("stat with attrs reported version %s with generation %q; that version was written with generation %q", o.version, o.generation, want)
		}
	}
	t.Logf("%d stats during %d creates", len(observed), rounds)
}

// testAttrsCreateClears: a plain Create, or CreateAttrs with no attrs,
// leaves a file without the attrs the old one had.
func testAttrsCreateClears(t *testing.T, fs ufs.FS) {
	for _, tc := range []struct {
		name   string
		create func(p string, r io.Reader) error
	}{
		{"Create", func(p string, r io.Reader) error { _, err := fs.Create(t.Context(), p, r); return err }},
		{"CreateAttrs with none", func(p string, r io.Reader) error {
			_, err := attrFS(t, fs).CreateAttrs(t.Context(), p, r, nil)
			return err
		}},
	} {
		old := createAttrs(t, fs, "ac/file", []byte("with attrs"), fullAttrs())
		if err := tc.create("ac/file", bytes.NewReader([]byte("without"))); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		st, attrs := statAttrs(t, fs, "ac/file")
		if st.Version == old.Version {
			t.Fatalf("%s: version unchanged", tc.name)
		}
		for k := range attrs {
			if strings.HasPrefix(k, ufs.UserAttrPrefix) {
				t.Fatalf("%s over a file with attrs: user metadata %q is still there", tc.name, attrs)
			}
		}
		wantAttrs(t, tc.name+" over a file with attrs", attrs, nil)
	}
}

// testAttrsRename: a file's attrs go with it, onto a new name or over a
// file with other attrs, small or large. On S3 the large file goes up in
// parts, and is copied in parts if the lake's copy limit is lowered (as
// the S3 tests do), where the store copies no metadata by itself.
func testAttrsRename(t *testing.T, fs ufs.FS) {
	attrs := fullAttrs()
	createAttrs(t, fs, "ar/a", []byte("content of a"), attrs)
	createAttrs(t, fs, "ar/b", []byte("content of b"), ufs.Attrs{"content-type": "image/png", "x-amz-meta-b": "b"})
	if err := fs.Rename(t.Context(), "ar/a", "ar/b"); err != nil {
		t.Fatalf("rename a over b: %v", err)
	}
	wantMissing(t, fs, "ar/a")
	_, got := statAttrs(t, fs, "ar/b")
	wantAttrs(t, "after rename over a file with other attrs", got, attrs)
	if err := fs.Rename(t.Context(), "ar/b", "elsewhere/deep/c"); err != nil {
		t.Fatalf("rename into new directories: %v", err)
	}
	_, got = statAttrs(t, fs, "elsewhere/deep/c")
	wantAttrs(t, "after rename into new directories", got, attrs)

	data := content(9<<20+77, 12)
	big := ufs.Attrs{"cache-control": "no-store", "expires": "Thu, 01 Jan 2037 00:00:00 GMT", "x-amz-meta-size-class": "groß"}
	createAttrs(t, fs, "ar/big", data, big)
	_, got = statAttrs(t, fs, "ar/big")
	wantAttrs(t, "after create of a large file", got, big)
	if err := fs.Rename(t.Context(), "ar/big", "ar/big2"); err != nil {
		t.Fatalf("rename the large file: %v", err)
	}
	wantMissing(t, fs, "ar/big")
	st, got := statAttrs(t, fs, "ar/big2")
	wantAttrs(t, "after rename of a large file", got, big)
	rc, err := fs.ReadRange(t.Context(), "ar/big2", st.Version, 0, st.Size)
	if err != nil {
		t.Fatalf("read the renamed large file: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read the renamed large file: %v", err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("the renamed large file's bytes differ")
	}
}

// testAttrsInvalid: attrs Validate refuses are refused by CreateAttrs too,
// with nothing written.
func testAttrsInvalid(t *testing.T, fs ufs.FS) {
	oldData, oldAttrs := []byte("old"), ufs.Attrs{"x-amz-meta-kept": "yes"}
	createAttrs(t, fs, "ai/file", oldData, oldAttrs)
	for _, bad := range []ufs.Attrs{
		{"x-custom-header": "v"},
		{"X-Amz-Meta-Upper": "v"},
		{"x-amz-meta-two words": "v"},
		{"content-type": "text/plain\r\nx-amz-meta-smuggled: 1"},
		{"x-amz-meta-big": strings.Repeat("x", ufs.MaxUserAttrsSize)},
	} {
		if err := bad.Validate(); !errors.Is(err, ufs.ErrInvalidAttrs) {
			t.Fatalf("validate %q: %v, want ErrInvalidAttrs", bad, err)
		}
		_, err := attrFS(t, fs).CreateAttrs(t.Context(), "ai/file", bytes.NewReader([]byte("new")), bad)
		wantErr(t, "create over a file with invalid attrs", err, ufs.ErrInvalidAttrs)
		_, err = attrFS(t, fs).CreateAttrs(t.Context(), "ai/new", bytes.NewReader([]byte("new")), bad)
		wantErr(t, "create with invalid attrs", err, ufs.ErrInvalidAttrs)
		wantMissing(t, fs, "ai/new")
	}
	if got := read(t, fs, "ai/file", "", 0, 100); !bytes.Equal(got, oldData) {
		t.Fatalf("after refused creates: read %s, want the old content", describe(got))
	}
	_, got := statAttrs(t, fs, "ai/file")
	wantAttrs(t, "after refused creates", got, oldAttrs)
}

// testAttrsCreateFailureKeepsOld: a CreateAttrs or Create that fails leaves
// the old content with the old attrs.
func testAttrsCreateFailureKeepsOld(t *testing.T, fs ufs.FS) {
	oldData, oldAttrs := []byte("the old content"), fullAttrs()
	old := createAttrs(t, fs, "af/file", oldData, oldAttrs)
	newAttrs := ufs.Attrs{"content-type": "text/html", "x-amz-meta-new": "new"}
	afs := attrFS(t, fs)

	_, err := afs.CreateAttrs(t.Context(), "af/file", &failingReader{data: content(100<<10, 13), err: errWriterBroke}, newAttrs)
	wantErr(t, "create with attrs from a failing reader", err, errWriterBroke)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = afs.CreateAttrs(ctx, "af/file", &failingReader{data: content(100<<10, 14), err: io.EOF, before: cancel}, newAttrs)
	if err == nil {
		t.Fatalf("create with attrs whose context was cancelled before the end succeeded")
	}
	_, err = fs.Create(t.Context(), "af/file", &failingReader{data: content(100<<10, 15), err: errWriterBroke})
	wantErr(t, "create from a failing reader", err, errWriterBroke)
	_, _, err = afs.StatAttrs(ctx, "af/file")
	wantErr(t, "stat with attrs and a cancelled context", err, context.Canceled)
	_, err = afs.CreateAttrs(ctx, "af/file", bytes.NewReader([]byte("x")), newAttrs)
	wantErr(t, "create with attrs and a cancelled context", err, context.Canceled)

	st, got := statAttrs(t, fs, "af/file")
	if st.Version != old.Version {
		t.Fatalf("after failed creates: stat = %+v, want the old file %+v", st, old)
	}
	wantAttrs(t, "after failed creates", got, oldAttrs)
	if got := read(t, fs, "af/file", "", 0, 1<<20); !bytes.Equal(got, oldData) {
		t.Fatalf("after failed creates: read %s, want the old content", describe(got))
	}
	_, err = afs.CreateAttrs(t.Context(), "af/new", &failingReader{data: []byte("partial"), err: errWriterBroke}, newAttrs)
	wantErr(t, "create a new file with attrs from a failing reader", err, errWriterBroke)
	wantMissing(t, fs, "af/new")
}
