package cachenode

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A mountinfo of this project's machine (root ext4 with online discard),
// with a tmpfs, a nodiscard XFS and a path with a space added.
const testMountinfo = `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
40 22 0:35 / /tmp/ram rw,relatime shared:20 - tmpfs tmpfs rw,size=1048576k
41 22 259:1 / /var/cache/lakemesh rw,noatime shared:21 - xfs /dev/nvme0n1 rw,attr2,inode64,noquota
42 22 259:2 / /mnt/fast\040disk rw,noatime,discard shared:22 - xfs /dev/nvme1n1 rw,attr2
`

func TestDiscardMount(t *testing.T) {
	for _, c := range []struct {
		dir, mount, fsType string
		discard            bool
	}{
		{"/tmp/lakemesh/a", "/", "ext4", true},         // super options
		{"/", "/", "ext4", true},                       // the mount point itself
		{"/tmp/ram/cache", "/tmp/ram", "tmpfs", false}, // a deeper mount wins
		{"/tmp/ramdisk", "/", "ext4", true},            // a prefix that is not a parent
		{"/var/cache/lakemesh", "/var/cache/lakemesh", "xfs", false},
		{"/mnt/fast disk/c", "/mnt/fast disk", "xfs", true}, // mount options; escaped space
	} {
		mp, fs, discard := discardMount(strings.NewReader(testMountinfo), c.dir)
		if mp != c.mount || fs != c.fsType || discard != c.discard {
			t.Errorf("discardMount(%q) = %q, %q, %v; want %q, %q, %v", c.dir, mp, fs, discard, c.mount, c.fsType, c.discard)
		}
	}
}

// A store whose directory is on a file system that discards online says
// so when it opens, naming the directory and the mount; one that does not
// says nothing.
func TestStoreWarnsOfOnlineDiscard(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(t.TempDir(), "mountinfo")
	defer func(p string) { mountinfoPath = p }(mountinfoPath)
	mountinfoPath = info
	for _, c := range []struct {
		name, mountinfo string
		warn            bool
	}{
		{"discard", "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n", true},
		{"nodiscard", "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n", false},
	} {
		if err := os.WriteFile(info, []byte(c.mountinfo), 0o644); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s := openTestStore(t, StoreConfig{Dir: dir, DiskBytes: 64 * mib, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		s.Close()
		warned := strings.Contains(logs.String(), "online discard") && strings.Contains(logs.String(), "mount=/ fstype=ext4")
		if warned != c.warn {
			t.Errorf("%s: warned %v, want %v; logs:\n%s", c.name, warned, c.warn, logs.String())
		}
		// A caller that checked already (lakemesh up, for all its
		// nodes at once) is not warned again by each store.
		logs.Reset()
		s = openTestStore(t, StoreConfig{Dir: dir, DiskBytes: 64 * mib, Logger: slog.New(slog.NewTextHandler(&logs, nil)), DiscardChecked: true})
		s.Close()
		if strings.Contains(logs.String(), "online discard") {
			t.Errorf("%s: a store told the caller checked warned all the same:\n%s", c.name, logs.String())
		}
		if got := WarnIfDiscard(slog.New(slog.DiscardHandler), dir); got != c.warn {
			t.Errorf("%s: WarnIfDiscard %v, want %v", c.name, got, c.warn)
		}
	}
}
