package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/internal/fsx"
)

// fsxSeeds are the runs of TestMountMatchesALocalDirectory: fixed seeds,
// so a failure reproduces, and one from the clock, logged, so runs
// explore; LAKEMESH_FSX_SEED runs one seed alone, and LAKEMESH_FSX_LOG=1
// logs each operation.
func fsxSeeds(t *testing.T) []uint64 {
	if s := os.Getenv("LAKEMESH_FSX_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LAKEMESH_FSX_SEED=%q: not a number", s)
		}
		return []uint64{seed}
	}
	return []uint64{1, 2, 3, uint64(time.Now().UnixNano())}
}

// TestMountMatchesALocalDirectory applies random sequences of opens,
// writes at any offset, reads, truncates, fsyncs, closes, renames and
// removes to the mount and to a local directory, and compares after each
// what a program sees, and after each close what the lake holds.
func TestMountMatchesALocalDirectory(t *testing.T) {
	for _, seed := range fsxSeeds(t) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			tm := mountLakes(t, mountOptions{})
			dir := tm.path("fsx")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			var logf func(string, ...any)
			if os.Getenv("LAKEMESH_FSX_LOG") != "" {
				logf = t.Logf
			}
			err := fsx.Run(fsx.Config{
				Logf:  logf,
				Dir:   dir,
				Model: t.TempDir(),
				Seed:  seed,
				Ops:   400,
				Closed: func(name string, want []byte) error {
					got, err := os.ReadFile(filepath.Join(tm.lake, "fsx", name))
					if err != nil {
						return fmt.Errorf("the lake's %s after close: %v", name, err)
					}
					if !bytes.Equal(got, want) {
						return fmt.Errorf("the lake's %s after close: %d bytes, not the %d written", name, len(got), len(want))
					}
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
