package ufs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
	"github.com/lakemesh/lakemesh/ufs/ufstest"
)

func openFileLake(t *testing.T, dir string) ufs.FS {
	t.Helper()
	fs, err := ufs.Open(t.Context(), "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatalf("open file lake: %v", err)
	}
	return fs
}

func TestFileConformance(t *testing.T) {
	ufstest.Run(t, func(t *testing.T) ufs.FS { return openFileLake(t, t.TempDir()) })
}

// TestFileSymlinkEscape checks that a symlink inside the lake cannot be used
// to read or write outside it.
func TestFileSymlinkEscape(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inside"), []byte("in"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("inside", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	fs := openFileLake(t, dir)
	defer fs.Close()
	ctx := t.Context()

	if _, err := fs.ReadRange(ctx, "link/secret", "", 0, 10); err == nil {
		t.Fatalf("read through a symlink out of the lake succeeded")
	}
	if _, err := fs.Create(ctx, "link/planted", strings.NewReader("x")); err == nil {
		t.Fatalf("create through a symlink out of the lake succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was planted outside the lake: %v", err)
	}
	// A symlink that stays inside works, and the escaping one is not listed.
	rc, err := fs.ReadRange(ctx, "alias", "", 0, 10)
	if err != nil {
		t.Fatalf("read through a symlink inside the lake: %v", err)
	}
	rc.Close()
	page, err := fs.List(ctx, "", "", 0)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var names []string
	for _, e := range page.Entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "alias,inside" {
		t.Fatalf("list = %v, want alias,inside", names)
	}
}

func TestFileOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{
		"file://" + filepath.Join(dir, "missing"),
		"file://" + file,
		"file://host/abs",
		"file:relative/dir",
		"file://" + dir + "?opt=1",
	} {
		if fs, err := ufs.Open(t.Context(), uri); err == nil {
			fs.Close()
			t.Errorf("open %q succeeded", uri)
		}
	}
}
