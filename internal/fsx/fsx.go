// Package fsx checks a file system against a local directory: it applies
// one random sequence of file operations (opens with different flags,
// writes at any offset, reads, truncates, fsyncs, closes, renames,
// removes) to both, and after each one compares what a program would
// see, as fsx, the file system exerciser of BSD and xfstests, compares
// a file with its model in memory.
//
// The checked file system may differ from POSIX where lakemesh says it
// does, so a run keeps to what lakemesh promises: one open handle per
// file at a time, and contents compared through another open only when
// the file is closed.
package fsx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Config is one run.
type Config struct {
	Dir   string // the file system checked (a directory in it)
	Model string // a local directory, empty
	Seed  uint64
	Ops   int
	// MaxSize bounds the files' sizes (default 3 MiB).
	MaxSize int64
	// Names are the files used, relative to Dir (default f0, f1, d/f2);
	// their directories are made first.
	Names []string
	// Closed, if set, is called after a file is closed with its name and
	// the bytes it must hold, to check the file system's own store (the
	// lake).
	Closed func(name string, want []byte) error
	// Logf, if set, gets one line per operation.
	Logf func(format string, args ...any)
}

// pair is one file open in both trees.
type pair struct {
	sut, model *os.File
	flags      int
}

// Run applies cfg.Ops random operations and returns the first
// difference, with the operations that led to it.
func Run(cfg Config) error {
	if cfg.MaxSize == 0 {
		cfg.MaxSize = 3 << 20
	}
	if len(cfg.Names) == 0 {
		cfg.Names = []string{"f0", "f1", "d/f2"}
	}
	r := &runner{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), open: map[string]*pair{}}
	for _, n := range cfg.Names {
		if d := filepath.Dir(n); d != "." {
			for _, root := range []string{cfg.Dir, cfg.Model} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					return err
				}
			}
		}
	}
	defer r.closeAll()
	for i := 0; i < cfg.Ops; i++ {
		if err := r.step(i); err != nil {
			return fmt.Errorf("seed %d, op %d: %w\nlast operations:\n%s", cfg.Seed, i, err, r.history())
		}
	}
	for _, n := range slices.Sorted(maps.Keys(r.open)) {
		if err := r.close(n); err != nil {
			return fmt.Errorf("seed %d, closing at the end: %w\nlast operations:\n%s", cfg.Seed, err, r.history())
		}
	}
	for _, n := range cfg.Names {
		if err := r.compareFile(n); err != nil {
			return fmt.Errorf("seed %d, at the end: %w\nlast operations:\n%s", cfg.Seed, err, r.history())
		}
	}
	return nil
}

type runner struct {
	cfg  Config
	rng  *rand.Rand
	open map[string]*pair
	ops  []string
}

func (r *runner) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.ops = append(r.ops, line)
	if r.cfg.Logf != nil {
		r.cfg.Logf("%s", line)
	}
}

func (r *runner) history() string {
	from := max(0, len(r.ops)-25)
	return "  " + strings.Join(r.ops[from:], "\n  ")
}

func (r *runner) closeAll() {
	for _, p := range r.open {
		p.sut.Close()
		p.model.Close()
	}
}

var openFlags = []int{
	os.O_RDWR | os.O_CREATE,
	os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
	os.O_RDWR | os.O_CREATE | os.O_TRUNC,
	os.O_WRONLY | os.O_APPEND | os.O_CREATE,
	os.O_RDWR | os.O_APPEND,
	os.O_RDONLY,
	os.O_RDWR,
}

func flagString(f int) string {
	var s []string
	switch f & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		s = append(s, "O_RDONLY")
	case os.O_WRONLY:
		s = append(s, "O_WRONLY")
	default:
		s = append(s, "O_RDWR")
	}
	for _, b := range []struct {
		f    int
		name string
	}{{os.O_CREATE, "O_CREAT"}, {os.O_TRUNC, "O_TRUNC"}, {os.O_APPEND, "O_APPEND"}} {
		if f&b.f != 0 {
			s = append(s, b.name)
		}
	}
	return strings.Join(s, "|")
}

func (r *runner) step(i int) error {
	name := r.cfg.Names[r.rng.IntN(len(r.cfg.Names))]
	p := r.open[name]
	if p == nil {
		switch k := r.rng.IntN(10); {
		case k < 5:
			return r.openFile(name)
		case k < 6:
			return r.rename(name)
		case k < 7:
			return r.remove(name)
		case k < 8:
			return r.truncatePath(name)
		case k < 9:
			return r.compareLists()
		default:
			return r.compareFile(name)
		}
	}
	writable := p.flags&(os.O_WRONLY|os.O_RDWR) != 0
	readable := p.flags&os.O_WRONLY == 0
	switch k := r.rng.IntN(20); {
	case k < 9 && writable:
		return r.write(name, p)
	case k < 13 && readable:
		return r.read(name, p)
	case k < 14 && writable:
		return r.ftruncate(name, p)
	case k < 15:
		return r.rename(name)
	case k < 16 && writable:
		r.logf("fsync %s", name)
		if err := p.sut.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %v", name, err)
		}
		return r.compareStat(name, p)
	case k < 17:
		return r.compareStat(name, p)
	default:
		return r.close(name)
	}
}

// same reports a difference between the errors of one operation on the
// two trees; both nil, or both the same errno, are the same.
func same(op string, sutErr, modelErr error) error {
	if (sutErr == nil) != (modelErr == nil) {
		return fmt.Errorf("%s: the file system says %v, a local directory %v", op, sutErr, modelErr)
	}
	var se, me syscall.Errno
	if errors.As(sutErr, &se) && errors.As(modelErr, &me) && se != me {
		return fmt.Errorf("%s: the file system says %v, a local directory %v", op, sutErr, modelErr)
	}
	return nil
}

func (r *runner) openFile(name string) error {
	flags := openFlags[r.rng.IntN(len(openFlags))]
	r.logf("open %s %s", name, flagString(flags))
	s, serr := os.OpenFile(filepath.Join(r.cfg.Dir, name), flags, 0o644)
	m, merr := os.OpenFile(filepath.Join(r.cfg.Model, name), flags, 0o644)
	if err := same("open "+name+" "+flagString(flags), serr, merr); err != nil {
		if s != nil {
			s.Close()
		}
		if m != nil {
			m.Close()
		}
		return err
	}
	if serr != nil {
		return nil
	}
	r.open[name] = &pair{sut: s, model: m, flags: flags}
	return nil
}

func (r *runner) size(p *pair) (int64, error) {
	fi, err := p.model.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// length picks a write's length: mostly small, sometimes over a MiB.
func (r *runner) length() int {
	switch k := r.rng.IntN(10); {
	case k < 5:
		return 1 + r.rng.IntN(4096)
	case k < 8:
		return 1 + r.rng.IntN(256<<10)
	default:
		return 1 + r.rng.IntN(1536<<10)
	}
}

func (r *runner) write(name string, p *pair) error {
	size, err := r.size(p)
	if err != nil {
		return err
	}
	n := r.length()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(r.rng.Uint32())
	}
	if p.flags&os.O_APPEND != 0 {
		if size+int64(n) > r.cfg.MaxSize {
			return r.ftruncate(name, p)
		}
		r.logf("append %s %d bytes (at %d)", name, n, size)
		sn, serr := p.sut.Write(buf)
		mn, merr := p.model.Write(buf)
		if err := same("append "+name, serr, merr); err != nil {
			return err
		}
		if sn != mn {
			return fmt.Errorf("append %s: wrote %d, a local directory %d", name, sn, mn)
		}
		return nil
	}
	var off int64
	switch k := r.rng.IntN(10); {
	case k < 5: // at the end, as a sequential writer
		off = size
	case k < 8: // inside
		off = r.rng.Int64N(size + 1)
	default: // past the end, leaving a hole
		off = size + r.rng.Int64N(512<<10)
	}
	if off+int64(n) > r.cfg.MaxSize {
		off = max(0, r.cfg.MaxSize-int64(n))
	}
	r.logf("pwrite %s %d bytes at %d (size %d)", name, n, off, size)
	sn, serr := p.sut.WriteAt(buf, off)
	mn, merr := p.model.WriteAt(buf, off)
	if err := same(fmt.Sprintf("pwrite %s at %d", name, off), serr, merr); err != nil {
		return err
	}
	if sn != mn {
		return fmt.Errorf("pwrite %s at %d: wrote %d, a local directory %d", name, off, sn, mn)
	}
	return nil
}

func (r *runner) read(name string, p *pair) error {
	size, err := r.size(p)
	if err != nil {
		return err
	}
	off := r.rng.Int64N(size + 4097)
	n := r.length()
	r.logf("pread %s %d bytes at %d (size %d)", name, n, off, size)
	sb, mb := make([]byte, n), make([]byte, n)
	sn, serr := p.sut.ReadAt(sb, off)
	mn, merr := p.model.ReadAt(mb, off)
	if errors.Is(serr, io.EOF) && errors.Is(merr, io.EOF) {
		serr, merr = nil, nil
	}
	if err := same(fmt.Sprintf("pread %s at %d", name, off), serr, merr); err != nil {
		return err
	}
	if sn != mn {
		return fmt.Errorf("pread %s %d bytes at %d: read %d, a local directory %d (size %d)", name, n, off, sn, mn, size)
	}
	if i := firstDiff(sb[:sn], mb[:mn]); i >= 0 {
		return fmt.Errorf("pread %s %d bytes at %d: byte %d (file offset %d) is %#x, a local directory has %#x", name, n, off, i, off+int64(i), sb[i], mb[i])
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func (r *runner) newSize(size int64) int64 {
	switch k := r.rng.IntN(4); {
	case k == 0:
		return 0
	case k == 1 && size > 0:
		return r.rng.Int64N(size)
	default:
		return min(r.cfg.MaxSize, size+r.rng.Int64N(1<<20))
	}
}

func (r *runner) ftruncate(name string, p *pair) error {
	size, err := r.size(p)
	if err != nil {
		return err
	}
	to := r.newSize(size)
	r.logf("ftruncate %s %d (size %d)", name, to, size)
	return same(fmt.Sprintf("ftruncate %s %d", name, to), p.sut.Truncate(to), p.model.Truncate(to))
}

func (r *runner) truncatePath(name string) error {
	var size int64
	if fi, err := os.Stat(filepath.Join(r.cfg.Model, name)); err == nil {
		size = fi.Size()
	}
	to := r.newSize(size)
	r.logf("truncate %s %d (size %d)", name, to, size)
	if err := same(fmt.Sprintf("truncate %s %d", name, to),
		os.Truncate(filepath.Join(r.cfg.Dir, name), to),
		os.Truncate(filepath.Join(r.cfg.Model, name), to)); err != nil {
		return err
	}
	return r.compareFile(name)
}

func (r *runner) compareStat(name string, p *pair) error {
	sfi, serr := p.sut.Stat()
	mfi, merr := p.model.Stat()
	if err := same("fstat "+name, serr, merr); err != nil || serr != nil {
		return err
	}
	if sfi.Size() != mfi.Size() {
		return fmt.Errorf("fstat %s: size %d, a local directory %d", name, sfi.Size(), mfi.Size())
	}
	// The path's stat while the file is open shows the bytes written.
	pfi, err := os.Stat(filepath.Join(r.cfg.Dir, name))
	if err != nil {
		return fmt.Errorf("stat %s while open: %v", name, err)
	}
	if pfi.Size() != mfi.Size() {
		return fmt.Errorf("stat %s while open: size %d, a local directory %d", name, pfi.Size(), mfi.Size())
	}
	return nil
}

func (r *runner) close(name string) error {
	p := r.open[name]
	delete(r.open, name)
	r.logf("close %s", name)
	serr := p.sut.Close()
	merr := p.model.Close()
	if err := same("close "+name, serr, merr); err != nil {
		return err
	}
	if err := r.compareFile(name); err != nil {
		return err
	}
	if r.cfg.Closed != nil {
		want, err := os.ReadFile(filepath.Join(r.cfg.Model, name))
		if err != nil {
			return err
		}
		return r.cfg.Closed(name, want)
	}
	return nil
}

// compareFile compares a closed file's stat and bytes, read by a new open.
func (r *runner) compareFile(name string) error {
	sfi, serr := os.Stat(filepath.Join(r.cfg.Dir, name))
	mfi, merr := os.Stat(filepath.Join(r.cfg.Model, name))
	if err := same("stat "+name, serr, merr); err != nil {
		return err
	}
	if serr != nil {
		if !errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %v", name, serr)
		}
		return nil
	}
	if sfi.Size() != mfi.Size() {
		return fmt.Errorf("stat %s: size %d, a local directory %d", name, sfi.Size(), mfi.Size())
	}
	got, err := os.ReadFile(filepath.Join(r.cfg.Dir, name))
	if err != nil {
		return fmt.Errorf("read %s: %v", name, err)
	}
	want, err := os.ReadFile(filepath.Join(r.cfg.Model, name))
	if err != nil {
		return err
	}
	if i := firstDiff(got, want); i >= 0 {
		return fmt.Errorf("read %s: %d bytes, a local directory %d; first difference at byte %d", name, len(got), len(want), i)
	}
	return nil
}

// rename moves name over another of the names, which is not open; name
// may be open, and its handle then writes the file under its new name.
func (r *runner) rename(name string) error {
	to := r.cfg.Names[r.rng.IntN(len(r.cfg.Names))]
	if to == name || r.open[to] != nil {
		return r.compareLists()
	}
	p := r.open[name]
	r.logf("rename %s %s (open %v)", name, to, p != nil)
	if err := same("rename "+name+" "+to,
		os.Rename(filepath.Join(r.cfg.Dir, name), filepath.Join(r.cfg.Dir, to)),
		os.Rename(filepath.Join(r.cfg.Model, name), filepath.Join(r.cfg.Model, to))); err != nil {
		return err
	}
	if p != nil {
		delete(r.open, name)
		r.open[to] = p
		return r.compareLists()
	}
	if err := r.compareFile(name); err != nil {
		return err
	}
	return r.compareFile(to)
}

// compareLists compares the names in the directories of the files.
func (r *runner) compareLists() error {
	dirs := map[string]bool{}
	for _, n := range r.cfg.Names {
		dirs[filepath.Dir(n)] = true
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		got, err := listNames(filepath.Join(r.cfg.Dir, d))
		if err != nil {
			return err
		}
		want, err := listNames(filepath.Join(r.cfg.Model, d))
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("directory %s lists %v, a local directory %v", d, got, want)
		}
	}
	return nil
}

func listNames(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %v", dir, err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names, nil
}

func (r *runner) remove(name string) error {
	r.logf("unlink %s", name)
	if err := same("unlink "+name,
		os.Remove(filepath.Join(r.cfg.Dir, name)),
		os.Remove(filepath.Join(r.cfg.Model, name))); err != nil {
		return err
	}
	return r.compareFile(name)
}
