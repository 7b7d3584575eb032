// Package cachenode is the cache node daemon: its page store, the fill
// layer over it, the gRPC data server, the metadata cache and the lakes it
// reads. This comment describes the page store (store.go and the files it
// names) and the fill layer (cache.go, fill.go).
//
// # Pages and blocks
//
// The store holds fixed-size pages of file versions: page i of a FileRef
// covers bytes [i*PageSize, (i+1)*PageSize) of the file (4 MiB by
// default), the file's last page is short. A page is keyed by PageID, whose
// FileID is a digest of mount, path and version, so pages of a changed file
// are other pages and are never mixed with the old ones. A page is the unit
// of placement, eviction, pinning and persistence.
//
// A page is filled in blocks (32 KiB by default; BlockSize divides
// PageSize). Each tier records per page which blocks it holds (a slice of
// block buffers in memory, a bitmap on disk), so a random 4 KiB read fills
// one block (two when it straddles a boundary) instead of dragging a whole
// page across a line, while a sequential read fills whole pages.
//
// # Tiers
//
// A memory tier (MemoryBytes > 0) and a disk tier (Dir set, DiskBytes), each
// with a byte limit counted in block bytes. Read looks in memory, then on
// disk; blocks read from disk are promoted into memory when they fit without
// waiting. Put writes to every enabled tier (blocks a tier already holds are
// not rewritten). Memory-only and disk-only stores work the same way.
//
// The memory tier keeps slices of the buffer a fill received its bytes in,
// so a cold page costs fresh memory that the kernel must zero. Fill
// buffers are advised to be backed by transparent huge pages
// (hugepages_linux.go), which took that cost from 2.2-2.5 to 0.7-1.5 CPU
// seconds per 512 MiB on the virtual machine it was measured on.
//
// # Checksums
//
// Every block has a CRC-32C (hash/crc32 Castagnoli, computed by the CPU's
// CRC instructions) taken when it is first stored. Every read verifies every
// block it touches, in either tier, before copying any of it out. A block
// that fails is dropped from both tiers (and its record rewritten), logged
// as "corrupt block dropped" with page, block and tier, and counted in
// StoreStats.CorruptBlocks; Read then reports ErrMissing, and the fill layer
// fetches the block again and serves the right bytes.
//
// # Eviction, watermarks, pin and TTL
//
// Each tier has a high and a low watermark (0.95 and 0.85 of its limit by
// default). A fill reserves its bytes before writing them, so a tier never
// holds more than its limit. A fill that takes a tier past its high
// watermark wakes the store's one eviction goroutine, which brings the tier
// down to its low watermark: pages whose TTL has passed first, then least
// recently used (a strictly increasing access stamp per page, updated by
// every Read and Put). A fill that does not fit under the hard limit asks
// for an eviction pass and waits for it (the evictor then also frees what
// the waiting fills need); if a pass cannot free anything the fill skips
// that tier, and fails with ErrStoreFull only if no tier took it. Readers
// never wait for eviction: the evictor holds a page's lock only to detach
// its blocks, and it skips pages whose disk copy is being written.
//
// Pinned pages are never evicted by watermarks. If only pinned pages are
// left, a tier stays above its high watermark; that is logged once per
// episode and shown in StoreStats. StoreConfig.Classify decides pin and TTL
// when a page is first stored; SetPinned, Evict and Pages serve the pin,
// unpin, evict and status commands later. Evict removes pinned pages too: it
// is an explicit command.
//
// # On-disk layout and restart
//
//	Dir/pages/<2 hex>/<FileID>-<index>.page   block data at block offsets (sparse file),
//	                                          then, at offset page size, the page
//	                                          record: FileRef, page index, block
//	                                          bitmap, per-block CRCs, pin, expiry,
//	                                          geometry, and its own CRC
//	Dir/packs/<seq>.pack                      pages shorter than StoreConfig.PackBelow
//	                                          (a node's: every page), each in a slot:
//	                                          a header holding the same record, then
//	                                          its blocks (pack.go)
//
// A fill writes its blocks into the data file, then the record, through
// one descriptor: a cold page costs one file. When the memory tier holds
// the page too, block data is written with direct I/O where the filesystem
// allows it (pagewriter.go): a second copy in the kernel's page cache cost
// more CPU than the rest of a cold fill. Reads of the disk tier go through
// the page cache. Nothing is fsynced: a block the record lists but a crash
// lost or tore fails its checksum on first read and is refetched, and a
// torn record drops its page on the next open. Eviction removes the data
// file. On open the store scans Dir and rebuilds its index from the
// records, so a restarted node serves its disk pages without refetching.
// Data files whose record does not decode or whose identity or geometry do
// not match, and anything else under Dir/pages (format 1 sidecars,
// leftover temporary files), are removed. The record's format is described
// in index.go.
//
// A node's pages share packs instead (pack.go; StoreConfig.PackBelow
// chooses which, DefaultPackBelow all of them): a file per page cost a
// cold small-file fill more CPU than anything else, and a cold sequential
// read a fifth of the nodes', in the file system's inode allocation. A
// slot is appended to the pack being filled and never reused; eviction
// marks it free and punches a hole where its blocks were, and a full pack
// goes when its last page does.
//
// # Short-circuit writes
//
// The same socket lends a client on the node's host the journal's data
// file for a journaled write (lend.go): the client writes the bytes into
// it through a read-write descriptor and commits the size on the same
// connection, which syncs the file, writes its record and tells the region
// as a Write does. A connection that ends before the commit, or a
// restart, removes the file: nothing was acknowledged.
//
// # Short-circuit reads
//
// A client on the node's host may read the disk tier's pages itself, as
// HDFS clients do over a domain socket (shortcircuit.go, Linux only). The
// node serves a second Unix socket next to its gRPC one (node.sock ->
// node.fd.sock, ShortCircuitSocket; clients derive the name, so nothing
// more is advertised). Asked for one page of one file version (namespace
// path, version, size, page size, page index, as a gRPC Read names it),
// it answers with a read-only (O_RDONLY) descriptor of the page's data
// file, passed with SCM_RIGHTS, and the blocks the disk tier holds in it
// with their CRC-32Cs (OpenDiskPage); or "not on disk", and the client
// reads over gRPC, which fills the page as before. Asked for a byte range
// of a page from memory (memgrant.go), it answers with where the memory
// tier's blocks lie in the node's address space and their CRC-32Cs, and
// holds the blocks until the client says it is done; the client copies
// them itself with process_vm_readv(2), which needs the rights to ptrace
// the node (a client without them reads page files). The client verifies
// every block it reads
// against the grant's checksum. This is safe because a block of a data
// file is written once and never rewritten with other bytes, and a
// dropped page's file is unlinked, not truncated: a descriptor keeps the
// old inode and its blocks. A grant touches the page's access stamp.
//
// Trust: only the store's own page files are handed out, and only over
// the Unix socket, created 0660 like node.sock. Any local process that can
// connect to it can read every cached page, which is the same trust as
// being able to read the cache directory. Grants are counted
// (ShortCircuitStats; the node exports them on /metrics).
//
// # Fill coordination
//
// Cache.ReadAt first asks the store. For each page that misses, it plans
// under Cache.mu: the missing blocks of the page's fill range (the touched
// blocks, or the whole page when sequential) that another caller is already
// fetching are waited for; each run of contiguous blocks nobody fetches
// becomes one ranged Source fetch that this caller owns and registers as in
// flight before releasing the lock. A fetch leaves the in-flight table only
// after its bytes are in the store, so a block is always stored, in flight,
// or neither, and concurrent readers of a cold block share one fetch
// (singleflight per block). Its waiters are woken as soon as its bytes
// have arrived, before they are stored: they copy from the fetch, so a cold
// read does not wait for a page's files to be created and written on the
// disk tier (0.7 ms of CPU per page in the small-file benchmark); a read
// planned while the fetch is being stored waits on it and finds it done,
// and is reported as served from memory. A fetch's bytes go to the memory
// tier first, at once, and then to the disk tier; the pages of a run (a
// sequential reader's extent) are written to disk by a second goroutine
// while the next page is read from the Source, so a disk that stalls
// holds up the disk writes but not the bytes: readers that wait on a fill
// in flight without copying from it (AwaitFills, for short-circuit reads
// from memory) wait for the memory tier, not for the disk. The fetch
// slot is held until the run's pages are on disk, which bounds the bytes
// waiting for the disk (MaxConcurrentFetches runs). Fetches run with the caller's context values
// but not its cancellation: they are cancelled by Close, or when every
// caller waiting for them has gone. At most MaxConcurrentFetches fetches
// run at once (a semaphore taken before a fetch goroutine starts); Prefetch
// runs at most MaxPrefetches background fills and drops requests beyond
// that. A fetch that fails or comes back short stores nothing and its error
// (for instance one wrapping ufs.ErrVersionChanged) goes to every caller
// that needed it. Callers copy fetched bytes from the fetch itself, so a
// read succeeds even when the store cannot keep what was fetched.
//
// # Lock order
//
// Outer to inner; a goroutine holding one lock takes only locks below it:
//
//  1. Cache.mu (in-flight fetches; plan calls Store.Missing under it)
//  2. entry.diskMu (one page's data file and record: writes, removal)
//  3. Store.mu (the page index map)
//  4. entry.mu (one page's blocks, bitmap, CRCs, pin, expiry)
//  5. tier.mu (a tier's byte accounting), evictor.mu
//
// No file I/O happens under Store.mu or entry.mu: writes and removals of a
// page's files happen under its entry.diskMu alone (record contents are
// snapshotted under entry.mu and written after), reads of page data take
// no lock at all (a block is checked against the checksum snapshotted with
// its presence, and a file removed under a reader reads as missing). Memory
// blocks are immutable once stored, so they are verified and copied outside
// every lock. The evictor never waits for entry.diskMu (TryLock): a fill
// holding it may be waiting for the evictor.
//
// # Never
//
//   - Serve bytes whose checksum was not verified on this read, or bytes of
//     a page of another file version.
//   - Grow a tier past its limit, or run unbounded goroutines or queues:
//     fetches, prefetches and eviction are all bounded and owned (Close
//     stops them).
//   - Store bytes from a failed or short fetch.
package cachenode
