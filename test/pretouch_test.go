package test

import (
	"os"
	"strings"
	"testing"
)

// A node pretouches its memory tier at start (the default), in the
// background, and says so; one whose tier is larger than the machine's
// available memory skips it with a warning instead of pushing the machine
// into swap, and serves as usual.
func TestNodePretouchesItsMemoryTier(t *testing.T) {
	for _, tc := range []struct {
		memory, want string
	}{
		{"64MiB", `msg="memory tier pretouched" bytes=67108864`},
		{"64TiB", `msg="memory tier larger than the memory available: not pretouched`},
	} {
		t.Run(tc.memory, func(t *testing.T) {
			m := newMesh(t, meshOptions{nodes: 1, memorySize: tc.memory, pretouch: true})
			want := m.upload("pretouch/a.bin", 5<<20, 3)
			if got := readAll(t, m.client(), "/lake/s3/pretouch/a.bin", 1<<20); got != want {
				t.Fatal("read returned other bytes than the lake's")
			}
			n := m.nodes[0]
			waitFor(t, "the node's log says "+tc.want, func() bool {
				b, _ := os.ReadFile(n.logPath)
				return strings.Contains(string(b), tc.want)
			})
		})
	}
}
