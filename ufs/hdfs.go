package ufs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/user"
	"path"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/colinmarc/hdfs/v2"
	"github.com/colinmarc/hdfs/v2/hadoopconf"
)

func init() { Register("hdfs", openHDFS) }

const (
	hdfsDefaultPort = "8020"
	hdfsDialTimeout = 10 * time.Second
	// hdfsMaxCalls bounds the namenode calls in flight per lake, including
	// calls a cancelled caller has walked away from (see hdfsCall).
	hdfsMaxCalls = 64
)

// hdfsFS is a lake in an HDFS directory. The client (colinmarc/hdfs) takes
// no contexts and holds one namenode connection that serves one call at a
// time, so namenode calls go through hdfsCall, which lets a cancelled
// caller return at once; reads from datanodes check the context between
// chunks and get the context's deadline.
//
// hdfsFS does not implement AttrFS: files on HDFS keep no Attrs. The client
// has the calls it would take (SetXAttr, GetXAttrs), so attrs could be
// kept as file:// keeps them, in one user extended attribute set on the
// temporary file before the rename; that waits until it can be run against
// a namenode.
type hdfsFS struct {
	uri    string
	root   string // absolute HDFS path of the lake's root
	client *hdfs.Client

	slots chan struct{}  // one per namenode call in flight
	calls sync.WaitGroup // namenode calls in flight; Close waits for them
}

// openHDFS opens hdfs://namenode:8020/path. With no host
// (hdfs:///path), the namenodes come from the Hadoop configuration in
// HADOOP_CONF_DIR or HADOOP_HOME. The user is HADOOP_USER_NAME, else the
// current user. Kerberos is not supported yet.
func openHDFS(_ context.Context, u *url.URL) (FS, error) {
	if u.User != nil {
		return nil, fmt.Errorf("hdfs lake %q: no user in the URI; set HADOOP_USER_NAME", u.Redacted())
	}
	if u.RawQuery != "" || u.Opaque != "" {
		return nil, fmt.Errorf("hdfs lake %q: want hdfs://namenode:port/path without options", u.Redacted())
	}
	rel, err := CleanPath(u.Path)
	if err != nil {
		return nil, fmt.Errorf("hdfs lake %q: %w", u.String(), err)
	}
	conf, err := hadoopconf.LoadFromEnvironment()
	if err != nil {
		return nil, fmt.Errorf("hdfs lake %s: read Hadoop configuration: %w", u.String(), err)
	}
	opts := hdfs.ClientOptionsFromConf(conf)
	if u.Host != "" {
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), hdfsDefaultPort)
		}
		opts.Addresses = []string{addr}
	}
	if len(opts.Addresses) == 0 {
		return nil, fmt.Errorf("hdfs lake %s: no namenode: name it in the URI (hdfs://namenode:8020/path) or in fs.defaultFS under HADOOP_CONF_DIR", u.String())
	}
	if opts.KerberosClient != nil {
		return nil, fmt.Errorf("hdfs lake %s: the Hadoop configuration asks for Kerberos, which lakemesh does not support yet", u.String())
	}
	opts.User = os.Getenv("HADOOP_USER_NAME")
	if opts.User == "" {
		cur, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("hdfs lake %s: no HADOOP_USER_NAME and no current user: %w", u.String(), err)
		}
		opts.User = cur.Username
	}
	dialer := &net.Dialer{Timeout: hdfsDialTimeout, KeepAlive: 30 * time.Second}
	opts.NamenodeDialFunc = dialer.DialContext
	opts.DatanodeDialFunc = dialer.DialContext
	client, err := hdfs.NewClient(opts) // connects to the namenode
	if err != nil {
		return nil, fmt.Errorf("hdfs lake %s: connect to %v as %s: %w", u.String(), opts.Addresses, opts.User, err)
	}
	root := url.URL{Scheme: "hdfs", Host: u.Host, Path: "/" + rel}
	return &hdfsFS{
		uri:    root.String(),
		root:   "/" + rel,
		client: client,
		slots:  make(chan struct{}, hdfsMaxCalls),
	}, nil
}

func (f *hdfsFS) String() string { return f.uri }

// Close closes the client, which fails the namenode calls still in flight,
// and waits for them to return.
func (f *hdfsFS) Close() error {
	err := f.client.Close()
	f.calls.Wait()
	return err
}

// hdfsCall runs fn, a blocking call to the namenode, and returns when it is
// done or ctx is cancelled. An abandoned call finishes on its own goroutine;
// if it produced something that must be released (an open file), release
// gets it. The slots bound how many such goroutines there can be, and Close
// waits for them.
func hdfsCall[T any](ctx context.Context, f *hdfsFS, fn func() (T, error), release func(T)) (T, error) {
	var zero T
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result) // unbuffered: a result is either taken or released
	f.calls.Add(1)
	go func() {
		defer f.calls.Done()
		defer func() { <-f.slots }()
		v, err := fn()
		select {
		case done <- result{v, err}:
		case <-ctx.Done():
			if err == nil && release != nil {
				release(v)
			}
		}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (f *hdfsFS) stat(ctx context.Context, abs string) (os.FileInfo, error) {
	return hdfsCall(ctx, f, func() (os.FileInfo, error) { return f.client.Stat(abs) }, nil)
}

func (f *hdfsFS) Stat(ctx context.Context, p string) (FileInfo, error) {
	p, err := f.arg(ctx, "stat", p)
	if err != nil {
		return FileInfo{}, err
	}
	st, err := f.stat(ctx, f.abs(p))
	if err != nil {
		return FileInfo{}, f.fail("stat", p, err)
	}
	return hdfsInfo(p, st), nil
}

// List reads the whole directory from the namenode and pages it here: the
// client offers no listing that resumes after a name, so a page costs a
// full read of the directory (the namenode sends it in batches).
func (f *hdfsFS) List(ctx context.Context, dir, token string, limit int) (ListPage, error) {
	dir, err := f.arg(ctx, "list", dir)
	if err != nil {
		return ListPage{}, err
	}
	abs := f.abs(dir)
	st, err := f.stat(ctx, abs)
	if err != nil {
		return ListPage{}, f.fail("list", dir, err)
	}
	if !st.IsDir() {
		return ListPage{}, fmt.Errorf("hdfs list %s: %w", f.where(dir), ErrNotDir)
	}
	infos, err := hdfsCall(ctx, f, func() ([]os.FileInfo, error) { return f.client.ReadDir(abs) }, nil)
	if err != nil {
		return ListPage{}, f.fail("list", dir, err)
	}
	byName := make(map[string]os.FileInfo, len(infos))
	names := make([]string, 0, len(infos))
	for _, fi := range infos {
		if validName(fi.Name()) {
			byName[fi.Name()] = fi
			names = append(names, fi.Name())
		}
	}
	sort.Strings(names)
	page, next := pageNames(names, token, limit)
	out := ListPage{Entries: make([]FileInfo, 0, len(page)), Next: next}
	for _, name := range page {
		out.Entries = append(out.Entries, hdfsInfo(joinPath(dir, name), byName[name]))
	}
	return out, nil
}

func (f *hdfsFS) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	p, err := f.arg(ctx, "read", p)
	if err != nil {
		return nil, err
	}
	if err := checkRange("hdfs read", f.where(p), off, n); err != nil {
		return nil, err
	}
	abs := f.abs(p)
	file, err := hdfsCall(ctx, f, func() (*hdfs.FileReader, error) { return f.client.Open(abs) },
		func(r *hdfs.FileReader) { r.Close() })
	if err != nil {
		return nil, f.fail("read", p, err)
	}
	st := file.Stat()
	if st.IsDir() {
		file.Close()
		return nil, fmt.Errorf("hdfs read %s: %w", f.where(p), ErrIsDir)
	}
	opened := hdfsVersion(st)
	if version != "" && opened != version {
		file.Close()
		return nil, fmt.Errorf("hdfs read %s: %w (want version %s, have %s)", f.where(p), ErrVersionChanged, version, opened)
	}
	m := clampRange(off, n, st.Size())
	if m == 0 {
		file.Close()
		return emptyReader(), nil
	}
	if deadline, ok := ctx.Deadline(); ok {
		file.SetDeadline(deadline)
	}
	// The reader looks up the file's blocks by path on its first read. If a
	// Create renamed new content into place between Open and that lookup,
	// the blocks would be the new file's: read the first byte now, then
	// check the path still names the file that was opened.
	first := make([]byte, 1)
	if _, err := file.Seek(off, io.SeekStart); err != nil {
		file.Close()
		return nil, fmt.Errorf("hdfs read %s: seek to %d: %w", f.where(p), off, err)
	}
	if _, err := io.ReadFull(ctxReader{ctx, file}, first); err != nil {
		file.Close()
		return nil, fmt.Errorf("hdfs read %s at %d: %w", f.where(p), off, err)
	}
	again, err := f.stat(ctx, abs)
	if err != nil {
		file.Close()
		return nil, f.fail("read", p, err)
	}
	if now := hdfsVersion(again); now != opened {
		file.Close()
		return nil, fmt.Errorf("hdfs read %s: %w while opening (was %s, now %s)", f.where(p), ErrVersionChanged, opened, now)
	}
	rest := io.LimitReader(file, m-1)
	return rangeReader{Reader: ctxReader{ctx, io.MultiReader(bytes.NewReader(first), rest)}, close: file.Close}, nil
}

// arg cleans a path argument and checks the context first, so every
// operation refuses bad paths and cancelled contexts the same way.
func (f *hdfsFS) arg(ctx context.Context, op, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("hdfs %s %s: %w", op, f.where(p), err)
	}
	clean, err := CleanPath(p)
	if err != nil {
		return "", fmt.Errorf("hdfs %s in %s: %w", op, f, err)
	}
	return clean, nil
}

// abs is the absolute HDFS path of a cleaned lake path.
func (f *hdfsFS) abs(p string) string { return path.Join(f.root, p) }

func (f *hdfsFS) where(p string) string {
	return f.uri + "/" + p
}

const (
	hdfsParentNotDir = "org.apache.hadoop.fs.ParentNotDirectoryException"
)

// fail wraps a client error with the operation, the path and the sentinel
// callers branch on.
func (f *hdfsFS) fail(op, p string, err error) error {
	var sentinel error
	var remote hdfs.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, os.ErrNotExist):
		sentinel = ErrNotFound
	case errors.Is(err, syscall.ENOTEMPTY):
		sentinel = ErrNotEmpty
	case errors.As(err, &remote) && remote.Exception() == hdfsParentNotDir:
		sentinel = ErrNotDir
	}
	if sentinel != nil {
		return fmt.Errorf("hdfs %s %s: %w: %w", op, f.where(p), sentinel, err)
	}
	return fmt.Errorf("hdfs %s %s: %w", op, f.where(p), err)
}

func hdfsInfo(p string, st os.FileInfo) FileInfo {
	fi := FileInfo{Path: p, ModTime: st.ModTime(), IsDir: st.IsDir()}
	if !fi.IsDir {
		fi.Size = st.Size()
		fi.Version = hdfsVersion(st)
	}
	return fi
}

// hdfsVersion names a file's content by mtime (milliseconds), length and
// the namenode's file id. The id changes whenever a Create renames new
// content into place, even within one millisecond.
func hdfsVersion(st os.FileInfo) string {
	if s, ok := st.Sys().(*hdfs.FileStatus); ok {
		return fmt.Sprintf("%x-%x-%x", s.GetModificationTime(), s.GetLength(), s.GetFileId())
	}
	return fmt.Sprintf("%x-%x", st.ModTime().UnixMilli(), st.Size())
}
