package ufstest

import (
	"bytes"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

// testInvalidPaths checks that no method accepts a path that could climb
// out of the root.
func testInvalidPaths(t *testing.T, fs ufs.FS) {
	create(t, fs, "ok", []byte("x"))
	for _, p := range []string{"..", "../x", "a/../../b", "a/..", "./../x", "x\x00y"} {
		ctx := t.Context()
		_, err := fs.Stat(ctx, p)
		wantErr(t, "stat "+p, err, ufs.ErrInvalidPath)
		_, err = fs.List(ctx, p, "", 10)
		wantErr(t, "list "+p, err, ufs.ErrInvalidPath)
		_, err = fs.ReadRange(ctx, p, "", 0, 10)
		wantErr(t, "read "+p, err, ufs.ErrInvalidPath)
		_, err = fs.Create(ctx, p, bytes.NewReader([]byte("escape")))
		wantErr(t, "create "+p, err, ufs.ErrInvalidPath)
		wantErr(t, "mkdir "+p, fs.Mkdir(ctx, p), ufs.ErrInvalidPath)
		wantErr(t, "delete "+p, fs.Delete(ctx, p), ufs.ErrInvalidPath)
		wantErr(t, "rename from "+p, fs.Rename(ctx, p, "ok2"), ufs.ErrInvalidPath)
		wantErr(t, "rename to "+p, fs.Rename(ctx, "ok", p), ufs.ErrInvalidPath)
	}
	if got := read(t, fs, "ok", "", 0, 10); string(got) != "x" {
		t.Fatalf("ok = %q", got)
	}
}
