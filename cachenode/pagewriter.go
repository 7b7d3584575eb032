package cachenode

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// pageWriter writes a fill's blocks into a page's data file. When the
// memory tier holds the page too, aligned writes bypass the kernel's page
// cache where the platform allows it (openDirect): a second copy of the
// page in the page cache only costs memory and CPU (on the project's
// virtual machine, writing 512 MiB of fresh pages through the page cache
// took 1.4 CPU seconds, direct writes 0.04 s). Pieces that are not aligned
// (the end of a file's last page) and filesystems that refuse direct I/O
// go through the page cache. Reads of the disk tier always go through the
// page cache; Linux keeps the two coherent. WriteAt may be called from
// several goroutines at once.
type pageWriter struct {
	path     string
	direct   *os.File    // nil when not writing directly
	refused  atomic.Bool // the device refused a direct write: no more of them
	mu       sync.Mutex  // guards buffered's opening
	buffered *os.File    // opened when first needed
}

// openPageWriter opens (creating it) the data file at path, for direct
// writes if direct and the platform and filesystem allow them.
func openPageWriter(path string, direct bool) (*pageWriter, error) {
	w := &pageWriter{path: path}
	if direct {
		f, err := openDirect(path)
		switch {
		case err == nil:
			w.direct = f
		case errors.Is(err, errNoDirectIO) || errors.Is(err, syscall.EINVAL):
			// Through the page cache, below.
		default:
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if w.direct == nil {
		if err := w.openBuffered(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *pageWriter) openBuffered() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buffered != nil {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", w.path, err)
	}
	w.buffered = f
	return nil
}

// WriteAt writes p at off: its aligned head directly when it can, the
// rest through the page cache.
func (w *pageWriter) WriteAt(p []byte, off int64) error {
	if w.direct != nil && !w.refused.Load() && directAligned(p, off) {
		n := len(p) &^ (directAlign - 1)
		_, err := w.direct.WriteAt(p[:n], off)
		switch {
		case err == nil:
			p, off = p[n:], off+int64(n)
		case errors.Is(err, syscall.EINVAL):
			// The device wants a larger alignment: stop trying (the
			// descriptor is closed by Close, once no write uses it).
			w.refused.Store(true)
		default:
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	if err := w.openBuffered(); err != nil {
		return err
	}
	w.mu.Lock()
	f := w.buffered
	w.mu.Unlock()
	_, err := f.WriteAt(p, off)
	return err
}

func (w *pageWriter) Close() error {
	var errs []error
	for _, f := range []*os.File{w.direct, w.buffered} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
