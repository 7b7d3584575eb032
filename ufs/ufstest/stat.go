package ufstest

import (
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

func testStat(t *testing.T, fs ufs.FS) {
	wantDir(t, fs, "")
	data := []byte("hello, lake")
	create(t, fs, "d/f.txt", data)
	fi := stat(t, fs, "d/f.txt")
	if fi.IsDir || fi.Size != int64(len(data)) || fi.Version == "" || fi.ModTime.IsZero() {
		t.Fatalf("stat file = %+v, want %d bytes, a version and a mtime", fi, len(data))
	}
	if fi.Name() != "f.txt" {
		t.Fatalf("Name() = %q", fi.Name())
	}
	wantDir(t, fs, "d")
	wantMissing(t, fs, "missing")
	wantMissing(t, fs, "d/missing")
	// A path below a file is missing, not an error of its own.
	wantMissing(t, fs, "d/f.txt/below")
}

func testVersionStable(t *testing.T, fs ufs.FS) {
	created := create(t, fs, "v/a", []byte("version me"))
	a, b := stat(t, fs, "v/a"), stat(t, fs, "v/a")
	if a.Version != b.Version || a.Version != created.Version {
		t.Fatalf("versions of unchanged file differ: create %q, stat %q then %q", created.Version, a.Version, b.Version)
	}
	entries := listAll(t, fs, "v", 0)
	if len(entries) != 1 || entries[0].Path != "v/a" || entries[0].Version != a.Version || entries[0].Size != a.Size {
		t.Fatalf("list v = %+v, want v/a with version %q and size %d", entries, a.Version, a.Size)
	}
}
