//go:build linux

package ufs

import (
	"encoding/json"
	"errors"
	"maps"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func openFileForTest(t *testing.T, dir string) *fileFS {
	t.Helper()
	fs, err := openFile(t.Context(), &url.URL{Scheme: "file", Path: filepath.ToSlash(dir)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs.(*fileFS)
}

// TestFileAttrsStored: a file:// lake keeps attrs as JSON in the extended
// attribute user.lakemesh.attrs, where other tools can read them.
func TestFileAttrsStored(t *testing.T) {
	dir := t.TempDir()
	fs := openFileForTest(t, dir)
	attrs := Attrs{"content-type": "text/plain", "x-amz-meta-a": "b <&> ü"}
	if _, err := fs.CreateAttrs(t.Context(), "d/f", strings.NewReader("x"), attrs); err != nil {
		t.Fatalf("create: %v", err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(filepath.Join(dir, "d", "f"), "user.lakemesh.attrs", buf)
	if err != nil {
		t.Fatalf("getxattr: %v", err)
	}
	var got Attrs
	if err := json.Unmarshal(buf[:n], &got); err != nil || !maps.Equal(got, attrs) {
		t.Fatalf("user.lakemesh.attrs = %s (%v), want JSON of %q", buf[:n], err, attrs)
	}
	// A value no lakemesh writer put there is an error, not attrs.
	if err := unix.Setxattr(filepath.Join(dir, "d", "f"), "user.lakemesh.attrs", []byte("not json"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.StatAttrs(t.Context(), "d/f"); err == nil || !strings.Contains(err.Error(), "holds no attrs") {
		t.Fatalf("stat of a file with a broken attribute: %v", err)
	}
}

// TestFileAttrsFIFO: StatAttrs does not open what is not a regular file,
// since opening a FIFO blocks until a writer comes.
func TestFileAttrsFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := openFileForTest(t, dir)
	done := make(chan error, 1)
	go func() {
		_, attrs, err := fs.StatAttrs(t.Context(), "fifo")
		if err == nil && len(attrs) != 0 {
			err = errors.New("a FIFO has attrs")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the open, so the goroutine ends.
		w, _ := unix.Open(filepath.Join(dir, "fifo"), unix.O_WRONLY|unix.O_NONBLOCK, 0)
		unix.Close(w)
		<-done
		t.Fatal("stat with attrs of a FIFO blocked")
	}
}

// TestFileAttrsNotKept: the errors of a file system that keeps no user
// extended attributes, or none this large, are ErrAttrsNotKept; others
// are not.
func TestFileAttrsNotKept(t *testing.T) {
	for _, tc := range []struct {
		errno unix.Errno
		kept  bool
	}{
		{unix.EOPNOTSUPP, false},
		{unix.ENOTSUP, false},
		{unix.ENOSPC, false},
		{unix.E2BIG, false},
		{unix.EIO, true},
		{unix.EACCES, true},
	} {
		err := classifyXattrErr(tc.errno, 5000)
		if errors.Is(err, ErrAttrsNotKept) == tc.kept || !errors.Is(err, tc.errno) {
			t.Errorf("%v: %v", tc.errno, err)
		}
	}
}
