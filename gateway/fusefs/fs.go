package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/router"
)

// Defaults of Config.
const (
	// DefaultOpTimeout bounds one metadata call or one read of the
	// namespace.
	DefaultOpTimeout = 60 * time.Second
	// DefaultWriteRate is the slowest upload a flush waits for: a flush
	// of n bytes may take OpTimeout + n/WriteRate before it fails with
	// ETIMEDOUT.
	DefaultWriteRate = 8 << 20
	// DefaultMaxUploads bounds the uploads (Put) and copy-ins running at
	// once, whatever the number of open files; each holds a 1 MiB buffer.
	DefaultMaxUploads = 8
	// VirtualTTL is the kernel cache timeout of the directories above
	// the mounts ("/", "/lake"): they change only with the topology.
	VirtualTTL = time.Minute
	// freshFor is how long an entry the mount just fetched is used again
	// without asking by an open for writing or a truncate (a lookup
	// followed by one of them). Getattr and an open for reading use it
	// for the path's whole TTL, as the kernel does.
	freshFor = time.Second
)

// Config is what a mount needs.
type Config struct {
	// Namespace is the region's namespace: a router.Client, or a
	// routertest.Lakes in unit tests.
	Namespace router.Namespace
	// Topology gives the mounts: a path's mount decides its metadata
	// TTL, hence the kernel's entry and attribute timeouts.
	Topology *federation.Topology
	// SpoolDir is where write spools live: the mount makes a private
	// directory (0700) under it and removes it on Close.
	SpoolDir string
	// ReadOnly refuses every change with EROFS.
	ReadOnly bool
	// ListPageSize is the number of entries asked per List call; 0 is
	// the node's default page.
	ListPageSize int
	// OpTimeout bounds each metadata call and each read (default
	// DefaultOpTimeout).
	OpTimeout time.Duration
	// WriteRate stretches a flush's timeout with its size (default
	// DefaultWriteRate bytes per second).
	WriteRate int64
	// MaxUploads bounds concurrent uploads and copy-ins (default
	// DefaultMaxUploads).
	MaxUploads int
	// UID and GID own every file (default: the mounting process's).
	UID, GID uint32
	Logger   *slog.Logger
}

// FS is the file system a mount serves: the namespace of one region.
// It is safe for concurrent use; Close releases the spool directory.
type FS struct {
	cfg      Config
	ns       router.Namespace
	log      *slog.Logger
	spoolDir string        // this mount's private spool directory
	uploads  chan struct{} // one slot per upload or copy-in in flight
	// windowBuffers keeps the buffers of streams' write-behind windows
	// (upload.go) for the next stream.
	windowBuffers sync.Pool
	// writeOpenFlags are the open flags of handles open for writing,
	// set by Mount (see there).
	writeOpenFlags atomic.Uint32
	started        time.Time // the time of entries that have no mtime

	ctx    context.Context // cancelled by Close: stops every call
	cancel context.CancelFunc
}

// New checks cfg, makes the mount's spool directory and returns the file
// system, ready to Mount.
func New(cfg Config) (*FS, error) {
	if cfg.Namespace == nil || cfg.Topology == nil {
		return nil, errors.New("fusefs: Config needs a Namespace and a Topology")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("fusefs: Config needs a SpoolDir")
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.WriteRate <= 0 {
		cfg.WriteRate = DefaultWriteRate
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = DefaultMaxUploads
	}
	if cfg.UID == 0 && cfg.GID == 0 {
		cfg.UID, cfg.GID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	spool, err := makeSpoolDir(cfg.SpoolDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &FS{
		cfg:      cfg,
		ns:       cfg.Namespace,
		log:      cfg.Logger,
		spoolDir: spool,
		uploads:  make(chan struct{}, cfg.MaxUploads),
		started:  time.Now(),
		ctx:      ctx,
		cancel:   cancel,
	}, nil
}

// SpoolDir is the mount's private spool directory.
func (f *FS) SpoolDir() string { return f.spoolDir }

// Close stops calls still running and removes the spool directory. Call
// it after the mount is gone.
func (f *FS) Close() error {
	f.cancel()
	if err := os.RemoveAll(f.spoolDir); err != nil {
		return fmt.Errorf("remove spool directory: %w", err)
	}
	return nil
}

// opContext bounds one metadata call or one read.
func (f *FS) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(f.ctx, f.cfg.OpTimeout)
}

// uploadContext bounds one upload of size bytes.
func (f *FS) uploadContext(size int64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(f.ctx, f.cfg.OpTimeout+time.Duration(size/f.cfg.WriteRate)*time.Second)
}

// acquireUpload takes an upload slot; release gives it back.
func (f *FS) acquireUpload() (release func()) {
	f.uploads <- struct{}{}
	return func() { <-f.uploads }
}

// tryAcquireUpload takes an upload slot if one is free.
func (f *FS) tryAcquireUpload() (release func(), ok bool) {
	select {
	case f.uploads <- struct{}{}:
		return func() { <-f.uploads }, true
	default:
		return nil, false
	}
}

// ttl is how long the kernel may cache what it learns of p: its mount's
// metadata TTL, or VirtualTTL above the mounts.
func (f *FS) ttl(p string) time.Duration {
	if m, _, ok := f.cfg.Topology.Resolve(p); ok {
		return m.MetadataTTL
	}
	return VirtualTTL
}

// negativeTimeout is how long the kernel caches "no such file": the
// shortest metadata TTL of the mounts (the kernel takes one value for
// the whole mount).
func (f *FS) negativeTimeout() time.Duration {
	neg := VirtualTTL
	for _, m := range f.cfg.Topology.Mounts {
		neg = min(neg, m.MetadataTTL)
	}
	return neg
}

// changeable says whether p may be created, removed or renamed: it is
// strictly inside a mount. Paths above the mounts and the mount points
// themselves are the topology's, not the lake's.
func (f *FS) changeable(p string) syscall.Errno {
	if f.cfg.ReadOnly {
		return syscall.EROFS
	}
	if _, rel, ok := f.cfg.Topology.Resolve(p); !ok || rel == "" {
		return syscall.EROFS
	}
	return 0
}

// sameMount says whether a rename from one path to the other stays in one
// mount (EXDEV otherwise, so mv copies instead).
func (f *FS) sameMount(from, to string) syscall.Errno {
	mf, _, _ := f.cfg.Topology.Resolve(from)
	mt, _, _ := f.cfg.Topology.Resolve(to)
	if mf.Path != mt.Path {
		return syscall.EXDEV
	}
	return 0
}

// errno maps err of a call on p, made with ctx (nil for a local call), to
// an errno, logging what the application cannot be told: an I/O error, a
// timeout. A call that failed once its deadline passed timed out, whatever
// the transport made of that.
func (f *FS) errno(ctx context.Context, op, p string, err error) syscall.Errno {
	if ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	e := Errno(err)
	switch e {
	case syscall.EIO, syscall.ETIMEDOUT:
		f.log.Warn("fuse call failed", "op", op, "path", p, "errno", e.Error(), "err", err)
	case 0:
	default:
		f.log.Debug("fuse call refused", "op", op, "path", p, "errno", e.Error(), "err", err)
	}
	return e
}

// childPath joins a directory's namespace path and a checked name.
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// baseName is the last element of a namespace path.
func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return path.Base(p)
}
