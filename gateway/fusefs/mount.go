package fusefs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lakemesh/lakemesh/internal/mountinfo"
)

// Request sizes the mount asks the kernel for.
const (
	// MaxRequest is the largest read and write request (max_read,
	// MaxWrite, and max_pages derived from it): 1 MiB.
	MaxRequest = 1 << 20
	// ReadAheadKB is the kernel readahead window set on the mount's
	// backing device: 8 MiB, so a sequential reader is sent 1 MiB
	// requests, several at once. With a 1 MiB window the kernel kept about
	// one request ahead of the reader, and a reader of warm pages with the
	// page cache dropped got 690-870 MB/s; with 8 MiB, 900-1,030.
	ReadAheadKB = 8 * MaxRequest >> 10
	// maxBackground is how many asynchronous requests (readahead) the
	// kernel keeps in flight.
	maxBackground = 64
	// DefaultMaxInflight bounds the bytes of the requests being served
	// at once. Each request holds a buffer of MaxRequest (its input) and
	// a read one as much again (its answer), so this also bounds the
	// mount's request memory to about twice this, whatever the number of
	// readers.
	DefaultMaxInflight = 64 << 20
)

// ErrBusy is returned by Unmount while files are open under the mount.
var ErrBusy = errors.New("busy")

// ErrStale is returned by CheckMountpoint for a FUSE mount whose server
// is gone.
var ErrStale = errors.New("stale FUSE mount")

// ErrMounted is returned by CheckMountpoint for a live FUSE mount: a
// second mount on top would hide the first one's files from new
// lookups while its open files go on, which no one means to do.
var ErrMounted = errors.New("already a FUSE mount")

// MountOptions are the kernel-facing options of a mount.
type MountOptions struct {
	// AllowOther lets other users than the mounting one use the mount
	// (permissions are checked by the kernel from the files' modes).
	AllowOther bool
	// Debug logs every FUSE operation on standard error.
	Debug bool
	// MaxInflight bounds the bytes of requests served at once (default
	// DefaultMaxInflight); past it the kernel's requests wait.
	MaxInflight int
}

// Mount is a mounted FS.
type Mount struct {
	fsys   *FS
	server *fuse.Server
	dir    string
}

// CheckMountpoint says whether dir can be mounted on: it must exist and
// be a directory, and be neither a stale FUSE mount (one whose server
// died, where stat fails with "transport endpoint is not connected") nor
// a live one (another lakemesh mount, say).
func CheckMountpoint(dir string) error {
	st, err := os.Stat(dir)
	if err == nil {
		// stat may be answered from the kernel's attribute cache of a
		// dead mount's root; statfs always asks the server.
		var sfs syscall.Statfs_t
		if serr := syscall.Statfs(dir, &sfs); errors.Is(serr, syscall.ENOTCONN) {
			err = serr
		}
	}
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mount point %s is a %w (transport endpoint is not connected); unmount it with: fusermount3 -u %s", dir, ErrStale, dir)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist; create it with: mkdir -p %s", dir, dir)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	if m, ok := fuseMountAt(dir); ok {
		return fmt.Errorf("mount point %s is %w (%s, %s); unmount it first with: fusermount3 -u %s", dir, ErrMounted, m.FSType, m.Source, dir)
	}
	return nil
}

// fuseMountAt returns the FUSE file system mounted at dir, if the top
// mount there is one (mountinfo lists mounts bottom first).
func fuseMountAt(dir string) (mountinfo.Mount, bool) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return mountinfo.Mount{}, false
	}
	mounts, err := mountinfo.Read(mountinfo.Path)
	if err != nil {
		return mountinfo.Mount{}, false // no /proc: the mount itself will say
	}
	for _, m := range slices.Backward(mounts) {
		if m.Point == resolved {
			return m, m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse.")
		}
	}
	return mountinfo.Mount{}, false
}

// Mount mounts f on dir: the namespace's "/" at dir. It tries mount(2)
// first (as root) and falls back to fusermount3.
func (f *FS) Mount(dir string, o MountOptions) (*Mount, error) {
	if err := CheckMountpoint(dir); err != nil {
		return nil, err
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	entry, attr, negative := VirtualTTL, VirtualTTL, f.negativeTimeout()
	opts := &fs.Options{
		// Lookups and getattrs set their own timeouts (the path's
		// mount's TTL); these are the defaults for what does not.
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &negative,
		UID:             f.cfg.UID,
		GID:             f.cfg.GID,
		Logger:          slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
		MountOptions: fuse.MountOptions{
			FsName:                  "lakemesh",
			Name:                    "lakemesh",
			AllowOther:              o.AllowOther,
			Debug:                   o.Debug,
			MaxWrite:                MaxRequest,
			MaxReadAhead:            MaxRequest,
			MaxBackground:           maxBackground,
			MaxInflightRequestBytes: o.MaxInflight,
			DirectMount:             true,
			DisableXAttrs:           true,
			// Read results are in memory already: splicing them
			// through a pipe only copies them once more.
			DisableSplice: true,
			// O_TRUNC comes with OPEN, so the open handle starts empty;
			// without it the kernel sends a SETATTR of size 0 that names
			// no handle. Files open with FOPEN_DIRECT_IO (being written,
			// or read while another version is open) can be mmapped.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			// The kernel checks permissions from the modes, so
			// --allow-other does not let others write.
			Options: []string{"default_permissions"},
		},
	}
	if o.Debug {
		opts.MountOptions.Logger = log.New(os.Stderr, "fuse: ", log.Lmicroseconds)
	}
	if f.cfg.ReadOnly {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
		opts.MountOptions.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
	}
	root := f.Root()
	server, err := fs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	m := &Mount{fsys: f, server: server, dir: dir}
	m.setReadahead()
	m.watch(root.EmbeddedInode())
	// Handles open for writing bypass the kernel's page cache
	// (FOPEN_DIRECT_IO): their bytes are in the spool or the upload's
	// window, and caching them too only cost the writing process a copy
	// into fresh page cache pages per write (with it the kernel hands the
	// writer's own pages over), pages dropped when the file is next
	// opened anyway. Only where such a handle can still be mmapped.
	if server.KernelSettings().Flags64()&fuse.CAP_DIRECT_IO_ALLOW_MMAP != 0 {
		f.writeOpenFlags.Store(fuse.FOPEN_DIRECT_IO)
	}
	return m, nil
}

// setReadahead widens the kernel's readahead window on the mount's
// backing device (the FUSE handshake cannot raise it past the kernel's
// 128 KiB default). Best effort: it needs root.
func (m *Mount) setReadahead() {
	var st unix.Stat_t
	if err := unix.Stat(m.dir, &st); err != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(fmt.Sprint(ReadAheadKB)), 0o644); err != nil {
		m.fsys.log.Info("kernel readahead left at its default", "file", p, "err", err)
	}
}

// Dir is the mount point.
func (m *Mount) Dir() string { return m.dir }

// Wait returns when the mount is gone (Unmount, or fusermount3 -u).
func (m *Mount) Wait() { m.server.Wait() }

// Unmount unmounts and waits for the server to stop. While files are
// open under the mount it fails with ErrBusy, and the mount keeps
// serving.
func (m *Mount) Unmount() error {
	err := syscall.Unmount(m.dir, 0)
	switch {
	case err == nil:
	case errors.Is(err, syscall.EBUSY):
		return m.busy()
	case errors.Is(err, syscall.EINVAL):
		// Not mounted any more (someone ran fusermount3 -u).
	default:
		// Not root: fusermount3 can unmount what it mounted.
		if err := m.server.Unmount(); err != nil {
			if strings.Contains(err.Error(), "busy") {
				return m.busy()
			}
			return fmt.Errorf("unmount %s: %w", m.dir, err)
		}
	}
	done := make(chan struct{})
	go func() { m.server.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("unmount %s: the FUSE server did not stop within 10s", m.dir)
	}
	return nil
}

func (m *Mount) busy() error {
	return fmt.Errorf("mount point %s is %w: close the files open under it and retry, or unmount lazily with: fusermount3 -uz %s", m.dir, ErrBusy, m.dir)
}
