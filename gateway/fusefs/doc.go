// Package fusefs is the FUSE front end: it mounts the whole namespace of
// one region ("/" of the namespace at the mount point, so
// MOUNTPOINT/lake/s3-use1/...) for reading and writing, over a
// router.Namespace (a router.Client in production, a routertest.Lakes in
// unit tests). It owns the translation from kernel operations to
// namespace calls and from errors to errno. It keeps no metadata beyond
// what the kernel caches (each file's last entry, for as long as the
// kernel may cache it), and no file bytes in memory.
//
// Where things are: node.go (lookup, attributes), dir.go (listing),
// open.go (open, truncate), change.go (create, mkdir, unlink, rmdir,
// rename), handle.go (read and write handles), upload.go (streaming
// upload and its write-behind window), spool.go, lend.go (lent journal
// files), errno.go, mount.go
// (mount, unmount, stale and busy mount points).
//
// # Metadata
//
// Lookup and getattr ask Namespace.Stat (answered from the owner node's
// metadata cache); readdir pages through Namespace.List. The kernel caches
// what it is told for the path's mount's MetadataTTL (entry and attribute
// timeouts), VirtualTTL for the directories above the mounts; "no such
// file" is cached for the shortest TTL of the mounts (the kernel takes one
// negative timeout per mount). A change made through lakemesh elsewhere in
// the region (another mount, the S3 gateway, the CLI) is seen at once: the
// mount watches the region's nodes (router.Watcher) and drops what it and
// the kernel hold of each changed path (watch.go). A change made in the
// lake directly is seen within twice the TTL: once for the node's cache,
// once for the kernel's.
// The mount keeps the last entry of each file for the same TTL: a getattr
// (which the kernel also sends early, after a read made the atime stale)
// and an open for reading use it without asking while it is younger than
// the TTL, and a getattr answered from it is cached by the kernel only for
// what is left of it. An expired entry is looked up by the kernel before
// it opens, so an open reads the version stat shows, and reading a file
// the kernel knows (open, fstat, read, close) costs no Stat. An open for
// writing and truncate(2) use an entry only while it is a second old, so
// lookup-then-open costs one Stat.
//
// A directory is listed lazily (dirStream): a page of Namespace.List is
// fetched only when the kernel has taken every entry of the previous one,
// so listing a directory of millions of entries holds one page. READDIRPLUS
// lookups are answered from the entry just listed, so "ls -l" costs the
// List pages and no Stat per entry. Inode numbers are go-fuse's automatic
// ones; a path keeps its inode while the kernel remembers it.
//
// # Reads
//
// An open for reading stats the file and opens that version
// (Namespace.OpenReader); every read of the handle is of that version.
// The router reads ahead on sequential access and fetches exact ranges
// otherwise. The mount asks for 1 MiB requests (max_read, MaxWrite,
// max_pages) and widens the kernel's readahead window to 8 MiB through
// /sys/class/bdi (the FUSE handshake cannot raise it past 128 KiB), so a
// sequential reader is sent 1 MiB reads, several in flight. The kernel keeps its page cache
// across opens of an unchanged version (FOPEN_KEEP_CACHE) and drops it
// when the version changed; while handles of two versions are open, the
// newer one bypasses the page cache (FOPEN_DIRECT_IO), so no reader sees
// pages of two versions. A read handle's close sends no FLUSH
// (FOPEN_NOFLUSH): it has nothing to write. When a file changes in the lake under an open
// handle, a read that needs bytes the handle's version no longer has
// fails with ESTALE (ufs.ErrVersionChanged): open the file again.
//
// # Writes
//
// An open for writing (and a create) gets a spool file in the mount's
// private spool directory (0700, under Config.SpoolDir, removed on Close;
// spools left by a mount that died are removed by the next one). Writes
// go to the spool, never to memory. A file opened without O_TRUNC is
// copied into its spool on the first write or truncate; until then its
// reads go to the opened version, and after it to the spool. O_TRUNC
// arrives with the open (FUSE_ATOMIC_O_TRUNC), so such a handle starts
// empty; ftruncate cuts the handle's spool, truncate(2) rewrites the
// lake's file at once.
//
// On flush (every close) and fsync a handle with changes uploads the
// whole spool with one Namespace.Put, which returns once the file's write
// mode (through or back, decided by the nodes from policy) is satisfied:
// a successful close or fsync means the region has the file; an error of
// Put is returned from close or fsync as its errno, and the changes stay
// spooled for the next flush. Release removes the spool (after a last
// attempt to upload, logged when it fails).
//
// A file written in order (appends only, as a checkpoint is) is uploaded
// while it is written: once it passes 8 MiB its Put starts and follows
// the appends, so close waits for the last bytes, not the whole file
// (upload.go). A write or truncate that is not an append (it changes
// bytes that upload may have sent, or leaves a hole) aborts it (a failed
// Put leaves the lake's old content), and the file is uploaded whole at
// flush; so does a Put that fails, from the spool.
//
// The appends of a streamed file go through the upload's write-behind
// window (8 MiB in 2 MiB pieces) rather than straight to the spool: the
// Put sends them from the window's buffers without a copy (a piece that
// leaves the window while the transport still sends from it keeps its
// buffer until the transport gives it back), and each piece is written
// to the spool in the background, through the page cache: the spool is
// removed once the file is in the region, usually before the kernel
// writes those pages, so a checkpoint's bytes reach the disk once (in the
// node's journal, for write-back), and the spool is never read back while
// the Put keeps up. An append
// waits while the window is full, which paces the writer to the upload;
// if the Put takes nothing for a second, the window lets pieces go once
// on the spool and the Put reads them from there. A spool write that
// fails in the background (ENOSPC) is returned by the next write, read,
// flush or fsync of the handle, and by every one after: the spool no
// longer holds the file. Close waits for the window to reach the spool.
//
// When the node a path's writes go to is on the mount's host and journals
// them (write_mode: back, or a lake homed in another region), the spool
// is that node's journal data file, lent to the handle (lend.go,
// router.LentSpool, cachenode/lend.go): the handle writes the bytes
// straight into the journal, with no window and no Put, and close or
// fsync commits the file's size there. After a commit the file is the
// journal's, so a later change copies it into a new spool first. A commit
// the node refuses (its node restarted, or the file was renamed since)
// Puts the bytes from the lent file, which the handle still holds.
//
// A handle open for writing bypasses the kernel's page cache
// (FOPEN_DIRECT_IO): its bytes are in the spool or the window, and caching
// them only cost the writing process a copy into fresh page cache pages
// per write. It can still be mmapped (CAP_DIRECT_IO_ALLOW_MMAP).
//
// Concurrent writers of one file each have their own spool; the last
// flush wins. A file created here is listed and looked up at once by this
// mount, and reaches the lake at its first flush. A file unlinked while
// open keeps working, but its writes are dropped. Rename flushes the
// source's writers first, and the file's open handles follow it to its
// new path (follow.go). A directory its lake cannot rename (S3) is
// refused with EXDEV, as between file systems, so mv copies the tree.
// Mode, owner and times are not stored: setattr of them succeeds and
// changes nothing.
//
// # Memory
//
// No file bytes are kept by this package beyond the write-behind windows:
// a read handle holds a router Reader (the router bounds its own page
// buffers and readahead), a write handle holds a spool file. Uploads and
// copy-ins, each with a 1 MiB buffer or two on their way to the node (a
// streaming upload also with its 8 MiB window), are limited to
// Config.MaxUploads at once whatever the number of open files. Kernel
// requests are at most 1 MiB, at most 64 background requests are in
// flight, and the requests served at once hold at most
// MountOptions.MaxInflight bytes of input buffers (go-fuse waits past it),
// so request memory is bounded by the same number for the answers. The
// garbage of those buffers is what makes a Go process grow past its live
// memory: `lakemesh mount` sets a soft heap limit (--memory-limit).
//
// # Timeouts
//
// A metadata call or a read is bounded by Config.OpTimeout; an upload of
// n bytes by OpTimeout + n/WriteRate. A call past its deadline fails with
// ETIMEDOUT. Kernel interrupts are not honoured (the Go runtime's own
// signals interrupt every slow system call, and a close must not lose a
// write to one): a call ends when it completes or times out. Statfs
// answers a constant without the network.
//
// # Errno
//
// Errors are mapped with errors.Is (Errno): ufs.ErrNotFound ENOENT,
// ErrNotDir ENOTDIR, ErrIsDir EISDIR, ErrNotEmpty ENOTEMPTY,
// ErrInvalidPath EINVAL, ErrVersionChanged ESTALE; cachenode.ErrReadOnly
// EROFS, ErrResidency EACCES, ErrNoMount EROFS (a write outside the mounts:
// the tree above them is read-only; a lookup there is ENOENT);
// router.ErrNoNode and cachenode.ErrLineDown EIO (logged, one line);
// a deadline ETIMEDOUT; anything else EIO (logged). A write outside the
// mounts or on a mount point itself is EROFS without asking, a rename
// between mounts EXDEV (so mv copies). Names are checked before any call:
// "", ".", ".." or a name with "/" or NUL is EINVAL, one over 255 bytes
// ENAMETOOLONG; listing entries whose names cannot be file names are not
// shown. Since every name is one checked path element, no path can leave
// the namespace.
//
// # Locks
//
// writeHandle.mu is taken before node.mu and upload.mu. node.mu and
// upload.mu are leaves: no call to the namespace, to go-fuse or to another
// lock, and no file I/O, is made while holding either. go-fuse's tree
// locks (Inode.Parent, GetChild) may be taken under writeHandle.mu, never
// under node.mu. A flush waits for its streaming upload's Put and window
// writers under writeHandle.mu; those goroutines take upload.mu only, and
// so does the Put's transport, giving back the chunks the window lent it.
package fusefs
