// Package router resolves any namespace path to the place that serves it
// and carries reads and writes there. It is the Go client API that the CLI
// and the front ends (FUSE, S3) use.
//
// The read path: a path resolves to a mount (longest prefix of the
// topology's mounts), Stat names the file's version, and the file is read
// page by page. Each page (a PageSize-aligned range of one file version)
// has an owner among the region's healthy members, chosen by rendezvous
// hashing of the page's key, which names its extent of
// cachenode.ExtentPages pages (a sequential fill of an extent is one lake
// read at its owner): every client computes the same owner, so
// every reader of a page meets at one node, and that node singleflights
// the lake read. A file is opened at a version and every page read names
// it, so a reader never mixes two versions: when the lake changes under
// an open file, reads fail with ufs.ErrVersionChanged.
//
// Failover: the candidates for a key are the members in rendezvous order.
// When the owner does not answer (connection refused or reset, a node
// killed mid-stream) the next candidate serves, resuming after the bytes
// already received; a node that failed is skipped by this client for a
// short while. If no node can serve and the client was configured to,
// it reads the lake itself; otherwise it fails with ErrNoNode.
//
// Access patterns: a read that starts where the previous read of the same
// File ended is sequential. Sequential reads ask nodes to fill whole pages
// and prefetch the next pages (bounded by the readahead policy, and by a
// fixed number of prefetch calls in flight per client); the prefetch is
// asked for before the read's own pages are fetched, so the pages after a
// read fill on their owners while it waits. Other reads ask only for the
// blocks they touch, so random 4 KiB reads never drag whole pages across.
//
// Small sequential reads (less than a page: io.Copy's 32 KiB, a kernel's
// 128 KiB) are served from one page the File keeps buffered, so a stream
// of them costs one node round trip per page. The buffer has the length of
// the page it holds (a 100 KiB file's page is 100 KiB), buffers of closed
// Files are reused (a sync.Pool in the Client), and at most
// Config.PageBuffers Files hold one at a time. A read that takes the rest
// of a page not buffered goes straight into the caller's buffer: a small
// file read in one call needs no page buffer at all.
//
// Short-circuit reads (shortcircuit.go, Linux only): when the member a
// page is read from is on this client's host (Member.Host) and serves a
// short-circuit socket next to its gRPC socket, the client asks it for a
// descriptor of the page's data file and reads the blocks the grant lists
// with pread, verifying each block's CRC-32C, with no gRPC call. A read of
// 64 KiB or more that no grant held covers first asks for the bytes from
// the node's memory tier and copies them with process_vm_readv(2),
// verified the same way: a page a cold read's readahead just filled is
// read from the node's memory, not back from the disk it was just written
// to. A smaller read asks for the grant first (once held, it costs no
// round trip), and for the memory when the page file has none. Grants
// are per (node, file version, page): another version never uses one. At
// most 256 are kept (least recently used closed first, all on Close), each
// used for 10 s before it is asked for again, so a page the node dropped
// is let go of. A read that touches a block the grant does not list, a
// checksum that fails (the descriptor is dropped) or a socket that cannot
// be dialled reads over gRPC as before; a page without a usable grant is
// asked for again at most once a second. Config.DisableShortCircuit turns
// it off.
//
// Short-circuit writes (lend.go, Linux only): LendSpool asks the node a
// Put of a path would go to, when it is on this host, to lend the
// journal data file for a new write of the path (write-back, or a lake
// homed in another region); the caller writes the bytes into it and
// commits its size (LentSpool.Commit), which answers as the Put would.
// cachenode.ErrNotLendable says to Put instead.
//
// Zero-copy sections (zerocopy.go, Linux only): File.Section verifies the
// blocks of a range inside one short-circuited page from a read-only
// mapping of the page file (no copy) and returns a descriptor of its own,
// opened again through /proc/self/fd and positioned at the range, which a
// front end sends with sendfile (Section.Send) or, to a receiver on its
// host, writes from that mapping (Section.Write); false means read the
// range with ReadAt.
// A page whose blocks are all on disk is mapped whole once per grant and
// kept mapped (pageMaps, as bounded as the grants: 256, 10 s), so a page
// sent again costs its checksums only, not an mmap and munmap.
//
// Metadata (stat, list) is placed by the path's key and cached on its
// owner for the mount's metadata TTL; writes go to the path's owner, which
// writes through to the lake and drops its cached entries, and the client
// drops the parent directory's listing at its owner. Sync drops entries
// under a path on every node of the region. A write's bytes go as raw
// chunks (cachenode.RawCodecName), sent from the input's own buffers when
// it lends them (ChunkReader, as the FUSE mount's window does), else from
// pooled buffers they are read into; the node receives them straight
// into its journal's or its lake upload's buffers.
//
// Tracing: every File.ReadAt is a "lakemesh.read" span with a
// "page.fetch" child per page, saying which node served it and where the
// bytes came from (memory, disk, lake, wait, direct, short-circuit).
//
// Lock order: Client.mu, File.mu, shortCircuit.mu and pageMaps.mu are
// leaves; no call is made while holding any of them.
package router
