package ufstest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

// testCancelled calls every method with a cancelled context: each must fail
// promptly with an error that says so.
func testCancelled(t *testing.T, fs ufs.FS) {
	create(t, fs, "f", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"stat": func() error { _, err := fs.Stat(ctx, "f"); return err },
		"list": func() error { _, err := fs.List(ctx, "", "", 10); return err },
		"read": func() error { _, err := readErr(ctx, fs, "f", "", 0, 1); return err },
		"create": func() error {
			_, err := fs.Create(ctx, "g", bytes.NewReader([]byte("y")))
			return err
		},
		"mkdir":  func() error { return fs.Mkdir(ctx, "d") },
		"delete": func() error { return fs.Delete(ctx, "f") },
		"rename": func() error { return fs.Rename(ctx, "f", "h") },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s with a cancelled context took %v", name, d)
		}
	}
	// Nothing happened.
	if got := read(t, fs, "f", "", 0, 1); string(got) != "x" {
		t.Fatalf("f = %q after cancelled calls", got)
	}
	wantMissing(t, fs, "g")
	wantMissing(t, fs, "h")
	wantMissing(t, fs, "d")
}
