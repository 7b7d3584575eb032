package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	table := `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
61 22 0:52 / /mnt/my\040lake rw,nosuid,nodev,relatime shared:30 - fuse.lakemesh lakemesh rw,user_id=0,group_id=0
62 61 0:53 / /mnt/my\040lake rw,relatime shared:31 - tmpfs tmpfs rw
not a mountinfo line
`
	ms, err := Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("%d mounts, want 3 (the bad line skipped): %+v", len(ms), ms)
	}
	if m := ms[0]; m.Point != "/" || m.FSType != "ext4" || m.Source != "/dev/vda" || !m.HasOption("discard") || !m.HasOption("relatime") || m.HasOption("disc") {
		t.Errorf("root: %+v", m)
	}
	if m := ms[1]; m.Point != "/mnt/my lake" || m.FSType != "fuse.lakemesh" || m.Source != "lakemesh" || m.HasOption("discard") {
		t.Errorf("the FUSE mount, its escaped space undone: %+v", m)
	}
	if ms[2].Point != ms[1].Point || ms[2].FSType != "tmpfs" {
		t.Errorf("the mount on top of it, listed after: %+v", ms[2])
	}
}
