package cachenode

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/internal/mountinfo"
)

// A disk tier on a file system mounted with online discard (ext4's and
// XFS's -o discard) pays for every eviction: each removed page file's
// blocks are discarded as they are freed, and the fills' writes wait
// behind the discards. On this project's machine, whose root file system
// is so mounted, twelve cold 512 MiB reads through three nodes with 1 GiB
// disk tiers ran at 950-1,300 MB/s until the tiers were full, then at
// 230-490 MB/s while they first evicted and 560-1,060 after (eight runs);
// with the same file system remounted nodiscard, 1,100-1,350 throughout
// (two runs), and an eviction pass took 0.4-8 ms instead of 300-660.
// Removing the files from another goroutine did not help (two runs): the
// disk is what waits. A node therefore warns when its cache directory is
// on such a file system; the usual advice for databases holds (mount
// without discard, run fstrim from a timer).

// discardMount reports the mount point and file system type of the mount
// that holds dir, if that mount discards online. table is the text of
// /proc/self/mountinfo (proc(5)); dir is absolute and free of symbolic
// links.
func discardMount(table io.Reader, dir string) (mountPoint, fsType string, discard bool) {
	mounts, _ := mountinfo.Parse(table) // what it read, up to a bad line
	best := -1
	for _, m := range mounts {
		if !federation.Within(dir, m.Point) || len(m.Point) < best {
			continue
		}
		best = len(m.Point)
		mountPoint, fsType, discard = m.Point, m.FSType, m.HasOption("discard")
	}
	return mountPoint, fsType, discard
}

// mountinfoPath is where WarnIfDiscard reads the mounts (a test's own
// file in tests).
var mountinfoPath = mountinfo.Path

// WarnIfDiscard logs a warning to log when dir (a cache directory) is on
// a file system mounted with online discard, and reports whether it
// did. A store opened on dir warns by itself unless told the caller did
// (StoreConfig.DiscardChecked).
func WarnIfDiscard(log *slog.Logger, dir string) bool {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return false // not Linux, or no /proc: nothing to tell
	}
	defer f.Close()
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return false
	}
	mp, fsType, discard := discardMount(f, abs)
	if discard {
		log.Warn("cache directory is on a file system mounted with online discard: each eviction discards the evicted pages' blocks and fills wait behind the discards, which slowed cold reads past a full disk tier by 20-50% in tests; mount it without discard and run fstrim periodically",
			"dir", dir, "mount", mp, "fstype", fsType)
	}
	return discard
}
