package ufs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/colinmarc/hdfs/v2"
)

// hdfsCloseRetries bounds how long Create waits for the namenode to see a
// written file's last block replicated (hdfs.ErrReplicating), doubling the
// wait from 50 ms: about 6 s in all, as the Java client does.
const hdfsCloseRetries = 7

func (f *hdfsFS) Create(ctx context.Context, p string, r io.Reader) (FileInfo, error) {
	p, err := f.arg(ctx, "create", p)
	if err != nil {
		return FileInfo{}, err
	}
	if p == "" {
		return FileInfo{}, fmt.Errorf("hdfs create %s: %w", f.where(p), ErrIsDir)
	}
	abs := f.abs(p)
	dir := path.Dir(abs)
	if err := f.mkdirAll(ctx, dir); err != nil {
		return FileInfo{}, f.fail("create", p, err)
	}
	if st, err := f.stat(ctx, abs); err == nil && st.IsDir() {
		return FileInfo{}, fmt.Errorf("hdfs create %s: %w", f.where(p), ErrIsDir)
	}
	// Write a temporary file next to the target, then rename it over the
	// target (rename2 with overwrite, atomic on the namenode): readers see
	// the old file or the new, and a failed write leaves the old.
	tmp := path.Join(dir, TempPrefix+rand.Text())
	w, err := hdfsCall(ctx, f, func() (*hdfs.FileWriter, error) { return f.client.Create(tmp) },
		func(w *hdfs.FileWriter) { w.Close(); f.client.Remove(tmp) })
	if err != nil {
		return FileInfo{}, f.fail("create", p, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		w.SetDeadline(deadline)
	}
	if _, err := io.Copy(w, ctxReader{ctx, r}); err != nil {
		f.discard(w, tmp)
		return FileInfo{}, fmt.Errorf("hdfs create %s: write: %w", f.where(p), err)
	}
	if err := closeWriter(ctx, w); err != nil {
		f.discard(nil, tmp)
		return FileInfo{}, fmt.Errorf("hdfs create %s: close: %w", f.where(p), err)
	}
	if _, err := hdfsCall(ctx, f, func() (struct{}, error) { return struct{}{}, f.client.Rename(tmp, abs) }, nil); err != nil {
		f.discard(nil, tmp)
		return FileInfo{}, f.fail("create", p, err)
	}
	st, err := f.stat(ctx, abs)
	if err != nil {
		return FileInfo{}, f.fail("create", p, err)
	}
	return hdfsInfo(p, st), nil
}

// closeWriter closes a written file, waiting while the namenode reports the
// last block still replicating; the library documents that Close may be
// called again until it succeeds.
func closeWriter(ctx context.Context, w *hdfs.FileWriter) error {
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := w.Close()
		if err == nil || !hdfs.IsErrReplicating(err) || attempt == hdfsCloseRetries {
			return err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay *= 2
	}
}

// discard closes and removes a temporary file after a failed Create, in
// the background, so a cancelled caller does not wait for the datanodes or
// the namenode. It takes one of the namenode call slots; when none is free,
// the temporary file stays (List hides it, anyone may remove it).
func (f *hdfsFS) discard(w *hdfs.FileWriter, tmp string) {
	select {
	case f.slots <- struct{}{}:
	default:
		return
	}
	f.calls.Add(1)
	go func() {
		defer f.calls.Done()
		defer func() { <-f.slots }()
		if w != nil {
			w.Close()
		}
		f.client.Remove(tmp)
	}()
}

func (f *hdfsFS) mkdirAll(ctx context.Context, abs string) error {
	_, err := hdfsCall(ctx, f, func() (struct{}, error) { return struct{}{}, f.client.MkdirAll(abs, 0o755) }, nil)
	if errors.Is(err, os.ErrExist) {
		// MkdirAll reports a file in the way as "exists".
		return fmt.Errorf("%w: %w", ErrNotDir, err)
	}
	return err
}

func (f *hdfsFS) Mkdir(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "mkdir", p)
	if err != nil {
		return err
	}
	if err := f.mkdirAll(ctx, f.abs(p)); err != nil {
		return f.fail("mkdir", p, err)
	}
	return nil
}

func (f *hdfsFS) Delete(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "delete", p)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("hdfs delete %s: %w: the root cannot be deleted", f.where(p), ErrInvalidPath)
	}
	abs := f.abs(p)
	st, err := f.stat(ctx, abs)
	if err != nil {
		return f.fail("delete", p, err)
	}
	if st.IsDir() {
		// Namenodes differ in how they refuse a non-recursive delete of a
		// non-empty directory; look first so the answer is ErrNotEmpty.
		empty, err := hdfsCall(ctx, f, func() (bool, error) {
			d, err := f.client.Open(abs)
			if err != nil {
				return false, err
			}
			defer d.Close()
			names, err := d.Readdirnames(1)
			if errors.Is(err, io.EOF) {
				return true, nil
			}
			return len(names) == 0, err
		}, nil)
		if err != nil {
			return f.fail("delete", p, err)
		}
		if !empty {
			return fmt.Errorf("hdfs delete %s: %w", f.where(p), ErrNotEmpty)
		}
	}
	if _, err := hdfsCall(ctx, f, func() (struct{}, error) { return struct{}{}, f.client.Remove(abs) }, nil); err != nil {
		return f.fail("delete", p, err)
	}
	return nil
}

func (f *hdfsFS) Rename(ctx context.Context, from, to string) error {
	from, err := f.arg(ctx, "rename", from)
	if err != nil {
		return err
	}
	to, err = f.arg(ctx, "rename", to)
	if err != nil {
		return err
	}
	if from == "" || to == "" {
		return fmt.Errorf("hdfs rename %s to %s: %w: the root cannot be renamed", f.where(from), f.where(to), ErrInvalidPath)
	}
	absFrom, absTo := f.abs(from), f.abs(to)
	if _, err := f.stat(ctx, absFrom); err != nil {
		return f.fail("rename", from, err)
	}
	if from == to {
		return nil
	}
	if st, err := f.stat(ctx, absTo); err == nil && st.IsDir() {
		return fmt.Errorf("hdfs rename %s to %s: %w", f.where(from), f.where(to), ErrIsDir)
	}
	if err := f.mkdirAll(ctx, path.Dir(absTo)); err != nil {
		return f.fail("rename", to, err)
	}
	// rename2 with overwrite: replaces a file at the destination atomically.
	if _, err := hdfsCall(ctx, f, func() (struct{}, error) { return struct{}{}, f.client.Rename(absFrom, absTo) }, nil); err != nil {
		return f.fail("rename", from, err)
	}
	return nil
}
