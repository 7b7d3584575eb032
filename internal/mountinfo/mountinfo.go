// Package mountinfo reads the mount table of /proc/self/mountinfo
// (proc(5)): the cache node asks it whether its directory's file system
// discards online, the FUSE mount whether its mount point is mounted
// already.
package mountinfo

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// Path is the calling process's mount table.
const Path = "/proc/self/mountinfo"

// Mount is one line of the table.
type Mount struct {
	Point  string // where it is mounted, unescaped
	FSType string // "ext4", "fuse", "fuse.lakemesh", ...
	Source string // the device or the file system's name
	// Options are the mount's own (rw, relatime, ...), SuperOptions the
	// file system's (discard, errors=remount-ro, ...).
	Options, SuperOptions string
}

// Parse reads a table in mountinfo's format, in its order (a mount
// listed later is on top of one listed earlier at the same point). Lines
// it cannot read are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var ms []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		ms = append(ms, Mount{Point: unescape(f[4]), FSType: g[0], Source: unescape(g[1]), Options: f[5], SuperOptions: g[2]})
	}
	return ms, sc.Err()
}

// Read parses the table at path (Path, or a test's own file).
func Read(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// HasOption reports whether the mount or its file system has the option
// name (exactly, as "discard").
func (m Mount) HasOption(name string) bool {
	return hasOption(m.Options, name) || hasOption(m.SuperOptions, name)
}

func hasOption(opts, name string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space, and tab,
// newline and backslash) in paths.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
